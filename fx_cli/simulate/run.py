"""``fx simulate``: the plan's federation on this machine, on the same round engine as ``fx aggregator start``.

The engine (``fx_cli.aggregator.engine``) drives rounds in a thread; this
module plays every collaborator's side: it asks the coordinator for each
virtual collaborator's instruction, has a pool worker run the turn, and hands
the spilled results back to ``accept``. Every input is checked before anything
is written; a worker that dies stops the run cleanly (state saved, resumable).
"""
from __future__ import annotations

import logging
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from fx_cli.aggregator.engine import EngineOptions, RunResult, open_engine
from fx_cli.aggregator.metrics import RoundReport
from fx_cli.aggregator.outcomes import Observer
from fx_cli.errors import FxError, PlanError
from fx_cli.plan import Plan, load_plan
from fx_cli.simulate.dispatch import RESUME_HINT, Dispatcher, NoProgress, Progress, Roster, _wake_on
from fx_cli.simulate.partition import Partition, split_data_paths
from fx_cli.simulate.pool import Pool, ProcessPool
from fx_cli.simulate.secagg import SimulatedSecAgg
from fx_cli.simulate.settings import SimulationSettings, simulation_of
from fx_cli.simulate.worker import WorkerSetup

log = logging.getLogger("fx.simulate")
__all__ = ["Dispatcher", "NoProgress", "Progress", "RESUME_HINT", "Roster", "SimulationRun", "run_simulation"]


@dataclass(frozen=True)
class SimulationRun:
    plan_path: Path = Path("plan/plan.yaml")
    data_path: Path = Path("plan/data.yaml")
    collaborators: int | None = None  # None: the collaborators of plan/data.yaml
    partition: str | None = None  # iid | dirichlet:ALPHA | shards:K (None: data.yaml's data paths, or iid)
    seed: int = 0
    workers: int | None = None  # None: the number of cores
    rounds: int | None = None  # overrides aggregator.settings.rounds_to_train for this run
    backend: str = "process"  # process | ray
    address: str | None = None  # Ray cluster address (--backend ray)
    topology: Path | None = None  # regions and their sites (fx_cli/topology/simulated.py)


@dataclass(frozen=True)
class Checked:
    plan: Plan
    roster: Roster
    workers: int
    settings: SimulationSettings


def check_inputs(run: SimulationRun) -> Checked:
    """Every input checked, nothing written: ``FxError`` with the numbers and what to do."""
    if run.workers is not None and run.workers < 1:
        raise FxError(f"--workers must be at least 1, got {run.workers}",
                      f"use --workers 1 to {os.cpu_count() or 1} (the default is the number of cores)")
    if run.rounds is not None and run.rounds < 1:
        raise FxError(f"--rounds must be at least 1, got {run.rounds}", "leave it out to use the plan's rounds")
    if run.backend not in ("process", "ray"):
        raise FxError(f"unknown --backend {run.backend!r}", "use --backend process (default) or --backend ray")
    if run.address is not None and run.backend != "ray":
        raise FxError("--address is for --backend ray", "add --backend ray, or leave --address out")
    if run.collaborators is not None and run.collaborators < 1:
        raise FxError(f"--collaborators must be at least 1, got {run.collaborators}",
                      "simulate 1 or more collaborators")
    plan = load_plan(run.plan_path)
    roster = _roster(plan, run)
    workers = min(run.workers or os.cpu_count() or 1, len(roster.data_paths))
    return Checked(plan, roster, workers, simulation_of(plan.config))


def _roster(plan: Plan, run: SimulationRun) -> Roster:
    from fx_cli.plan.participants import read_data
    from fx_cli.plan.templates import resolve_class

    if run.collaborators is None and run.partition is None:
        try:
            data = read_data(run.data_path)
        except PlanError as err:
            raise FxError("; ".join(err.problems), "list collaborators as NAME,DATA_PATH lines in plan/data.yaml, "
                          "or give --collaborators N to split the data N ways") from None
        if not data:
            raise FxError(f"{run.data_path} lists no collaborators",
                          "add NAME,DATA_PATH lines, or give --collaborators N to split the data N ways")
        return Roster(data, str(run.data_path))
    count = run.collaborators
    if count is None:
        try:
            count = len(read_data(run.data_path))
        except PlanError:
            count = 0
        if count < 1:
            raise FxError(f"--partition needs a number of collaborators and {run.data_path} lists none",
                          "give --collaborators N")
    partition = Partition.parse(run.partition or "iid", count, run.seed)
    loader_cls = resolve_class(plan.template("data_loader"), plan.workspace, "data_loader.template")
    paths = split_data_paths(loader_cls, partition, plan.settings("data_loader"))
    width = len(str(count))
    names = [f"col{i + 1:0{width}d}" for i in range(count)]
    return Roster(dict(zip(names, paths)), f"--partition {partition.describe()} over {count} collaborators "
                                           f"(seed {run.seed})")


