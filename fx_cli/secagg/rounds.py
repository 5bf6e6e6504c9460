"""The aggregator's secure-aggregation state per round, with the barriers the ``SecAgg*`` calls wait on.

Each stage closes once: when every trainer of the round has answered it, or ``stage_timeout`` after its first
answer. Everyone then gets the same frozen set (the advertisers, the sharers), which is what lets Shamir share
points and pairwise masks agree; a late answer is refused and its sender is a dropout of the round. The round
closer (``model_for``) fixes the survivors, waits for their unmask shares and returns the weighted mean delta.
Nothing here is persisted: after a restart the round is redone with fresh keys.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from fx_cli.secagg.client import Revealed
from fx_cli.secagg.keys import Cause, KeyAdvert, SecAggError
from fx_cli.secagg.params import SecAggParams
from fx_cli.secagg.server import SecAggServer


@dataclass
class _Round:
    server: SecAggServer
    expected: frozenset[str]
    opened: dict[str, float] = field(default_factory=dict)  # stage -> monotonic time of its first answer
    closed: set[str] = field(default_factory=set)  # stages closed
    survivors: list[str] | None = None
    failed: str | None = None


class SecAggRounds:
    def __init__(self, params: SecAggParams, trainers: Callable[[int], Sequence[str]], stage_timeout: float) -> None:
        self.params = params
        self.trainers = trainers
        self.stage_timeout = stage_timeout
        self.cond = threading.Condition()
        self.rounds: dict[int, _Round] = {}

    def _round(self, r: int) -> _Round:
        if r not in self.rounds:
            for old in [k for k in self.rounds if k < r]:
                del self.rounds[old]
            self.rounds[r] = _Round(SecAggServer(r, self.params), frozenset(self.trainers(r)))
        return self.rounds[r]

    def _barrier(self, rd: _Round, stage: str, done: Callable[[], bool]) -> None:
        """Wait until ``done()`` or the stage's deadline; then the stage is closed for everyone."""
        rd.opened.setdefault(stage, time.monotonic())
        self.cond.notify_all()
        deadline = rd.opened[stage] + self.stage_timeout
        while stage not in rd.closed and not done() and rd.failed is None:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.cond.wait(left)
        rd.closed.add(stage)
        self.cond.notify_all()
        if rd.failed:
            raise SecAggError(Cause.INCONSISTENT, rd.failed)

    def _open(self, rd: _Round, stage: str, name: str, round_num: int) -> None:
        if stage in rd.closed:
            raise SecAggError(Cause.BELOW_THRESHOLD, f"'{name}' came too late for the {stage} stage of round "
                              f"{round_num + 1}; it takes no part in this round's sum")

    def advertise(self, round_num: int, advert: KeyAdvert) -> list[KeyAdvert]:
        with self.cond:
            rd = self._round(round_num)
            if advert.name not in rd.expected:
                raise SecAggError(Cause.INCONSISTENT, f"'{advert.name}' does not train in round {round_num + 1}")
            self._open(rd, "advertise", advert.name, round_num)
            rd.server.add_advert(advert)
            self._barrier(rd, "advertise", lambda: set(rd.server.adverts) >= rd.expected)
            return list(rd.server.adverts.values())

    def share(self, round_num: int, name: str, sealed: dict[str, bytes]) -> dict[str, bytes]:
        with self.cond:
            rd = self._round(round_num)
            self._open(rd, "share", name, round_num)
            rd.server.add_shares(name, sealed)
            self._barrier(rd, "share", lambda: rd.server.sharers >= set(rd.server.adverts))
            return rd.server.shares_for(name)

    def masked(self, round_num: int, name: str, vector: np.ndarray) -> None:
        with self.cond:
            rd = self._round(round_num)
            self._open(rd, "masked", name, round_num)
            rd.server.add_masked(name, vector)
            self.cond.notify_all()

    def unmask(self, round_num: int, name: str, timeout: float, alive: Callable[[], None] = lambda: None) -> list[str]:
        """The survivor list, once the round closer has fixed it; ``alive()`` is called while waiting."""
        with self.cond:
            rd = self._round(round_num)
            if name not in rd.server.survivors:
                raise SecAggError(Cause.INCONSISTENT, f"no masked update of '{name}' is held for round {round_num + 1} "
                                  "(the aggregator restarted, or it came too late): the round is redone")
            deadline = time.monotonic() + timeout
            while rd.survivors is None and rd.failed is None and time.monotonic() < deadline:
                self.cond.wait(min(2.0, max(0.0, deadline - time.monotonic())))
                alive()
            if rd.failed:
                raise SecAggError(Cause.BELOW_THRESHOLD, rd.failed)
            if rd.survivors is None or name not in rd.survivors:
                raise SecAggError(Cause.INCONSISTENT, f"'{name}' is not among the survivors of round {round_num + 1}")
            return list(rd.survivors)

    def reveal(self, round_num: int, name: str, revealed: Revealed) -> None:
        with self.cond:
            rd = self._round(round_num)
            rd.server.add_unmask(name, revealed)
            self.cond.notify_all()

    def mean_delta(self, round_num: int) -> tuple[np.ndarray, int]:
        """Round closer: fix the survivors, wait for their shares, return (weighted mean delta, total weight)."""
        with self.cond:
            rd = self._round(round_num)
            rd.closed.add("masked")
            try:
                rd.survivors = rd.server.survivor_list()
            except SecAggError as err:
                rd.failed = err.message
                self.cond.notify_all()
                raise
            self.cond.notify_all()
            survivors = set(rd.survivors)
            self.cond.wait_for(lambda: set(rd.server.revealed) >= survivors, self.stage_timeout)
            if len(rd.server.revealed) < self.params.threshold:
                rd.failed = (f"round {round_num + 1}: {len(rd.server.revealed)} survivors sent their unmask shares, "
                             f"fewer than the threshold {self.params.threshold}")
                raise SecAggError(Cause.BELOW_THRESHOLD, rd.failed)
            server = rd.server
        return server.mean()


