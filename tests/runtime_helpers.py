"""Helpers for federation tests: workspaces with real certificates, real processes, in-process runs.

Everything listens on 127.0.0.1/localhost only. Real processes are always
started with a timeout and killed in teardown; nothing sleeps to wait.
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import yaml
from click.testing import CliRunner

from fx_cli.cli.main import cli

os.environ.setdefault("FQDN", "localhost")
SYNTHETIC_TEMPLATE = "numpy/synthetic"
WEIGHTED_AVERAGE = "fx_cli.aggregation.WeightedAverage"


def fx_in(ws: Path, *args: str) -> str:
    """Run ``fx ARGS`` in-process inside ``ws``; fail loudly on a non-zero exit."""
    with contextlib.chdir(ws):
        res = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert res.exit_code == 0, f"fx {' '.join(args)} failed ({res.exit_code}):\n{res.output}{res.stderr}"
    return res.output


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def edit_plan(ws: Path, **sections: dict[str, Any]) -> None:
    """Update ``<section>.settings`` keys (or a whole ``tasks``/``template`` entry) in ws/plan/plan.yaml."""
    path = ws / "plan" / "plan.yaml"
    plan = yaml.safe_load(path.read_text())
    for section, values in sections.items():
        target = plan.setdefault(section, {})
        for key, value in values.items():
            if key == "template":
                target["template"] = value
            elif section == "tasks":
                target[key] = value
            else:
                target.setdefault("settings", {})[key] = value
    path.write_text(yaml.safe_dump(plan))


def make_workspace(root: Path, cols: list[str], *, tls: bool = True, rounds: int = 2, shards: dict[str, int] | None = None,
                   num_params: int = 1000, num_tensors: int = 4, certify: list[str] | None = None,
                   prepare: Callable[[Path], Any] | None = None, template: str = SYNTHETIC_TEMPLATE,
                   **sections: dict[str, Any]) -> Path:
    """A numpy/synthetic workspace for ``cols`` on a free port, initialised and (with ``tls``) certified.

    ``prepare(ws)`` runs before the plan is edited (e.g. to add modules the plan names under src/).
    """
    ws = root / "ws"
    root.mkdir(parents=True, exist_ok=True)
    fx_in(root, "workspace", "create", "--prefix", str(ws), "--template", template)
    if prepare is not None:
        prepare(ws)
    network = {"agg_addr": "localhost", "agg_port": free_port(), "use_tls": tls, "client_reconnect_interval": 0.1,
               "reconnect_deadline": 15, "chunk_size_mib": 0.01}
    network.update(sections.pop("network", {}))
    aggregator = {"rounds_to_train": rounds, "join_deadline": 20, "heartbeat_timeout": 20}
    aggregator.update(sections.pop("aggregator", {}))
    aggregator.setdefault("rejoin_deadline", aggregator["heartbeat_timeout"])  # tests of 'gone' stay quick
    collaborator = {"heartbeat_interval": 0.5}
    collaborator.update(sections.pop("collaborator", {}))
    runner: dict[str, Any] = {"num_params": num_params, "num_tensors": num_tensors} if template == SYNTHETIC_TEMPLATE else {}
    runner.update(sections.pop("task_runner", {}))
    edit_plan(ws, network=network, aggregator=aggregator, collaborator=collaborator, task_runner=runner, **sections)
    shards = shards or {name: i + 1 for i, name in enumerate(cols)}
    (ws / "plan" / "data.yaml").write_text("".join(f"{n},{s}\n" for n, s in shards.items()))
    fx_in(ws, "plan", "initialize", "-a", "localhost")
    if tls:
        fx_in(ws, "workspace", "certify")
        fx_in(ws, "aggregator", "generate-cert-request", "--fqdn", "localhost")
        fx_in(ws, "aggregator", "certify", "--fqdn", "localhost", "-s")
        for name in certify if certify is not None else cols:
            fx_in(ws, "collaborator", "generate-cert-request", "-n", name, "-s", "-x")
            fx_in(ws, "collaborator", "certify", "-n", name, "-s")
    from fx_cli.plan.participants import write_cols

    write_cols(ws / "plan" / "cols.yaml", cols)
    return ws


# --- real processes -------------------------------------------------------------------------

@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[str]
    log: Path

    def wait(self, timeout: float) -> int:
        """Exit code; the process is killed (and the test fails) if it outlives ``timeout``."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise AssertionError(f"{self.name} still running after {timeout} s:\n{self.output()}") from None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Processes:
    """Started processes, all killed at exit."""

    ws: Path
    procs: list[Proc] = field(default_factory=list)

    def start(self, name: str, *args: str, cwd: Path | None = None) -> Proc:
        log = (cwd or self.ws) / "logs" / f"proc-{name}.log"
        log.parent.mkdir(exist_ok=True)
        env = dict(os.environ, FQDN="localhost", COLUMNS="200", PYTHONUNBUFFERED="1")
        popen = subprocess.Popen([sys.executable, "-m", "fx_cli", *args], cwd=cwd or self.ws, env=env, text=True,
                                 stdout=open(log, "w"), stderr=subprocess.STDOUT)
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def aggregator(self, *args: str) -> Proc:
        return self.start("aggregator", "aggregator", "start", *args)

    def collaborator(self, name: str, cwd: Path | None = None) -> Proc:
        return self.start(name, "collaborator", "start", "-n", name, cwd=cwd)

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.popen.poll() is None:
                proc.popen.kill()
                proc.popen.wait()


