"""``fx aggregator reset``, and the lock that keeps two aggregators (or a reset) off one saved state."""
from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from fx_cli.aggregator.layout import StateLayout
from fx_cli.errors import FxError


@contextmanager
def state_lock(db_path: Path) -> Iterator[None]:
    """Hold ``<db>.lock`` for as long as the block runs; refuse when another process holds it."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    lock = db_path.with_name(db_path.name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise FxError(f"another aggregator (pid {holder}) is using {db_path}",
                          "wait for it to finish or stop it; only one aggregator may run on a workspace") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock, also when the process is killed


@dataclass
class ResetResult:
    removed: list[Path] = field(default_factory=list)
    archived_metrics: Path | None = None
    was_at: str = "no saved run"


def reset_state(db_path: Path, metrics_path: Path) -> ResetResult:
    """Delete the saved run (database, model and update files); the metrics file is kept under a dated name."""
    result = ResetResult(was_at=_describe(db_path))
    with state_lock(db_path):
        for path in (db_path, *(db_path.with_name(db_path.name + s) for s in ("-wal", "-shm"))):
            if path.exists():
                path.unlink()
                result.removed.append(path)
        result.removed.extend(StateLayout.of_database(db_path).remove_all())
        if metrics_path.exists():
            stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
            result.archived_metrics = metrics_path.with_name(f"{metrics_path.stem}-{stamp}{metrics_path.suffix}")
            metrics_path.rename(result.archived_metrics)
    return result


def _describe(db_path: Path) -> str:
    """Where the saved run was, read without the normal checks (the database may be damaged)."""
    if not db_path.exists():
        return "no saved run"
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        db.close()
    except sqlite3.DatabaseError as err:
        return f"a damaged saved run ({err})"
    if meta.get("finished") == "1":
        return f"a finished run of plan {meta.get('plan_hash', '?')[:12]}"
    return f"a run of plan {meta.get('plan_hash', '?')[:12]} at round {int(meta.get('round', 0)) + 1}"