def secagg_model(rounds: SecAggRounds, model: Any, target: Path) -> Any:
    """The next global model: ``base + mean delta`` (unchanged when nobody trained in the round)."""
    from fx_cli.aggregator.modelstore import write_round_model

    rd = rounds.rounds.get(model.round)
    if rd is None or not rd.server.adverts:
        return write_round_model(target, model.tensors(), model.round + 1)
    from fx_cli.faults import fault

    fault("aggregator:secagg_unmasking")  # masked updates in, survivors' shares not yet
    mean, _ = rounds.mean_delta(model.round)
    offsets = np.cumsum([0] + [e.nbytes // 4 for e in model.entries])

    def tensors() -> Iterator[tuple[str, np.ndarray]]:
        for i, (name, base) in enumerate(model.tensors()):
            part = mean[offsets[i]:offsets[i + 1]].reshape(base.shape)
            yield name, (base.astype(np.float64) + part).astype(np.float32)
    return write_round_model(target, tensors(), model.round + 1)


def secagg_rounds(config: Any, network: Any, heartbeat_timeout: float, cols: Sequence[str],
                  trainers: Callable[[int], Sequence[str]]) -> SecAggRounds | None:
    """The run's secure-aggregation state, or None when the plan does not turn it on; ``FxError`` when it cannot.

    ``network`` None: no certificates to check (``fx simulate``, which makes per-run signing keys instead)."""
    from fx_cli.errors import FxError
    from fx_cli.secagg.settings import overflow_problem, secagg_of

    s = secagg_of(config)
    if s is None:
        return None
    if network is not None and not (network.use_tls and network.require_client_auth):
        raise FxError("secure aggregation needs mutual TLS: each collaborator signs its keys with its certificate",
                      "set network.settings.use_tls and require_client_auth to true")
    if s.threshold is None or not 2 <= s.threshold <= len(cols):
        raise FxError(f"secure_aggregation.settings.threshold must be set, from 2 to the {len(cols)} collaborators "
                      f"of plan/cols.yaml (got {s.threshold})",
                      "about two thirds of the collaborators is usual: the round survives n - t dropouts")
    overflow = overflow_problem(len(cols), s.max_weight, s.quantization_bits, s.modulus_bits)
    if overflow:
        raise FxError(f"secure aggregation: the masked sum can overflow: {overflow}",
                      "lower quantization_bits or max_weight in secure_aggregation.settings")
    params = SecAggParams(s.threshold, float(s.clipping_range), s.quantization_bits, s.modulus_bits, s.max_weight)
    return SecAggRounds(params, trainers, max(1.0, heartbeat_timeout / 2))
