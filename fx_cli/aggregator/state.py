"""Durable aggregator state in SQLite: round, best score, current model, received updates, history.

Write order (so ``kill -9`` at any instant is safe): an update's tensors are
spilled, fsynced and renamed before its row is inserted; a round's next model
and optimizer state are written as files before the one transaction that moves
the round forward. A row never points at a file that may be missing.
"""
from __future__ import annotations

import errno
import functools
import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from fx_cli.aggregator.modelstore import RoundModel
from fx_cli.errors import FxError
from fx_cli.faults import fault
from fx_cli.plan.identity import differing_keys

T = TypeVar("T")
SCHEMA = 1
_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS updates (
    round INTEGER NOT NULL, collaborator TEXT NOT NULL, task TEXT NOT NULL,
    data_size INTEGER NOT NULL, metrics TEXT NOT NULL, path TEXT, nbytes INTEGER NOT NULL,
    crcs TEXT NOT NULL, received_at REAL NOT NULL,
    PRIMARY KEY (round, collaborator, task));
CREATE TABLE IF NOT EXISTS rounds (round INTEGER PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS missed (collaborator TEXT PRIMARY KEY, round INTEGER NOT NULL);
"""
RESET_HINT = "run `fx aggregator reset` to start a new run (this run's saved state is deleted)"


@dataclass(frozen=True)
class UpdateRecord:
    """One accepted task result; ``path`` holds its tensors (None: metrics only)."""

    round: int
    collaborator: str
    task: str
    data_size: int
    metrics: dict[str, float]
    path: str | None = None
    nbytes: int = 0
    crcs: tuple[int, ...] = ()


@dataclass
class Snapshot:
    """What a (re)started aggregator continues from."""

    round: int = 0
    finished: bool = False
    model: RoundModel | None = None
    best_score: float | None = None
    best_model: RoundModel | None = None
    agg_state: dict[str, str] = field(default_factory=dict)  # task -> optimizer state file
    updates: list[UpdateRecord] = field(default_factory=list)
    assignment: dict[str, list[str]] | None = None  # the current round's tasks per collaborator, once planned
    round_started: float | None = None  # wall-clock time of the current round's first task dispatch
    missed: dict[str, int] = field(default_factory=dict)  # 'you missed round N' notices not yet delivered


def _writes(method: Callable[..., T]) -> Callable[..., T]:
    """Database failures while writing (disk full, I/O error) surface as ``OSError``, like any other disk error."""
    @functools.wraps(method)
    def wrapper(self: "Store", *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as err:
            raise OSError(errno.EIO, f"{self.path or 'state database'}: {err}") from None
    return wrapper


class Store:
    """The SQLite database; every method is one transaction and is thread-safe."""

    def __init__(self, path: Path | None, power_safe: bool = True) -> None:
        """``power_safe=False``: commits survive the death of this process but not a power cut (no fsync each)."""
        self.path = path
        self.synchronous = "FULL" if power_safe else "NORMAL"
        self.lock = threading.Lock()
        target = ":memory:" if path is None else str(path)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
        try:
            self._open_checked()
        except sqlite3.DatabaseError as err:
            self.db.close()
            raise FxError(f"{path}: the aggregator state database is damaged ({err}); it was left untouched",
                          "restore local_state/ from a backup to resume this run, or " + RESET_HINT) from None

    def _open_checked(self) -> None:
        # quick_check reads every page: a truncated or overwritten file is caught here, not mid-run.
        # A transaction torn by a crash is not damage: SQLite rolls it back from the WAL by itself.
        result = self.db.execute("PRAGMA quick_check").fetchone()
        if result is None or result[0] != "ok":
            raise sqlite3.DatabaseError(str(result[0] if result else "no answer to quick_check"))
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={self.synchronous}")
        self.db.executescript(_TABLES)
        schema = self._meta().get("schema")
        if schema is not None and schema != str(SCHEMA):
            raise sqlite3.DatabaseError(f"state schema {schema}, this fx reads schema {SCHEMA}")

    def close(self) -> None:
        with self.lock:
            self.db.close()

    def _meta(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT key, value FROM meta").fetchall())

    def bind(self, plan_hash: str, plan_config: dict[str, Any], task_group: str | None,
             resume: bool = False) -> list[str]:
        """Tie the state to this plan; refuse another plan unless ``resume`` (then return the differing keys)."""
        with self.lock:
            meta = self._meta()
            if not meta:
                self._write_meta({"schema": str(SCHEMA), "plan_hash": plan_hash, "plan": json.dumps(plan_config),
                                  "task_group": task_group or "", "round": "0", "finished": "0"})
                return []
        if (meta.get("task_group") or None) != task_group:
            raise FxError(f"{self.path} holds a run with task group {meta.get('task_group') or '(all)'!r}, "
                          f"not {task_group or '(all)'!r}",
                          "start the aggregator with the same --task_group, or " + RESET_HINT)
        if meta.get("plan_hash") == plan_hash:
            return []
        keys = differing_keys(json.loads(meta.get("plan", "{}")), plan_config) or ["unknown"]
        if not resume:
            raise FxError(f"{self.path} holds a run of another plan (hash {meta.get('plan_hash', '?')[:12]}, this plan "
                          f"{plan_hash[:12]}); differing keys: {', '.join(keys[:10])}",
                          "restore the plan that run used to resume it; or run `fx aggregator start --resume` to "
                          "continue it under this plan (results already received for the current round are dropped "
                          "and asked for again); or " + RESET_HINT + " (or move local_state/ aside)")
        self._rebind(plan_hash, plan_config, meta.get("plan_hash", ""))
        return keys

    @_writes
    def _rebind(self, plan_hash: str, plan_config: dict[str, Any], old_hash: str) -> None:
        """Continue the run under a changed plan: keep rounds, model and best; forget the current round's work."""
        with self.lock:
            history = json.loads(self._meta().get("previous_plans", "[]")) + [old_hash]
            def body() -> None:
                self._write_meta({"plan_hash": plan_hash, "plan": json.dumps(plan_config),
                                  "previous_plans": json.dumps(history)})
                self.db.execute("DELETE FROM meta WHERE key IN ('assignment', 'round_started')")
                self.db.execute("DELETE FROM updates")
            self._transaction(body)

    def _transaction(self, body: Callable[[], object]) -> None:
        """Run ``body`` as one transaction (the caller holds the lock)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            body()
            fault("aggregator:committing")
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def _write_meta(self, values: dict[str, str]) -> None:
        self.db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(values.items()))

    def load(self) -> Snapshot:
        """The saved state (empty at first start); unreadable contents are an ``FxError``."""
        with self.lock:
            meta = self._meta()
            rows = self.db.execute("SELECT round, collaborator, task, data_size, metrics, path, nbytes, crcs "
                                   "FROM updates ORDER BY round, collaborator, task").fetchall()
            missed = dict(self.db.execute("SELECT collaborator, round FROM missed").fetchall())
        try:
            return _snapshot(meta, rows, missed)
        except (ValueError, KeyError, TypeError) as err:
            raise FxError(f"{self.path}: the saved aggregator state cannot be read ({type(err).__name__}: {err})",
                          "restore local_state/ from a backup to resume this run, or " + RESET_HINT) from None

    @_writes
    def start(self, model: RoundModel) -> None:
        """Record the round-0 model of a new run."""
        with self.lock:
            self._write_meta({"model": json.dumps(model.to_json()), "round": str(model.round)})

    @_writes
    def add_update(self, rec: UpdateRecord) -> bool:
        """Insert an accepted update; False when one for (round, collaborator, task) exists already."""
        with self.lock:
            try:
                self.db.execute("INSERT INTO updates VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                (rec.round, rec.collaborator, rec.task, rec.data_size, json.dumps(rec.metrics),
                                 rec.path, rec.nbytes, json.dumps(list(rec.crcs)), time.time()))
            except sqlite3.IntegrityError:
                return False
        return True

    @_writes
    def drop_update(self, rec: UpdateRecord) -> None:
        """Forget an update whose files turned out to be unusable (it will be asked for again)."""
        with self.lock:
            self.db.execute("DELETE FROM updates WHERE round=? AND collaborator=? AND task=?",
                            (rec.round, rec.collaborator, rec.task))

    @_writes
    def plan_round(self, round_num: int, assigned: dict[str, tuple[str, ...]]) -> None:
        """Record who does what in ``round_num`` (kept across restarts, whatever happens to cols.yaml)."""
        with self.lock:
            self._write_meta({"assignment": json.dumps({"round": round_num,
                                                        "tasks": {c: list(t) for c, t in assigned.items()}})})

    @_writes
    def round_started(self, round_num: int, wall: float) -> None:
        """The first task of ``round_num`` went out at ``wall`` (time.time()): straggler clocks resume from it."""
        with self.lock:
            self._write_meta({"round_started": json.dumps({"round": round_num, "wall": wall})})

    @_writes
    def clear_missed(self, col: str) -> None:
        """``col`` was told it missed a round."""
        with self.lock:
            self.db.execute("DELETE FROM missed WHERE collaborator=?", (col,))

    @_writes
    def unfinish(self) -> None:
        """A finished run continues (``--resume`` with more rounds to train)."""
        with self.lock:
            self._write_meta({"finished": "0"})

    @_writes
    def advance(self, done_round: int, model: RoundModel, record: dict[str, Any], agg_state: dict[str, str],
                best: tuple[float, RoundModel] | None, finished: bool, missed: Sequence[str] = ()) -> None:
        """Atomically: round ``done_round`` is complete and ``model`` is the next global model."""
        values = {"round": str(model.round), "model": json.dumps(model.to_json()),
                  "agg_state": json.dumps(agg_state), "finished": "1" if finished else "0"}
        if best is not None:
            values.update(best_score=repr(best[0]), best_model=json.dumps(best[1].to_json()))
        with self.lock:
            def body() -> None:
                self._write_meta(values)
                self.db.execute("INSERT OR REPLACE INTO rounds VALUES (?, ?)", (done_round, json.dumps(record)))
                self.db.execute("DELETE FROM updates WHERE round <= ?", (done_round,))
                self.db.executemany("INSERT OR REPLACE INTO missed VALUES (?, ?)", [(c, done_round) for c in missed])
            self._transaction(body)

    @_writes
    def replace_model(self, model: RoundModel) -> None:
        """``model`` is the input of its round, given from outside (a middle aggregator's parent); no work of the
        replaced round is kept."""
        with self.lock:
            def body() -> None:
                self._write_meta({"model": json.dumps(model.to_json()), "round": str(model.round)})
                self.db.execute("DELETE FROM meta WHERE key IN ('assignment', 'round_started')")
                self.db.execute("DELETE FROM updates")
            self._transaction(body)

    @_writes
    def finish(self, done_round: int, record: dict[str, Any], best: tuple[float, RoundModel] | None) -> None:
        """Atomically: the final model was evaluated (``record``) and the run is complete."""
        values = {"finished": "1"}
        if best is not None:
            values.update(best_score=repr(best[0]), best_model=json.dumps(best[1].to_json()))
        with self.lock:
            def body() -> None:
                self._write_meta(values)
                self.db.execute("INSERT OR REPLACE INTO rounds VALUES (?, ?)", (done_round, json.dumps(record)))
                self.db.execute("DELETE FROM updates")
                self.db.execute("DELETE FROM missed")
            self._transaction(body)

    def history(self) -> list[dict[str, Any]]:
        """The records of completed rounds, in order."""
        with self.lock:
            rows = self.db.execute("SELECT record FROM rounds ORDER BY round").fetchall()
        return [json.loads(r[0]) for r in rows]


def _snapshot(meta: dict[str, str], rows: list[tuple[Any, ...]], missed: dict[str, int]) -> Snapshot:
    snap = Snapshot(round=int(meta.get("round", 0)), finished=meta.get("finished") == "1",
                    agg_state=json.loads(meta.get("agg_state", "{}")), missed=missed)
    if "model" in meta:
        snap.model = RoundModel.from_json(json.loads(meta["model"]))
    if "best_model" in meta:
        snap.best_model = RoundModel.from_json(json.loads(meta["best_model"]))
        snap.best_score = float(meta["best_score"])
    snap.updates = [UpdateRecord(r, c, t, d, json.loads(m), p, n, tuple(json.loads(cr)))
                    for r, c, t, d, m, p, n, cr in rows if r == snap.round]
    plan = json.loads(meta.get("assignment", "null"))
    if plan and plan["round"] == snap.round:
        snap.assignment = {str(c): [str(t) for t in tasks] for c, tasks in plan["tasks"].items()}
    started = json.loads(meta.get("round_started", "null"))
    if started and started["round"] == snap.round:
        snap.round_started = float(started["wall"])
    return snap
