"""Client selection: ``aggregator.settings.selection`` chooses each round's cohort; the others wait.

Strategies (``strategy``):
- ``random``: ``max(minimum, ceil(fraction × N))`` collaborators, drawn with ``Random(f"{seed}:{round}")``;
- ``performance``: the ``k`` best by their own last value of ``metric`` (``mode`` max|min) in the global-model
  validation; collaborators without a value yet come first (each gets measured), by name;
- ``resource``: those whose reported capabilities meet ``thresholds`` (``min_cpu_count``, ``min_memory_gb``,
  ``gpu``, ``min_train_samples``); a collaborator that has not reported yet takes part until it has.

Every input is durable — the seed (plan), per-collaborator metrics (round records, ``by_collaborator``) and
capabilities (``local_state/capabilities.json``) — and the engine saves each round's assignment, so a resumed
run selects the same cohort. The final evaluation always asks every collaborator.
"""
from __future__ import annotations

import json
import math
import random
import threading
from pathlib import Path
from typing import Any, Mapping

from fx_cli.aggregator.assigners import Assigner
from fx_cli.errors import PlanError

WHERE = "aggregator.settings.selection"
KEYS = {"random": ("strategy", "fraction", "minimum", "seed"),
        "performance": ("strategy", "k", "metric", "mode"),
        "resource": ("strategy", "thresholds")}
THRESHOLDS = ("min_cpu_count", "min_memory_gb", "gpu", "min_train_samples")


class SelectingAssigner(Assigner):
    """The plan's assigner, restricted each round to the selected cohort."""

    def __init__(self, inner: Assigner, rule: dict[str, Any], metric_keys: tuple[str, ...],
                 capabilities_file: Path) -> None:
        self.inner = inner
        self.rule = rule
        self.metric_keys = metric_keys
        self.capabilities_file = capabilities_file
        self.authorized_cols = inner.authorized_cols
        self.rounds_to_train = inner.rounds_to_train
        self.task_groups = inner.task_groups
        self.sequential = inner.sequential
        self.last_metric: dict[str, float] = {}
        self.cohorts: dict[int, frozenset[str]] = {}
        self.recorded = -1  # the last round whose record this assigner has seen

    def group_of(self, collaborator: str, round_num: int) -> dict[str, Any] | None:
        return self.inner.group_of(collaborator, round_num) if collaborator in self.cohort(round_num) else None

    def tasks_for(self, collaborator: str, round_num: int) -> list[str]:
        return self.inner.tasks_for(collaborator, round_num) if collaborator in self.cohort(round_num) else []

    def hops_per_round(self) -> int:
        return self.inner.hops_per_round()

    def round_done(self, round_num: int, participants: list[str]) -> None:
        self.inner.round_done(round_num, participants)

    def round_record(self, round_num: int, record: Mapping[str, Any]) -> None:
        self.recorded = max(self.recorded, round_num)
        for col, metrics in dict(record.get("by_collaborator", {})).items():
            value = next((metrics[k] for k in self.metric_keys if k in metrics), None)
            if value is not None:
                self.last_metric[col] = float(value)
        super().round_record(round_num, record)

    def model_source(self) -> Any:
        return self.inner.model_source()

    def may_close_without(self, round_num: int, missing: list[str]) -> bool:
        return self.inner.may_close_without(round_num, missing)

    def cohort(self, round_num: int) -> frozenset[str]:
        """The collaborators selected for ``round_num``; fixed once every round before it has been recorded
        (earlier asks, e.g. the privacy accountant's look ahead, get a forecast that is not kept)."""
        if round_num in self.cohorts:
            return self.cohorts[round_num]
        chosen = frozenset(self._choose(round_num))
        if round_num <= self.recorded + 1:
            self.cohorts[round_num] = chosen
        return chosen

    def _choose(self, round_num: int) -> list[str]:
        cols = sorted(self.authorized_cols)
        strategy = self.rule["strategy"]
        if strategy == "random":
            n = min(len(cols), max(int(self.rule.get("minimum", 1)),
                                   math.ceil(float(self.rule.get("fraction", 1.0)) * len(cols))))
            return random.Random(f"{self.rule.get('seed', 0)}:{round_num}").sample(cols, n)
        if strategy == "performance":
            higher = self.rule.get("mode", "max") == "max"
            unknown = [c for c in cols if c not in self.last_metric]
            known = sorted((c for c in cols if c in self.last_metric),
                           key=lambda c: (-self.last_metric[c] if higher else self.last_metric[c], c))
            return (unknown + known)[:int(self.rule["k"])]
        caps = read_capabilities(self.capabilities_file)
        return [c for c in cols if c not in caps or meets(caps[c], self.rule.get("thresholds", {}))]


