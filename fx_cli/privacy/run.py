"""The aggregator's differential privacy over a run: budget at start, DP-FedAvg or accounting per round.

State that must survive ``kill -9`` (the accountant's events and the next clip norm) goes into each
round's record, which the aggregator commits in the same SQLite transaction as the round's model; a
restarted aggregator rebuilds this object from the saved records (``from_history``).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from fx_cli.aggregator.modelstore import RoundModel
from fx_cli.aggregator.state import UpdateRecord
from fx_cli.errors import FxError
from fx_cli.privacy.accountant import GaussianEvent, RdpAccountant
from fx_cli.privacy.central import dp_fedavg_model, noise_secret, round_generator
from fx_cli.privacy.clipping import AdaptiveClipNorm, delta_noise_multiplier
from fx_cli.privacy.settings import LARGE_EPSILON, PrivacySettings

log = logging.getLogger("fx.aggregator")


def count_stddev(settings: PrivacySettings, expected: int) -> float:
    """Noise std of the clipped-update count: the plan's, else max(m/20 (Andrew et al.), z) so z_Δ stays near z."""
    if settings.clipped_count_stddev is not None:
        return settings.clipped_count_stddev
    return max(expected / 20, settings.noise_multiplier)


@dataclass
class RunPrivacy:
    settings: PrivacySettings
    q: float
    accountant: RdpAccountant
    clip_norm: float
    secret: bytes
    _pending: tuple[list[float], np.random.Generator, int] | None = field(default=None, repr=False)

    @property
    def central(self) -> bool:
        return self.settings.mode == "central"

    @classmethod
    def from_history(cls, settings: PrivacySettings, q: float, history: Sequence[Mapping[str, Any]],
                     noise_key: Path) -> "RunPrivacy":
        """The run's privacy state after the saved rounds (fresh for a new run)."""
        saved = [r["privacy"] for r in history if not r.get("final") and isinstance(r.get("privacy"), dict)]
        if len(saved) < len([r for r in history if not r.get("final")]):
            log.warning("privacy: %d completed round(s) of this run were trained without differential privacy; "
                        "ε below covers only the rounds trained with it",
                        len([r for r in history if not r.get("final")]) - len(saved))
        accountant = RdpAccountant.from_state(settings.delta, saved[-1]["accountant"] if saved else [])
        clip_norm = float(saved[-1]["next_clip_norm"]) if saved else settings.clip_norm
        return cls(settings, q, accountant, clip_norm, noise_secret(noise_key))

    def budget(self, rounds_to_train: int, done: int) -> int:
        """The rounds this run may train in all: ``rounds_to_train``, or fewer when ``max_epsilon`` says so."""
        s = self.settings
        left = max(0, rounds_to_train - done)
        planned = self.accountant.epsilon([GaussianEvent(self.q, s.noise_multiplier, left)]) if left else \
            self.accountant.epsilon()
        log.info("privacy: mode %s, noise_multiplier %g, clip_norm %g%s, sampling rate q=%.4g; ε=%.3g at δ=%g after "
                 "%d round(s)", s.mode, s.noise_multiplier, self.clip_norm, " (adaptive)" if s.adaptive_clipping else "",
                 self.q, planned, s.delta, done + left)
        if s.max_epsilon is None:
            allowed = left
        else:
            allowed = self.accountant.rounds_within(s.max_epsilon, self.q, s.noise_multiplier, left)
            if allowed == 0 and done == 0:
                one = self.accountant.epsilon([GaussianEvent(self.q, s.noise_multiplier, 1)])
                raise FxError(f"privacy.settings.max_epsilon {s.max_epsilon:g} is below the ε of a single round "
                              f"({one:.3g} at δ={s.delta:g}, noise_multiplier {s.noise_multiplier:g}, q={self.q:.3g})",
                              "raise noise_multiplier or max_epsilon in plan/plan.yaml")
            if allowed < left:
                over = self.accountant.epsilon([GaussianEvent(self.q, s.noise_multiplier, allowed + 1)])
                log.warning("privacy: the run stops after round %d of %d: round %d would bring ε to %.3g > "
                            "max_epsilon %g", done + allowed, rounds_to_train, done + allowed + 1, over,
                            s.max_epsilon)
        final = self.accountant.epsilon([GaussianEvent(self.q, s.noise_multiplier, allowed)]) if allowed else \
            self.accountant.epsilon()
        if final > LARGE_EPSILON:
            log.warning("privacy: ε will reach %.3g (δ=%g) after %d round(s) with q=%.3g and noise_multiplier %g; "
                        "a guarantee this weak means little. Raise noise_multiplier, sample fewer collaborators per "
                        "round (more collaborators help), train fewer rounds, or set max_epsilon",
                        final, s.delta, done + allowed, self.q, s.noise_multiplier)
        return done + allowed

    def next_model(self, model: RoundModel, updates: Sequence[UpdateRecord], target: Path,
                   expected: int) -> RoundModel:
        """Central DP: the next model from clipped, noised updates (see ``central.py``)."""
        s = self.settings
        denominator = max(expected, len(updates), 1)
        z = s.noise_multiplier
        if s.adaptive_clipping:
            z = delta_noise_multiplier(z, count_stddev(s, denominator))
        rng = round_generator(self.secret, model.round)
        new, norms = dp_fedavg_model(model, updates, target, clip_norm=self.clip_norm, noise_std=z * self.clip_norm,
                                     denominator=denominator, rng=rng)
        self._pending = (norms, rng, denominator)
        return new

    def account(self) -> dict[str, Any]:
        """Compose this round into the accountant; the record stored with the round (and shown in reports)."""
        s = self.settings
        self.accountant.compose(self.q, s.noise_multiplier)
        used = self.clip_norm
        clipped = None
        if self._pending is not None:
            norms, rng, expected = self._pending
            clipped = sum(1 for n in norms if n > used)
            if s.adaptive_clipping:
                adaptive = AdaptiveClipNorm(used, s.target_quantile, s.clip_learning_rate, count_stddev(s, expected))
                self.clip_norm = adaptive.update(norms, rng)
            self._pending = None
        epsilon = self.accountant.epsilon()
        return {"mode": s.mode, "epsilon": _rounded(epsilon), "delta": s.delta, "noise_multiplier": s.noise_multiplier,
                "sampling_rate": self.q, "clip_norm": used, "next_clip_norm": self.clip_norm, "clipped": clipped,
                "accountant": self.accountant.state()}