def make_pool(run: SimulationRun, checked: Checked) -> Pool:
    setup = WorkerSetup(str(run.plan_path.resolve()))
    if run.backend == "ray":
        from fx_cli.simulate.raypool import RayPool

        return RayPool(setup, checked.workers, checked.settings, run.address)
    return ProcessPool(setup, checked.workers)


def run_simulation(run: SimulationRun, on_round: Callable[[RoundReport], None] = lambda r: None,
                   progress: Progress | None = None,
                   on_status: Callable[[str, str | None], None] | None = None) -> RunResult:
    """Run (or resume) the simulated federation to its end; ``FxError`` when it cannot complete."""
    checked = check_inputs(run)
    plan, roster = checked.plan, checked.roster
    if plan.aggregator.secure_aggregation and run.topology is not None:
        raise FxError("aggregator.settings.secure_aggregation: true is not available with --topology (a region "
                      "would have to unmask its own sum)", "leave out --topology, or set it to false")
    if run.rounds is not None and run.rounds != plan.aggregator.rounds_to_train:
        log.warning("--rounds %d: this run trains %d rounds (the plan says %d)", run.rounds, run.rounds,
                    plan.aggregator.rounds_to_train)
    log.info("simulating %d collaborators (%s) with %d %s worker(s)", len(roster.names), roster.source,
             checked.workers, run.backend)
    if run.topology is not None:
        return _simulate_tree(run, checked, on_round)
    pool = make_pool(run, checked)
    try:
        if on_status is None:
            return _simulate(run, checked, pool, on_round, progress, [])
        # fx simulate keeps the same audit log and status page as fx aggregator start
        from fx_cli.aggregator.operate import operations

        with operations(plan, roster.names, None, False, on_status, need_signer=False) as (ops, watch):
            ops.ready("simulation")
            try:
                result = _simulate(run, checked, pool, on_round, progress, [watch])
            except BaseException as err:
                ops.ended(None, err)
                raise
            ops.ended(result, None)
            return result
    finally:
        pool.close()


def _simulate_tree(run: SimulationRun, checked: Checked, on_round: Callable[[RoundReport], None]) -> RunResult:
    """A hierarchical federation: the top engine here, each region an engine with its own worker pool."""
    from fx_cli.topology.simulated import read_topology, simulate_tree

    assert run.topology is not None
    if run.backend != "process":
        raise FxError("--topology runs with the process backend only", "leave out --backend ray")
    if run.collaborators is not None or run.partition is not None:
        raise FxError("--topology takes its sites from plan/data.yaml; --collaborators and --partition do not apply",
                      "list each site of the topology file in plan/data.yaml")
    topology = read_topology(run.topology, checked.roster.names)
    setup = WorkerSetup(str(run.plan_path.resolve()))
    log.info("simulating %d regions over %d sites", len(topology.regions), len(topology.sites))
    return simulate_tree(checked.plan, topology, checked.roster.data_paths, checked.workers,
                         lambda n: ProcessPool(setup, n), run.rounds, on_round)


def _simulate(run: SimulationRun, checked: Checked, pool: Pool, on_round: Callable[[RoundReport], None],
              progress: Progress | None, observers: list[Observer]) -> RunResult:
    wake = threading.Event()
    options = EngineOptions(rounds=run.rounds, liveness=(math.inf, math.inf), power_safe=False,
                            observers=[lambda event: _wake_on(event, wake), *observers], certificates=False)
    with open_engine(checked.plan, checked.roster.names, options) as engine:
        if isinstance(engine, RunResult):
            return engine
        secagg = None
        if engine.secagg is not None:
            log.info("secure aggregation: the virtual collaborators' keys are signed with per-run keys made by the "
                     "simulator (it shows the protocol's sums and dropout handling, not its trust model)")
            secagg = SimulatedSecAgg(engine.secagg, checked.plan.federation_id, checked.roster.names,
                                     checked.plan.aggregator.heartbeat_timeout + 30.0)
        reports = Dispatcher(engine, pool, checked.roster, progress or NoProgress(), wake, secagg).run(on_round)
        return engine.result(reports)
