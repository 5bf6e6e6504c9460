"""The documents the status API serves, built from the saved state (plus live facts while running).

Only run facts: never data paths, keys, certificates or plan contents (a plan may hold secrets).
"""
from __future__ import annotations

import datetime
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fx_cli.status.board import LiveBoard
from fx_cli.status.saved import Saved


@dataclass(frozen=True)
class Facts:
    """What the views need from the plan."""

    federation_id: str
    rounds_to_train: int
    cols: tuple[str, ...]
    best_metric: str
    higher_is_better: bool
    last_model: str  # workspace-relative
    best_model: str

    @classmethod
    def from_plan(cls, plan: Any, cols: list[str]) -> Facts:
        settings = plan.aggregator
        return cls(plan.federation_id, settings.rounds_to_train, tuple(cols), settings.best_metric,
                   settings.best_metric_higher_is_better, _relative(plan, settings.last_state_path),
                   _relative(plan, settings.best_state_path))


def _relative(plan: Any, path: str) -> str:
    full: Path = plan.resolve_path(path)
    try:
        return str(full.relative_to(plan.workspace))
    except ValueError:
        return full.name


def iso(wall: float | None) -> str | None:
    if wall is None:
        return None
    return datetime.datetime.fromtimestamp(wall, datetime.timezone.utc).isoformat(timespec="seconds")


def training_rounds(saved: Saved) -> list[dict[str, Any]]:
    return [r for r in saved.history if not r.get("final")]


def status_doc(facts: Facts, saved: Saved, live: LiveBoard | None, now: float | None = None) -> dict[str, Any]:
    """``/status``: phase, round N/M, elapsed, ETA, best metric and round, model paths."""
    now = time.time() if now is None else now
    done = training_rounds(saved)
    spent = sum(float(r.get("seconds", 0.0)) for r in saved.history)
    current = 0.0 if saved.round_started is None or saved.finished else max(0.0, now - saved.round_started)
    remaining = max(0, facts.rounds_to_train - len(done))
    mean = spent / len(done) if done else None
    phase = live.phase if live is not None else ("finished" if saved.finished else
                                                 "not started" if not saved.exists else "stopped")
    best = _best(facts, saved)
    return {"federation": facts.federation_id, "running": live is not None, "phase": phase,
            "note": live.phase_note if live is not None else "",
            "round": min(len(done) + 1, facts.rounds_to_train), "rounds_done": len(done),
            "rounds_to_train": facts.rounds_to_train, "finished": saved.finished,
            "elapsed_s": round(spent + current, 3),
            "eta_s": None if mean is None or saved.finished else round(max(0.0, mean * remaining - current), 3),
            "best": best, "models": {"last": facts.last_model, "best": facts.best_model},
            "epsilon": _epsilon(saved), "collaborators": len(facts.cols), "updated": iso(now)}


def _epsilon(saved: Saved) -> float | None:
    """The privacy budget spent so far (ε) when differential privacy is on."""
    spent = [r["privacy"]["epsilon"] for r in saved.history if isinstance(r.get("privacy"), dict)
             and isinstance(r["privacy"].get("epsilon"), (int, float))]
    return float(spent[-1]) if spent else None


def _best(facts: Facts, saved: Saved) -> dict[str, Any] | None:
    marked = [r for r in training_rounds(saved) if r.get("best")]
    if saved.best_score is None and not marked:
        return None
    return {"metric": facts.best_metric, "higher_is_better": facts.higher_is_better, "score": saved.best_score,
            "round": marked[-1]["round"] if marked else None}