def _rounded(value: float) -> float:
    return round(value, 6) if math.isfinite(value) else value


def sampling_rate(settings: PrivacySettings, participants: Sequence[Sequence[str]], cols: Sequence[str]) -> float:
    """q for the accountant: 1 in local mode (the aggregator sees who took part), else the plan's
    ``sampling_rate``, else the largest share of collaborators that trains in any of the given rounds."""
    if settings.mode == "local":
        return 1.0
    if settings.sampling_rate is not None:
        return float(settings.sampling_rate)
    if not cols:
        return 1.0
    return max((len(set(p)) / len(cols) for p in participants), default=1.0)


def start_privacy(config: Mapping[str, Any], trainers: Sequence[Sequence[str]], cols: Sequence[str],
                  history: Sequence[Mapping[str, Any]], noise_key: Path, rounds_to_train: int,
                  done: int) -> tuple[RunPrivacy | None, int]:
    """The run's privacy state and the rounds it may train (``max_epsilon``), or (None, rounds) without DP.

    ``trainers`` lists, for the first rounds, the collaborators the assigner gives a training task.
    """
    from fx_cli.privacy.settings import privacy_of

    settings = privacy_of(config)
    if settings is None:
        return None, rounds_to_train
    privacy = RunPrivacy.from_history(settings, sampling_rate(settings, trainers, cols), history, noise_key)
    return privacy, privacy.budget(rounds_to_train, done)
