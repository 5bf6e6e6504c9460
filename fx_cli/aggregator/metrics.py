"""Per-round reports: one JSON line in ``logs/aggregator_metrics.jsonl``, a console line, TensorBoard scalars."""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from fx_cli.plan.loader import TaskSpec


@dataclass(frozen=True)
class RoundReport:
    round: int  # 1-based, as people count
    rounds_to_train: int
    metrics: dict[str, float]  # "task/metric" -> data-size weighted average
    display: dict[str, float]  # short names for the console line
    participants: list[str]
    expected: int
    bytes_in: int
    bytes_out: int
    seconds: float
    best: bool = False
    note: str = ""
    final: bool = False  # the evaluation of the final aggregated model (``round`` = rounds_to_train)
    # (current, peak) resident size when the report was made: lets a long run show whether memory stays flat.
    rss: tuple[int, int] = field(default_factory=lambda: _rss())
    privacy: dict[str, Any] | None = None  # ε so far and the DP parameters of the round (fx_cli/privacy/run.py)
    # Summed data size of the counted results per task (a middle aggregator reports these to its parent).
    data_sizes: dict[str, int] = field(default_factory=dict)
    stopped: str = ""  # why the run stops after this round (early stopping), '' when it goes on
    # CPU seconds this process has used so far (all threads): consecutive records give the CPU cost of a round.
    cpu_seconds: float = field(default_factory=time.process_time)
    # Each participant's own metrics ("task/metric"), for performance-based client selection.
    by_collaborator: dict[str, dict[str, float]] = field(default_factory=dict)
    # SHA-256 of the round's new global model file (the bytes save/last.pbuf gets): the audit log's digest.
    model_sha256: str = ""
    # Seconds the round's close took until this report: aggregation and writing the next model (0: not measured).
    aggregate_seconds: float = 0.0

    def line(self) -> str:
        """``round 2/3  accuracy=0.9120 loss=0.3100  participants=2/2  1.23 s``."""
        shown = " ".join(f"{k}={_fmt(v)}" for k, v in self.display.items())
        best = "  (best)" if self.best else ""
        what = "final model" if self.final else f"round {self.round}/{self.rounds_to_train}"
        eps = f"  ε={self.privacy['epsilon']:.3g}" if self.privacy else ""
        stop = f"  (stopping: {self.stopped})" if self.stopped else ""
        return (f"{what}  {shown}  participants={len(self.participants)}/{self.expected}{eps}  "
                f"{self.seconds:.2f} s{best}{stop}")

    def record(self) -> dict[str, Any]:
        rss, peak = self.rss
        return {"round": self.round, "final": self.final, "metrics": self.metrics, "participants": self.participants,
                "expected": self.expected, "bytes_in": self.bytes_in, "bytes_out": self.bytes_out,
                "seconds": round(self.seconds, 4), "best": self.best, "rss_mib": round(rss / 2**20, 1),
                "peak_rss_mib": round(peak / 2**20, 1), "data_sizes": self.data_sizes,
                "cpu_s": round(self.cpu_seconds, 4),
                **({"aggregate_s": round(self.aggregate_seconds, 4)} if self.aggregate_seconds else {}),
                **({"privacy": self.privacy} if self.privacy else {}),
                **({"stopped": self.stopped} if self.stopped else {}),
                **({"by_collaborator": self.by_collaborator} if self.by_collaborator else {})}


def _rss() -> tuple[int, int]:
    from fx_cli.aggregator.memory import rss_bytes

    return rss_bytes()


def _fmt(value: float) -> str:
    return f"{value:.4f}" if abs(value) < 1e5 else f"{value:.4g}"


def display_names(metrics: Mapping[str, float], tasks: Mapping[str, TaskSpec], order: Sequence[str],
                  starting: bool = False) -> dict[str, float]:
    """Short names: global validation and training metrics bare, local validation ``local_<metric>``.

    With ``starting`` (round 1) the global validation scores the untrained starting model, and says so.
    """
    rank = {t: i for i, t in enumerate(order)}
    out: dict[str, float] = {}
    for key in sorted(metrics, key=lambda k: (rank.get(k.split("/", 1)[0], len(rank)), k)):
        task, _, metric = key.partition("/")
        spec = tasks.get(task)
        apply = spec.kwargs.get("apply") if spec is not None else None
        name = f"local_{metric}" if apply == "local" else metric
        if starting and spec is not None and apply != "local" and "validat" in spec.function:
            name = f"starting model {metric}"
        out[key if name in out else name] = metrics[key]
    return out


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float as None: JSON has no NaN or Infinity."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def append_jsonl(path: Path, record: Mapping[str, Any]) -> None:
    """Append one JSON line (the file is created on first use); always valid JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(json_safe(record), sort_keys=False, allow_nan=False) + "\n")


@dataclass
class MetricsSink:
    """Where round reports go: a JSON-lines file and, with ``write_logs``, TensorBoard."""

    jsonl: Path | None
    tensorboard_dir: Path | None = None
    writer: Any = field(default=None, init=False)

    def write(self, report: RoundReport) -> None:
        if self.jsonl is not None:
            append_jsonl(self.jsonl, report.record())
        if self.tensorboard_dir is not None:
            if self.writer is None:
                from fx_cli.metrics.tensorboard import ScalarWriter

                self.writer = ScalarWriter(self.tensorboard_dir)
            scalars = {f"aggregator/{k}": v for k, v in report.metrics.items()}
            scalars.update({"aggregator/participants": float(len(report.participants)),
                            "aggregator/seconds": report.seconds})
            if report.privacy:
                scalars["aggregator/privacy_epsilon"] = float(report.privacy["epsilon"])
            self.writer.add_scalars(report.round, scalars)

    def catch_up(self, history: Sequence[Mapping[str, Any]]) -> None:
        """Append the saved round records that a crash kept out of the JSON-lines file."""
        if self.jsonl is None:
            return
        last = _last_key(self.jsonl)
        for record in history:
            if last is None or (record["round"], record["final"]) > last:
                append_jsonl(self.jsonl, record)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _last_key(path: Path) -> tuple[int, bool] | None:
    """(round, final) of the last record in a JSON-lines file; None when there is none."""
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        record = json.loads(lines[-1]) if lines else None
        return (int(record["round"]), bool(record["final"])) if record else None
    except (OSError, ValueError, KeyError, TypeError):
        return None
