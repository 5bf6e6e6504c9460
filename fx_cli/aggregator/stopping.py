"""Early stopping: ``aggregator.settings.early_stopping: {metric, mode, min_delta, patience, target}``.

Decided at each round end from the saved round records (so a resumed run decides the same), on the
aggregated metric of the global-model validation (``<task>/<metric>``, or a full ``task/metric`` key).
The decision is stored in that round's record (``"stopped": reason``): the run then validates the final
model, saves it, and ends; a restart reads the record and does not train further.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from fx_cli.errors import PlanError

WHERE = "aggregator.settings.early_stopping"
KEYS = ("metric", "mode", "min_delta", "patience", "target")


@dataclass(frozen=True)
class EarlyStopping:
    metric: str
    keys: tuple[str, ...]  # record metric keys that carry it, first match wins
    higher: bool
    min_delta: float = 0.0
    patience: int | None = None
    target: float | None = None

    @classmethod
    def from_settings(cls, raw: Any, validation_tasks: Sequence[str], default_metric: str,
                      default_higher: bool) -> EarlyStopping | None:
        """The rule of the plan; ``PlanError`` naming every bad key."""
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise PlanError([f"{WHERE}: expected a mapping with keys {', '.join(KEYS)}, got {raw!r}"])
        problems = [f"{WHERE}.{k}: unknown key (known: {', '.join(KEYS)})" for k in raw if k not in KEYS]
        metric, mode = raw.get("metric", default_metric), raw.get("mode", "max" if default_higher else "min")
        if not isinstance(metric, str) or not metric:
            problems.append(f"{WHERE}.metric: expected a metric name such as accuracy, got {metric!r}")
        if mode not in ("max", "min"):
            problems.append(f"{WHERE}.mode: expected max or min, got {mode!r}")
        min_delta, patience, target = raw.get("min_delta", 0.0), raw.get("patience"), raw.get("target")
        if not _number(min_delta) or min_delta < 0:
            problems.append(f"{WHERE}.min_delta: expected a number >= 0, got {min_delta!r}")
        if patience is not None and (not isinstance(patience, int) or isinstance(patience, bool) or patience < 1):
            problems.append(f"{WHERE}.patience: expected a whole number of rounds >= 1, got {patience!r}")
        if target is not None and not _number(target):
            problems.append(f"{WHERE}.target: expected a number, got {target!r}")
        if patience is None and target is None and not problems:
            problems.append(f"{WHERE}: set patience (rounds without improvement) or target (a value to reach)")
        if problems:
            raise PlanError(problems)
        keys = (metric,) if "/" in metric else tuple(f"{t}/{metric}" for t in validation_tasks)
        return cls(metric, keys, mode == "max", float(min_delta), patience, None if target is None else float(target))

    def value(self, record: Mapping[str, Any]) -> float | None:
        metrics = record.get("metrics", {})
        return next((float(metrics[k]) for k in self.keys if k in metrics), None)

    def decide(self, history: Sequence[Mapping[str, Any]]) -> str:
        """Why the run stops after the last record of ``history`` (training rounds, in order); '' to go on."""
        scored = [(int(r["round"]), v) for r in history if not r.get("final") and (v := self.value(r)) is not None]
        if not scored:
            return ""
        last_round, last = scored[-1]
        if self.target is not None and (last >= self.target if self.higher else last <= self.target):
            return f"{self.metric} reached the target {self.target:g} ({last:.4f} in round {last_round})"
        if self.patience is None or len(scored) <= self.patience:
            return ""
        best_round, best = scored[0]
        since = 0
        for r, v in scored[1:]:
            if (v - best if self.higher else best - v) > self.min_delta:
                best_round, best, since = r, v, 0
            else:
                since += 1
        if since >= self.patience:
            return (f"{self.metric} did not improve by more than {self.min_delta:g} for {since} round(s) "
                    f"(best {best:.4f} in round {best_round}; patience {self.patience})")
        return ""


def stopped_round(history: Sequence[Mapping[str, Any]]) -> int | None:
    """The round after which an earlier start of this run decided to stop, if it did."""
    return next((int(r["round"]) for r in history if not r.get("final") and r.get("stopped")), None)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
