"""What the status API knows without the running aggregator: the saved state and the audit log, read only.

The SQLite database is opened read-only (``mode=ro``), so reading never blocks or changes a run; the plan
stored in it is never read (it may hold secrets), only its hash.
"""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fx_cli.errors import FxError


@dataclass(frozen=True)
class Received:
    """One result of the current round already held by the aggregator."""

    collaborator: str
    task: str
    metrics: dict[str, float]
    nbytes: int
    at: float  # wall-clock time


@dataclass
class ClientLog:
    """What the audit log tells about one collaborator."""

    last_seen: float | None = None
    bytes_in: int = 0
    last_metrics: dict[str, float] = field(default_factory=dict)
    refusals: int = 0
    last_refusal: str = ""
    capabilities: dict[str, Any] | None = None


@dataclass
class Saved:
    """The saved run as the status views need it."""

    exists: bool = False
    plan_hash: str = ""
    rounds_done: int = 0
    finished: bool = False
    best_score: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    assignment: dict[str, list[str]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    round_started: float | None = None
    clients: dict[str, ClientLog] = field(default_factory=dict)


def read_saved(db_path: Path, audit_path: Path | None = None) -> Saved:
    """The saved run in ``db_path`` (an empty ``Saved`` when there is none yet)."""
    saved = Saved()
    if db_path.exists():
        _read_db(db_path, saved)
    if audit_path is not None and audit_path.exists():
        saved.clients = read_client_log(audit_path)
    return saved


def _read_db(db_path: Path, saved: Saved) -> None:
    try:
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5.0)
        try:
            meta = dict(db.execute("SELECT key, value FROM meta WHERE key != 'plan'").fetchall())
            rounds = [json.loads(r[0]) for r in db.execute("SELECT record FROM rounds ORDER BY round")]
            rows = db.execute("SELECT round, collaborator, task, metrics, nbytes, received_at FROM updates "
                              "ORDER BY received_at").fetchall()
        finally:
            db.close()
    except (sqlite3.Error, ValueError) as err:
        from fx_cli.aggregator.state import RESET_HINT

        raise FxError(f"{db_path}: the aggregator state database is damaged or not a database ({err}); it was left "
                      "untouched", "restore local_state/ from a backup to resume this run, or " + RESET_HINT) from None
    saved.exists = bool(meta)
    saved.plan_hash = meta.get("plan_hash", "")
    saved.rounds_done = int(meta.get("round", 0))
    saved.finished = meta.get("finished") == "1"
    saved.best_score = float(meta["best_score"]) if "best_score" in meta else None
    saved.history = rounds
    plan = json.loads(meta.get("assignment", "null"))
    if plan and plan.get("round") == saved.rounds_done:
        saved.assignment = {str(c): [str(t) for t in ts] for c, ts in plan["tasks"].items()}
    started = json.loads(meta.get("round_started", "null"))
    if started and started.get("round") == saved.rounds_done:
        saved.round_started = float(started["wall"])
    saved.received = [Received(c, t, json.loads(m), int(n), float(at)) for r, c, t, m, n, at in rows
                      if r == saved.rounds_done]


def read_client_log(audit_path: Path) -> dict[str, ClientLog]:
    """Per collaborator: last contact, bytes sent, last metrics and refusals, from the audit records."""
    import datetime

    out: dict[str, ClientLog] = {}
    with open(audit_path, "rb") as fh:
        for line in fh:
            try:
                record = json.loads(line)
                data, kind = record["data"], record["kind"]
                name = data.get("collaborator")
                when = datetime.datetime.fromisoformat(record["time"].replace("Z", "+00:00")).timestamp()
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # an incomplete last line after a kill
            if not isinstance(name, str):
                continue
            client = out.setdefault(name, ClientLog())
            client.last_seen = when
            if kind == "update_accepted":
                client.bytes_in += int(data.get("nbytes", 0))
                client.last_metrics.update({f"{data.get('task')}/{k}": float(v)
                                            for k, v in dict(data.get("metrics", {})).items()})
            elif kind == "capabilities":
                client.capabilities = {k: v for k, v in data.items() if k != "collaborator"}
            elif kind.endswith("_refused"):
                client.refusals += 1
                client.last_refusal = str(data.get("reason", ""))
    return out
