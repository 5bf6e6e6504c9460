"""Helpers for the fault-injection suite: processes started with ``FX_FAULT``, waits on observable state.

Every process has a timeout and is killed at the end of its ``processes`` block; nothing sleeps blindly.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from tests.runtime_helpers import Proc

TIMEOUT = 120.0


@dataclass
class Procs:
    """Started processes (optionally with a fault rule), all killed and resumed from SIGSTOP at exit."""

    ws: Path
    procs: list[Proc] = field(default_factory=list)

    def start(self, name: str, *args: str, fault: str | None = None, cwd: Path | None = None) -> Proc:
        log = (cwd or self.ws) / "logs" / f"proc-{name}-{len(self.procs)}.log"
        log.parent.mkdir(exist_ok=True)
        env = dict(os.environ, FQDN="localhost", COLUMNS="400", PYTHONUNBUFFERED="1")
        env.pop("FX_FAULT", None)
        if fault:
            env["FX_FAULT"] = fault
        popen = subprocess.Popen([sys.executable, "-m", "fx_cli", *args], cwd=cwd or self.ws, env=env, text=True,
                                 stdout=open(log, "w"), stderr=subprocess.STDOUT)
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def aggregator(self, *args: str, fault: str | None = None) -> Proc:
        return self.start("aggregator", "aggregator", "start", *args, fault=fault)

    def collaborator(self, name: str, fault: str | None = None) -> Proc:
        return self.start(name, "collaborator", "start", "-n", name, fault=fault)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.popen.send_signal(signal.SIGCONT)
                proc.popen.kill()
                proc.popen.wait()


@contextlib.contextmanager
def processes(ws: Path) -> Iterator[Procs]:
    procs = Procs(ws)
    try:
        yield procs
    finally:
        procs.stop_all()


def killed(proc: Proc, timeout: float = TIMEOUT) -> None:
    """Assert that ``proc`` died of SIGKILL (its fault fired), within ``timeout``."""
    code = proc.wait(timeout)
    assert code == -signal.SIGKILL, f"{proc.name} exited {code}, not by its fault's SIGKILL:\n{proc.output()}"


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = TIMEOUT,
               procs: Sequence[Proc] = ()) -> None:
    """Poll an observable condition until it holds; fail after ``timeout``, or at once if one of ``procs`` ended."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        ended = [p for p in procs if p.popen.poll() is not None]
        assert not ended, f"{ended[0].name} exited {ended[0].popen.returncode} before {what}:\n{ended[0].output()}"
        time.sleep(0.05)


def in_log(proc: Proc, text: str) -> bool:
    return text in " ".join(proc.output().split())


def flat(text: str) -> str:
    """Log text with the console's line wrapping undone."""
    return " ".join(text.split())


def saved_meta(ws: Path) -> dict[str, str]:
    """The aggregator database's meta table, read-only."""
    with contextlib.closing(sqlite3.connect(f"file:{ws / 'local_state' / 'aggregator.db'}?mode=ro", uri=True)) as db:
        return dict(db.execute("SELECT key, value FROM meta").fetchall())


def task_counts(ws: Path, name: str) -> dict[str, int]:
    """How many times collaborator ``name`` ran each task (from its metrics log)."""
    counts: dict[str, int] = {}
    path = ws / "logs" / f"{name}_metrics.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        task = json.loads(line)["task"]
        counts[task] = counts.get(task, 0) + 1
    return counts


def history(ws: Path) -> list[tuple[int, bool]]:
    """(round, final) of every line in logs/aggregator_metrics.jsonl."""
    lines = (ws / "logs" / "aggregator_metrics.jsonl").read_text().splitlines()
    return [(json.loads(x)["round"], json.loads(x)["final"]) for x in lines]


def assert_bit_identical(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name].dtype == want[name].dtype and got[name].shape == want[name].shape, name
        assert got[name].tobytes() == want[name].tobytes(), f"tensor '{name}' differs"


def files(folder: Path, pattern: str) -> list[Path]:
    """Files under ``folder`` matching ``pattern`` (none when it does not exist)."""
    return [p for p in folder.rglob(pattern) if p.is_file()] if folder.exists() else []


def uninterrupted_model(root: Path, names: list[str], **settings: object) -> dict[str, np.ndarray]:
    """The final model of a federation run without faults (threads, plain TCP), for bit-for-bit comparisons."""
    from fx_cli.tensors.pbuf import read_model
    from tests.runtime_helpers import make_workspace, run_in_process

    ws = make_workspace(root, names, tls=False, **settings)  # type: ignore[arg-type]
    out = run_in_process(ws, names, timeout=TIMEOUT)
    assert not out.errors, out.errors
    return read_model(ws / "save" / "last.pbuf").tensors
