"""The plan's ``privacy`` section: typed settings and the checks that need more than types.

Importing this module is cheap (no numpy): plan validation runs it for every plan.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Optional

# Aggregations that only use a weighted sum of updates; central DP replaces them by DP-FedAvg.
SUM_AGGREGATIONS = ("fx_cli.aggregation.WeightedAverage", "fx_cli.aggregation.fedavg.WeightedAverage",
                    "openfl.interface.aggregation_functions.WeightedAverage")
# ε above this at the end of the planned rounds draws a warning at start.
LARGE_EPSILON = 10.0


@dataclass(frozen=True)
class PrivacySettings:
    # central: the aggregator clips each update and adds Gaussian noise to their sum.
    # local: each collaborator clips and noises its own update before it leaves the site.
    mode: Literal["central", "local"] = "central"
    # L2 bound of one update (delta from the global model); the initial bound with adaptive_clipping.
    clip_norm: float = 1.0
    # Move clip_norm each round towards target_quantile of the update norms (Andrew et al. 2021; central only).
    adaptive_clipping: bool = False
    target_quantile: float = 0.5
    clip_learning_rate: float = 0.2
    # Std of the noise on the count of clipped updates (adaptive only); None: expected participants / 20.
    clipped_count_stddev: Optional[float] = None
    # Noise std / clip norm (z). Larger: more privacy, less accuracy.
    noise_multiplier: float = 1.0
    delta: float = 1e-5
    # Stop the run before the round that would take ε above this (None: no limit).
    max_epsilon: Optional[float] = None
    # Probability that a collaborator takes part in a round; None: taken from the assigner (1 when all do).
    sampling_rate: Optional[float] = None


def privacy_of(config: Mapping[str, Any]) -> PrivacySettings | None:
    """The plan's privacy settings, or None when the plan has no ``privacy`` section."""
    section = config.get("privacy")
    if not isinstance(section, dict):
        return None
    values = section.get("settings") or {}
    known = set(PrivacySettings.__dataclass_fields__)
    return PrivacySettings(**{k: v for k, v in values.items() if k in known})


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def check_privacy(config: Mapping[str, Any], file: str) -> list[str]:
    """Value problems of the privacy section and its conflicts with the rest of the plan (types are checked apart)."""
    try:
        p = privacy_of(config)
    except TypeError:
        return []
    if p is None:
        return []
    where = f"{file}: privacy.settings"
    problems = [f"{where}.{key}: expected a number > 0, got {getattr(p, key)!r}"
                for key in ("clip_norm", "noise_multiplier", "clip_learning_rate")
                if not _positive(getattr(p, key))]
    if not (_positive(p.delta) and p.delta < 1):
        problems.append(f"{where}.delta: expected a number in (0, 1), got {p.delta!r} (1e-5 is usual; keep it "
                        "below 1/number of collaborators)")
    if not (_positive(p.target_quantile) and p.target_quantile < 1):
        problems.append(f"{where}.target_quantile: expected a number in (0, 1), got {p.target_quantile!r}")
    if p.max_epsilon is not None and not _positive(p.max_epsilon):
        problems.append(f"{where}.max_epsilon: expected a number > 0 or null, got {p.max_epsilon!r}")
    if p.sampling_rate is not None and not (_positive(p.sampling_rate) and p.sampling_rate <= 1):
        problems.append(f"{where}.sampling_rate: expected a number in (0, 1] or null, got {p.sampling_rate!r}")
    if p.adaptive_clipping and p.mode == "local":
        problems.append(f"{where}.adaptive_clipping: only works with mode: central (the aggregator needs every "
                        "update's norm); use a fixed clip_norm with mode: local")
    std = p.clipped_count_stddev
    if p.adaptive_clipping and std is not None and _positive(p.noise_multiplier):
        if not (_positive(std) and std > p.noise_multiplier / 2):
            problems.append(f"{where}.clipped_count_stddev: must exceed noise_multiplier/2 = "
                            f"{p.noise_multiplier / 2:g} (the count's noise comes out of the same budget), "
                            f"got {std!r}")
    if p.mode == "central":
        problems += _check_aggregations(config, file)
    return problems


def _check_aggregations(config: Mapping[str, Any], file: str) -> list[str]:
    """Central DP computes DP-FedAvg itself: a task with another aggregation is refused, with the reason."""
    problems = []
    for task, spec in (config.get("tasks") or {}).items():
        agg = spec.get("aggregation_type") if isinstance(spec, dict) else None
        template = agg if isinstance(agg, str) else (agg or {}).get("template") if isinstance(agg, dict) else None
        if template and template not in SUM_AGGREGATIONS:
            problems.append(f"{file}: tasks.{task}.aggregation_type: {template} cannot be used with privacy mode: "
                            "central (the noise is calibrated to a sum of clipped updates; robust or adaptive "
                            "aggregations would need each update itself); remove aggregation_type or use "
                            "fx_cli.aggregation.WeightedAverage")
    return problems
