"""Worker pools for ``fx simulate``: K processes on this machine (default), or K Ray actors (``ray.py``).

A pool runs ``Turn``s on numbered workers and reports each ``TurnDone``, or a
``Died`` for a worker that disappeared (killed, out of memory) with what it
was running. Turns go over a pipe as small records (names, paths, the model's
index); tensors never cross it: workers read the global model file and write
their results into the spill files the engine granted.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Protocol, Union

from fx_cli.errors import FxError
from fx_cli.simulate.worker import Turn, TurnDone, Worker, WorkerSetup

log = logging.getLogger("fx.simulate")


@dataclass(frozen=True)
class Died:
    """A worker that is gone; ``how`` says why (signal, exit code, the backend's message)."""

    worker: int
    how: str


Report = Union[TurnDone, Died]


class Pool(Protocol):
    size: int
    batch: int  # most turns sent to one worker at once; it reports each turn as it ends

    def submit(self, worker: int, turns: list[Turn]) -> None: ...

    def wait(self, timeout: float) -> list[tuple[int, Report]]: ...

    def close(self) -> None: ...


def _serve(setup: WorkerSetup, conn: Connection) -> None:
    """A worker process: build the runner once, then run turns until told to stop (or the parent is gone)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    worker = Worker(setup)
    try:
        worker.start()
    except FxError as err:
        conn.send(("error", err.message, err.hint or ""))
        return
    conn.send(("ready", "", ""))
    while True:
        try:
            turn = conn.recv()
        except (EOFError, OSError):  # the simulation is gone (even killed): so is this worker
            return
        if turn is None:
            return
        for one in turn:
            try:
                done = worker.run(one)
            except Exception as err:  # noqa: BLE001 - a runner's bug ends the run with its message, not a hang
                done = TurnDone(one.collaborator, one.round, error=f"{type(err).__name__}: {err}",
                                hint="run `fx --debug simulate ...` with --workers 1 for the traceback")
            try:
                conn.send(done)
            except (BrokenPipeError, OSError):
                return


def describe_exit(code: int | None) -> str:
    if code is None:
        return "its pipe closed"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class ProcessPool:
    """``size`` worker processes (spawned: no state inherited from this process's threads)."""

    def __init__(self, setup: WorkerSetup, size: int, batch: int = 8) -> None:
        ctx = mp.get_context("spawn")
        self.size = size
        self.batch = batch
        self.procs: list[BaseProcess] = []
        self.conns: list[Connection] = []
        try:
            for i in range(size):
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_serve, args=(setup, child), name=f"fx-simulate-worker-{i + 1}",
                                   daemon=True)
                proc.start()
                child.close()
                self.procs.append(proc)
                self.conns.append(parent)
            for i, conn in enumerate(self.conns):
                self._await_ready(i, conn)
        except BaseException:
            self.close()
            raise

    def _await_ready(self, i: int, conn: Connection) -> None:
        try:
            kind, message, hint = conn.recv()
        except (EOFError, OSError):
            self.procs[i].join(5)
            raise FxError(f"simulation worker {i + 1} died while building the task runner "
                          f"({describe_exit(self.procs[i].exitcode)})",
                          "check the plan's task runner and data loader, or use fewer --workers") from None
        if kind == "error":
            raise FxError(message, hint or None)

    def submit(self, worker: int, turns: list[Turn]) -> None:
        self.conns[worker].send(turns)

    def wait(self, timeout: float) -> list[tuple[int, Report]]:
        ready = set(wait([*self.conns, *(p.sentinel for p in self.procs)], timeout))
        out: list[tuple[int, Report]] = []
        for i, (conn, proc) in enumerate(zip(self.conns, self.procs)):
            if conn in ready or proc.sentinel in ready:
                try:
                    if conn.poll():
                        while conn.poll():  # every turn it finished since the last look
                            out.append((i, conn.recv()))
                        continue
                except (EOFError, OSError):
                    pass
                if proc.sentinel in ready or conn in ready:
                    proc.join(5)
                    out.append((i, Died(i, describe_exit(proc.exitcode))))
        return out

    def close(self) -> None:
        for conn in self.conns:
            try:
                conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        for conn in self.conns:
            conn.close()