@contextlib.contextmanager
def processes(ws: Path) -> Iterator[Processes]:
    procs = Processes(ws)
    try:
        yield procs
    finally:
        procs.kill_all()


@dataclass
class FederationRun:
    """Exit codes and outputs of a whole federation run as real processes."""

    codes: dict[str, int]
    outputs: dict[str, str]

    @property
    def ok(self) -> bool:
        return all(code == 0 for code in self.codes.values())


def run_federation(ws: Path, collaborators: dict[str, Path] | list[str], *, timeout: float = 300.0,
                   aggregator_args: tuple[str, ...] = ()) -> FederationRun:
    """Run ``fx aggregator start`` in ``ws`` and ``fx collaborator start -n NAME`` for each collaborator (in its
    own workspace folder when given as ``{name: folder}``), as real processes; wait for all of them to exit."""
    folders = collaborators if isinstance(collaborators, dict) else {name: ws for name in collaborators}
    with processes(ws) as procs:
        started = [procs.aggregator(*aggregator_args)] + [procs.collaborator(n, cwd=d) for n, d in folders.items()]
        codes = {p.name: p.wait(timeout) for p in started}
    return FederationRun(codes, {p.name: p.output() for p in started})


# --- in-process federations -----------------------------------------------------------------

@dataclass
class InProcess:
    aggregator: Any = None
    collaborators: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, BaseException] = field(default_factory=dict)


def run_in_process(ws: Path, names: list[str], *, task_group: str | None = None, timeout: float = 300.0,
                   start_collaborators: Callable[[str], bool] = lambda n: True) -> InProcess:
    """Run the aggregator and collaborators as threads of this process (real gRPC on loopback)."""
    from fx_cli.aggregator.service import AggregatorRun, run_aggregator
    from fx_cli.collaborator.loop import CollaboratorRun, run_collaborator

    plan, cols, data = ws / "plan" / "plan.yaml", ws / "plan" / "cols.yaml", ws / "plan" / "data.yaml"
    out = InProcess()

    def guarded(key: str, fn: Callable[[], Any]) -> None:
        try:
            value = fn()
        except BaseException as err:  # noqa: BLE001 - reported to the test
            out.errors[key] = err
            return
        if key == "aggregator":
            out.aggregator = value
        else:
            out.collaborators[key] = value

    threads = [threading.Thread(target=guarded, args=("aggregator", lambda: run_aggregator(
        AggregatorRun(plan, cols, task_group))), daemon=True)]
    for name in names:
        if start_collaborators(name):
            threads.append(threading.Thread(target=guarded, args=(name, lambda n=name: run_collaborator(
                CollaboratorRun(n, plan, data))), daemon=True))
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(deadline - time.monotonic(), 0.0))
    alive = [t.name for t in threads if t.is_alive()]
    assert not alive, f"federation threads still running after {timeout} s; errors so far: {out.errors}"
    return out


