"""Privacy accounting over rounds: which mechanisms ran, and the (ε, δ) they add up to.

The accountant is a list of ``(q, z, rounds)`` events; RDP curves compose by addition, so ε after
any number of rounds costs one curve per distinct ``(q, z)`` (cached). Its state is that list, which
the aggregator stores inside each round's record: replaying the records after a restart gives back
exactly the same accountant.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable, Sequence

from fx_cli.privacy.rdp import DEFAULT_ORDERS, epsilon_from_rdp, rdp_subsampled_gaussian


@lru_cache(maxsize=64)
def _curve(q: float, z: float) -> tuple[float, ...]:
    return tuple(rdp_subsampled_gaussian(q, z, a) for a in DEFAULT_ORDERS)


@dataclass(frozen=True)
class GaussianEvent:
    """``rounds`` rounds of the Gaussian mechanism with noise multiplier ``z``, each sampled at rate ``q``."""

    q: float
    z: float
    rounds: int = 1


@dataclass
class RdpAccountant:
    """ε of everything composed so far, for the subsampled Gaussian mechanism."""

    delta: float
    events: list[GaussianEvent] = field(default_factory=list)

    def compose(self, q: float, z: float, rounds: int = 1) -> None:
        """Add ``rounds`` rounds at sampling rate ``q`` and noise multiplier ``z``."""
        if self.events and (self.events[-1].q, self.events[-1].z) == (q, z):
            self.events[-1] = GaussianEvent(q, z, self.events[-1].rounds + rounds)
        else:
            self.events.append(GaussianEvent(q, z, rounds))

    def rdp(self, extra: Sequence[GaussianEvent] = ()) -> list[float]:
        """The composed RDP curve (at ``DEFAULT_ORDERS``), with ``extra`` events added hypothetically."""
        total = [0.0] * len(DEFAULT_ORDERS)
        for event in [*self.events, *extra]:
            total = [t + event.rounds * c for t, c in zip(total, _curve(event.q, event.z))]
        return total

    def epsilon(self, extra: Sequence[GaussianEvent] = ()) -> float:
        """ε at this accountant's δ (0 before any round)."""
        if not self.events and not extra:
            return 0.0
        return epsilon_from_rdp(self.rdp(extra), self.delta)[0]

    @property
    def rounds(self) -> int:
        return sum(e.rounds for e in self.events)

    def rounds_within(self, max_epsilon: float, q: float, z: float, limit: int) -> int:
        """How many more rounds at ``(q, z)`` keep ε ≤ ``max_epsilon`` (at most ``limit``): a binary search."""
        lo, hi = 0, limit
        if self.epsilon([GaussianEvent(q, z, limit)]) <= max_epsilon:
            return limit
        while lo < hi:  # lo rounds fit; more than hi do not
            mid = (lo + hi + 1) // 2
            if self.epsilon([GaussianEvent(q, z, mid)]) <= max_epsilon:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def state(self) -> list[dict[str, Any]]:
        """JSON-ready state (stored with each round)."""
        return [{"q": e.q, "z": e.z, "rounds": e.rounds} for e in self.events]

    @classmethod
    def from_state(cls, delta: float, state: Iterable[dict[str, Any]]) -> "RdpAccountant":
        acc = cls(delta)
        for e in state:
            acc.compose(float(e["q"]), float(e["z"]), int(e["rounds"]))
        return acc