def clients_doc(facts: Facts, saved: Saved, live: LiveBoard | None, now: float | None = None) -> list[dict[str, Any]]:
    """``/clients``: per collaborator, connection, current task, rounds done, bytes, last metrics, refusals."""
    now = time.time() if now is None else now
    presence = live.snapshot()[2] if live is not None else {}
    out = []
    for name in facts.cols:
        log = saved.clients.get(name)
        got = [r for r in saved.received if r.collaborator == name]
        assigned = saved.assignment.get(name, [])
        seen = max([t for t in (log.last_seen if log else None, presence[name].last_seen if name in presence
                                else None, *(r.at for r in got)) if t is not None], default=None)
        last_metrics = dict(log.last_metrics) if log else {}
        for r in got:
            last_metrics.update({f"{r.task}/{k}": v for k, v in r.metrics.items()})
        pending = [t for t in assigned if t not in {r.task for r in got}]
        out.append({
            "name": name,
            "connected": live.connected(name, now) if live is not None else None,
            "last_seen": iso(seen),
            "current_task": (presence[name].task if name in presence and presence[name].task else
                             (pending[0] if pending and live is not None and not saved.finished else None)),
            "assigned": assigned, "received": sorted(r.task for r in got),
            "rounds_done": sum(1 for r in training_rounds(saved) if name in r.get("participants", [])),
            "bytes_in": (log.bytes_in if log else 0) + sum(r.nbytes for r in got if not log),
            "last_metrics": last_metrics,
            "refusals": log.refusals if log else 0, "last_refusal": log.last_refusal if log else "",
            "capabilities": (live.capabilities_of(name) if live is not None else None) or
                            (log.capabilities if log else None),
        })
    return out


def metrics_doc(saved: Saved) -> list[dict[str, Any]]:
    """``/metrics``: the per-round records, as in ``logs/aggregator_metrics.jsonl``."""
    keep = ("round", "final", "metrics", "participants", "expected", "bytes_in", "bytes_out", "seconds", "best",
            "privacy")
    return [{k: r[k] for k in keep if k in r} for r in saved.history]


def prometheus(status: dict[str, Any], clients: list[dict[str, Any]], metrics: list[dict[str, Any]]) -> str:
    """``/metrics/prometheus``: the same facts in the Prometheus text exposition format."""
    fed = _label(status["federation"])
    lines: list[str] = []

    def gauge(name: str, help_: str, samples: list[tuple[str, float]]) -> None:
        lines.extend([f"# HELP fx_{name} {help_}", f"# TYPE fx_{name} gauge"])
        lines.extend(f"fx_{name}{{federation=\"{fed}\"{labels}}} {value!r}" for labels, value in samples)

    gauge("rounds_done", "Training rounds completed.", [("", float(status["rounds_done"]))])
    gauge("rounds_to_train", "Training rounds planned.", [("", float(status["rounds_to_train"]))])
    gauge("running", "1 while the aggregator runs.", [("", 1.0 if status["running"] else 0.0)])
    gauge("elapsed_seconds", "Seconds spent in rounds.", [("", float(status["elapsed_s"]))])
    last = next((m for m in reversed(metrics) if not m.get("final")), None)
    if last is not None:
        gauge("round_metric", "Aggregated metrics of the last completed round.",
              [(f",metric=\"{_label(k)}\"", float(v)) for k, v in sorted(last["metrics"].items())])
        gauge("round_participants", "Participants of the last completed round.",
              [("", float(len(last.get("participants", []))))])
    gauge("client_connected", "1 when the collaborator is connected (running aggregator only).",
          [(f",collaborator=\"{_label(c['name'])}\"", 1.0 if c["connected"] else 0.0) for c in clients])
    gauge("client_rounds_done", "Rounds the collaborator took part in.",
          [(f",collaborator=\"{_label(c['name'])}\"", float(c["rounds_done"])) for c in clients])
    gauge("client_bytes_received", "Update bytes received from the collaborator.",
          [(f",collaborator=\"{_label(c['name'])}\"", float(c["bytes_in"])) for c in clients])
    gauge("client_refusals", "Requests of the collaborator that were refused.",
          [(f",collaborator=\"{_label(c['name'])}\"", float(c["refusals"])) for c in clients])
    return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")