def meets(caps: Mapping[str, Any], thresholds: Mapping[str, Any]) -> bool:
    """Whether reported capabilities satisfy every threshold."""
    def ok(key: str, want: Any) -> bool:
        if key == "min_cpu_count":
            return int(caps.get("cpu_count", 0)) >= int(want)
        if key == "min_memory_gb":
            return int(caps.get("memory_bytes", 0)) >= float(want) * 2**30
        if key == "gpu":
            return bool(caps.get("gpu")) or not want
        return int(caps.get("train_samples", 0)) >= int(want)

    return all(ok(k, v) for k, v in thresholds.items())


def read_capabilities(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


_RECORDING = threading.Lock()  # collaborators report from concurrent gRPC handlers: one read-modify-write at a time


def record_capabilities(path: Path, name: str, caps: Mapping[str, Any]) -> None:
    """Keep a collaborator's reported capabilities for resource selection (atomic write)."""
    from fx_cli.atomic import atomic_write

    with _RECORDING:
        data = read_capabilities(path)
        data[name] = dict(caps)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as fh:
            fh.write(json.dumps(data, sort_keys=True).encode())


def check_rule(raw: Any) -> dict[str, Any] | None:
    """The selection rule of the plan, or ``PlanError`` naming every bad key."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or raw.get("strategy") not in KEYS:
        raise PlanError([f"{WHERE}.strategy: expected one of {', '.join(KEYS)}, got "
                         f"{raw.get('strategy') if isinstance(raw, dict) else raw!r}"])
    strategy = raw["strategy"]
    problems = [f"{WHERE}.{k}: not a key of the {strategy} strategy (known: {', '.join(KEYS[strategy])})"
                for k in raw if k not in KEYS[strategy]]
    fraction, minimum, k = raw.get("fraction", 1.0), raw.get("minimum", 1), raw.get("k")
    if strategy == "random" and (isinstance(fraction, bool) or not isinstance(fraction, (int, float))
                                 or not 0 < fraction <= 1):
        problems.append(f"{WHERE}.fraction: expected a number in (0, 1], got {fraction!r}")
    if strategy == "random" and (not isinstance(minimum, int) or isinstance(minimum, bool) or minimum < 1):
        problems.append(f"{WHERE}.minimum: expected a whole number >= 1, got {minimum!r}")
    if strategy == "performance" and (not isinstance(k, int) or isinstance(k, bool) or k < 1):
        problems.append(f"{WHERE}.k: expected a whole number >= 1, got {k!r}")
    if strategy == "performance" and raw.get("mode", "max") not in ("max", "min"):
        problems.append(f"{WHERE}.mode: expected max or min, got {raw.get('mode')!r}")
    thresholds = raw.get("thresholds", {})
    if strategy == "resource" and (not isinstance(thresholds, dict) or not thresholds
                                   or any(t not in THRESHOLDS for t in thresholds)):
        problems.append(f"{WHERE}.thresholds: expected a mapping with some of {', '.join(THRESHOLDS)}, got "
                        f"{thresholds!r}")
    if problems:
        raise PlanError(problems)
    return dict(raw)