# --- reference computations -----------------------------------------------------------------

def synthetic_runner(ws: Path, shard: int) -> Any:
    from fx_cli.plan import load_plan
    from fx_cli.runners.build import build_runner

    return build_runner(load_plan(ws / "plan" / "plan.yaml"), str(shard))


Aggregate = Callable[[str, np.ndarray, list[tuple[str, float, np.ndarray]], int], np.ndarray]


def weighted_mean(name: str, base: np.ndarray, updates: list[tuple[str, float, np.ndarray]], r: int) -> np.ndarray:
    total = sum(w for _, w, _ in updates)
    return sum(w / total * u.astype(np.float64) for _, w, u in updates)  # type: ignore[return-value]


def reference_model(ws: Path, shards: dict[str, int], rounds: int, aggregate: Aggregate = weighted_mean,
                    trainers: Callable[[int], list[str]] | None = None) -> dict[str, np.ndarray]:
    """The final model recomputed independently of the runtime: each round, train every (selected) shard from
    the global model (the synthetic runner is deterministic), then ``aggregate`` with data-size weights."""
    from fx_cli.tensors.pbuf import read_model

    model = dict(read_model(ws / "save" / "init.pbuf").tensors)
    runners = {n: synthetic_runner(ws, s) for n, s in shards.items()}
    for r in range(rounds):
        chosen = sorted(trainers(r) if trainers else runners)
        updates = []
        for name in chosen:
            runner = runners[name]
            runner.set_tensors({k: np.asarray(v, np.float32) for k, v in model.items()})
            updates.append((name, float(runner.train_data_size()), runner.train_task(r).tensors))
        if updates:
            model = {k: np.asarray(aggregate(k, np.asarray(v, np.float32), [(n, w, u[k]) for n, w, u in updates], r),
                                   np.float32) for k, v in model.items()}
    return model


def reference_fedavg(ws: Path, shards: dict[str, int], rounds: int) -> dict[str, np.ndarray]:
    """FedAvg recomputed independently (float64 weighted mean of the recomputed updates)."""
    return reference_model(ws, shards, rounds)


def write_src(ws: Path, module: str, code: str) -> None:
    """Add ``src/<module>.py`` to the workspace (custom runners and functions for tests)."""
    (ws / "src" / f"{module}.py").write_text(code)


def final_model(ws: Path) -> dict[str, np.ndarray]:
    from fx_cli.tensors.pbuf import read_model

    return read_model(ws / "save" / "last.pbuf").tensors


@contextlib.contextmanager
def aggregator_thread(ws: Path, timeout: float = 60.0) -> Iterator[dict[str, Any]]:
    """Run the aggregator of ``ws`` in a thread; yields once it listens. The dict gets 'result' or 'error'."""
    from fx_cli.aggregator.service import AggregatorRun, run_aggregator

    ready = threading.Event()
    state: dict[str, Any] = {}

    def target() -> None:
        try:
            state["result"] = run_aggregator(AggregatorRun(ws / "plan" / "plan.yaml", ws / "plan" / "cols.yaml"),
                                             on_ready=lambda address: ready.set())
        except BaseException as err:  # noqa: BLE001 - reported to the test
            state["error"] = err
            ready.set()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    assert ready.wait(timeout), "the aggregator did not start listening"
    assert "error" not in state, state.get("error")
    yield state
    thread.join(timeout)
    assert not thread.is_alive(), "the aggregator did not finish"
