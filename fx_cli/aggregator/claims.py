"""What the aggregator believes of what collaborators claim: data sizes and metrics.

A collaborator's data size weights its update (FedAvg) and its metrics. One
that lies (2**53 samples against an honest 200) would otherwise decide the
model alone, so the claim is bounded before it becomes a weight:

- ``aggregator.settings.data_size_limits`` (``{name: max}``, ``"*"`` for everyone
  else) caps each claim at what the federation's owner declared;
- ``data_size_policy``: ``clip_to_median`` (default) clips each claim to
  ``data_size_median_multiple`` times the round's lower median, ``equal`` gives
  every update the same weight, ``claimed`` trusts the (capped) claims.

Metrics must be finite and within ``METRIC_BOUND``; round averages use
normalised weights (never overflow), and a value that is not usable (from a
run saved by an older fx) is dropped and named, never a crash at round end.
Every clipped claim and dropped value is logged and handed to an audit hook.
"""
from __future__ import annotations

import logging
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from fx_cli.aggregator.state import UpdateRecord

log = logging.getLogger("fx.aggregator")
POLICIES = ("clip_to_median", "equal", "claimed")
METRIC_BOUND = 1e12  # |metric| above this is not a measurement (accuracy 1e308 overflowed the round average)
AuditHook = Callable[..., None]  # ``record(kind, **fields)`` of fx_cli.audit (or nothing)


def _no_audit(kind: str, **fields: Any) -> None:
    return None


@dataclass(frozen=True)
class Clip:
    """One claim that was not taken at face value."""

    collaborator: str
    task: str
    claimed: int
    used: float
    why: str


@dataclass(frozen=True)
class ClaimPolicy:
    policy: str = "clip_to_median"
    median_multiple: float = 10.0
    limits: Mapping[str, int] = field(default_factory=dict)
    audit: AuditHook = _no_audit

    def limit_for(self, collaborator: str) -> int | None:
        return self.limits.get(collaborator, self.limits.get("*"))

    def weights(self, round_num: int, updates: Sequence[UpdateRecord]) -> list[float]:
        """The weight of each update (same order); every clipped claim is logged and audited."""
        used, clips = effective_sizes(updates, self)
        for clip in clips:
            log.warning("round %d: the data size %d claimed by '%s' for '%s' is used as %g (%s)", round_num + 1,
                        clip.claimed, clip.collaborator, clip.task, clip.used, clip.why)
            self.audit("data_size_clipped", round=round_num + 1, collaborator=clip.collaborator, task=clip.task,
                       claimed=clip.claimed, used=clip.used, why=clip.why)
        return used


def effective_sizes(updates: Sequence[UpdateRecord], policy: ClaimPolicy) -> tuple[list[float], list[Clip]]:
    """The sizes the policy accepts for ``updates``, and the claims it changed."""
    clips: list[Clip] = []
    sizes: list[float] = []
    for u in updates:
        limit = policy.limit_for(u.collaborator)
        if limit is not None and u.data_size > limit:
            clips.append(Clip(u.collaborator, u.task, u.data_size, float(limit),
                              f"over its declared maximum of {limit} (aggregator.settings.data_size_limits)"))
            sizes.append(float(limit))
        else:
            sizes.append(float(u.data_size))
    if policy.policy == "equal":
        return [1.0] * len(updates), clips
    if policy.policy == "clip_to_median" and len(sizes) > 1:
        cap = policy.median_multiple * statistics.median_low(sizes)
        for i, u in enumerate(updates):
            if sizes[i] > cap:
                clips.append(Clip(u.collaborator, u.task, u.data_size, cap,
                                  f"over {policy.median_multiple:g} x the round's median claim"))
                sizes[i] = cap
    return sizes, clips


def metric_problem(name: str, value: float, task: str | None = None) -> str | None:
    """Why a reported metric value is unusable (None when it is a plausible measurement)."""
    what = f"metric '{name}'" + (f" of task '{task}'" if task else "")
    if not math.isfinite(value):
        return f"{what} is {value}"
    if abs(value) > METRIC_BOUND:
        return f"{what} is {value:g}, outside the plausible range of +-{METRIC_BOUND:g}"
    return None


def round_metrics(records: Sequence[UpdateRecord], policy: ClaimPolicy = ClaimPolicy(),
                  round_num: int = 0) -> dict[str, float]:
    """``task/metric`` -> average over collaborators weighted by their (policy-bounded) data sizes.

    Weights are normalised before use and values bounded, so the sum cannot overflow; an unusable value
    is dropped and named. The result is always finite.
    """
    ordered = sorted(records, key=lambda r: (r.task, r.collaborator))
    by_task: dict[str, list[UpdateRecord]] = defaultdict(list)
    for rec in ordered:
        by_task[rec.task].append(rec)
    values: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for task, recs in by_task.items():
        for rec, weight in zip(recs, effective_sizes(recs, policy)[0]):
            for metric, value in sorted(rec.metrics.items()):
                problem = metric_problem(metric, value)
                if problem:
                    log.warning("round %d: dropped %s of '%s' from the '%s' average", round_num + 1, problem,
                                rec.collaborator, task)
                    policy.audit("metric_dropped", round=round_num + 1, collaborator=rec.collaborator, task=task,
                                 metric=metric, why=problem)
                    continue
                values[f"{task}/{metric}"].append((weight, value))
    out: dict[str, float] = {}
    for key in sorted(values):
        total = math.fsum(w for w, _ in values[key])
        if total > 0:
            out[key] = math.fsum((w / total) * v for w, v in values[key])
    return out


def claim_policy(settings: Any, audit: AuditHook = _no_audit) -> ClaimPolicy:
    """The policy of ``aggregator.settings`` (checked by the plan validation)."""
    return ClaimPolicy(str(getattr(settings, "data_size_policy", "clip_to_median")),
                       float(getattr(settings, "data_size_median_multiple", 10.0)),
                       dict(getattr(settings, "data_size_limits", None) or {}), audit)


def training_tasks(plan: Any) -> frozenset[str]:
    """Tasks whose result must carry tensors: those that are not validations (no ``apply`` kwarg)."""
    return frozenset(name for name, spec in plan.tasks.items() if "apply" not in spec.kwargs)
