"""``fx simulate --topology FILE``: a hierarchical federation on one machine, on the same engines and link.

The top engine's collaborators are the regions; each region is an engine of its
own (state under ``local_state/regions/<name>/``, metrics in
``logs/regions/<name>_metrics.jsonl``) whose virtual sites the simulator's
dispatcher plays with a worker pool of its own, and whose ``UpstreamLink`` talks
to the top engine's coordinator in this process (``LocalParent``) instead of over
gRPC. The round logic, the link and the state are those of a real hierarchy.

The topology file::

    local_rounds: 1          # default for every region
    regions:
      region-a: [a1, a2]     # sites, each with a line in plan/data.yaml
      region-b: {sites: [b1, b2], local_rounds: 2}
"""
from __future__ import annotations

import copy
import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from fx_cli.aggregator.coordinator import Ticket
from fx_cli.aggregator.engine import Engine, EngineOptions, RunResult, open_engine
from fx_cli.aggregator.intake import UpdateIntake
from fx_cli.aggregator.metrics import RoundReport
from fx_cli.aggregator.outcomes import Refused
from fx_cli.errors import FxError
from fx_cli.names import check_collaborator_name
from fx_cli.plan import Plan
from fx_cli.plan.yamlio import read_yaml
from fx_cli.topology.upstream import UpstreamLink
from fx_cli.transport.chunks import tensor_frames, trailer_of
from fx_cli.transport.serde import (Action, Caller, Frame, HeartbeatReply, JoinReply, Outcome, TaskReply,
                                    TensorMeta, UploadMeta, UploadReply)

log = logging.getLogger("fx.simulate")
CHUNK = 1 << 20


@dataclass(frozen=True)
class Topology:
    regions: dict[str, tuple[tuple[str, ...], int]]  # region -> (sites, local_rounds)

    @property
    def sites(self) -> list[str]:
        return [s for sites, _ in self.regions.values() for s in sites]


def read_topology(path: Path, known_sites: list[str]) -> Topology:
    """The topology file, checked: every problem at once, with what to do."""
    raw = read_yaml(path, what="topology file")
    problems: list[str] = []
    if not isinstance(raw, dict) or not isinstance(raw.get("regions"), dict) or not raw["regions"]:
        raise FxError(f"{path}: expected 'regions:' mapping each region to its sites",
                      "see `fx simulate --help` for the topology file's format")
    default = raw.get("local_rounds", 1)
    regions: dict[str, tuple[tuple[str, ...], int]] = {}
    seen: dict[str, str] = {}
    for name, spec in raw["regions"].items():
        sites, rounds = (spec, default) if isinstance(spec, list) else (
            (spec.get("sites"), spec.get("local_rounds", default)) if isinstance(spec, dict) else (None, default))
        try:
            check_collaborator_name(str(name))
        except FxError as err:
            problems.append(f"{path}: regions.{name}: {err.message}")
        if not isinstance(sites, list) or not sites:
            problems.append(f"{path}: regions.{name}: expected a non-empty list of sites")
            continue
        if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
            problems.append(f"{path}: regions.{name}.local_rounds: expected a whole number of at least 1, got "
                            f"{rounds!r}")
            continue
        for site in map(str, sites):
            if site in seen:
                problems.append(f"{path}: site '{site}' is in regions {seen[site]} and {name}")
            elif site not in known_sites:
                problems.append(f"{path}: regions.{name}: site '{site}' has no line in plan/data.yaml")
            seen[site] = str(name)
        regions[str(name)] = (tuple(map(str, sites)), rounds)
    if problems:
        raise FxError("; ".join(problems), "fix the topology file (every site once, each listed in plan/data.yaml)")
    return Topology(regions)


class LocalParent:
    """The calls ``UpstreamLink`` makes of its parent, answered by an engine in this process."""

    def __init__(self, engine: Engine, name: str) -> None:
        self.engine, self.coord, self.name = engine, engine.coord, name
        self.target = "the simulated top aggregator"
        self.caller = Caller(name, engine.plan.hash)

    def join(self) -> JoinReply:
        self.coord.seen(self.name)
        done, finished = self.coord.progress()
        return JoinReply(self.engine.plan.federation_id, done, self.engine.rounds_to_train, finished)

    def get_tasks(self) -> TaskReply:
        ins = self.coord.next_tasks(self.name, 1.0)
        return TaskReply(Action[ins.action.name], ins.round, tuple(ins.tasks), tuple(ins.already_received),
                         ins.rounds_to_train, ins.message)

    def heartbeat(self, round_num: int, task: str) -> HeartbeatReply:
        try:
            live = self.coord.heartbeat(self.name, round_num)
        except Refused as err:
            from fx_cli.collaborator.session import RunEnded

            raise RunEnded(err.message, "see the top aggregator's messages above") from None
        return HeartbeatReply(live.round_open, live.round)

    def download(self, round_num: int) -> dict[str, Any]:
        return dict(self.coord.model_for(round_num).tensors())

    def upload(self, meta: UploadMeta, tensors: list[tuple[TensorMeta, memoryview]]) -> UploadReply:
        granted = self.coord.open_upload(self.name, meta.round, meta.task)
        if not isinstance(granted, Ticket):
            return UploadReply(Outcome.LATE, 0, granted.message)
        spilled = UpdateIntake(granted.model, granted.target, self.engine.pipelines, len(tensors)).receive(
            _frames(tensors))
        receipt = self.coord.accept(granted, meta.data_size, meta.metrics, spilled)
        return UploadReply(Outcome.ACCEPTED if receipt.accepted else Outcome.LATE, spilled.wire_bytes,
                           receipt.message)


def _frames(tensors: list[tuple[TensorMeta, memoryview]]) -> Iterator[Frame | None]:
    for meta, payload in tensors:
        yield from tensor_frames(meta, payload, CHUNK)
    yield trailer_of(m for m, _ in tensors)


def region_plan(plan: Plan, name: str) -> Plan:
    """The top plan with a region's own state, model files and log (the same workspace, code and data)."""
    config = copy.deepcopy(plan.config)
    settings = config.setdefault("aggregator", {}).setdefault("settings", {})
    settings.update(persistent_db_path=f"local_state/regions/{name}/aggregator.db",
                    last_state_path=f"save/regions/{name}/last.pbuf", best_state_path=f"save/regions/{name}/best.pbuf",
                    init_state_path=str(plan.resolve_path(plan.aggregator.init_state_path)), write_logs=False)
    return Plan(plan.path, plan.workspace, config)


def simulate_tree(plan: Plan, topology: Topology, data_paths: dict[str, str], workers: int,
                  make_pool: Callable[[int], Any], rounds: int | None,
                  on_round: Callable[[RoundReport], None]) -> RunResult:
    """Run the top engine here and each region in threads; ``FxError`` when the run cannot complete."""
    from fx_cli.simulate.dispatch import Dispatcher, NoProgress, Roster, _wake_on

    errors: dict[str, BaseException] = {}
    per_region = max(1, workers // len(topology.regions))
    with open_engine(plan, list(topology.regions), EngineOptions(rounds=rounds, liveness=(math.inf, math.inf))) \
            as top:
        if isinstance(top, RunResult):
            return top

        def region(name: str, sites: tuple[str, ...], local_rounds: int) -> None:
            try:
                link = UpstreamLink(plan, name, local_rounds, LocalParent(top, name),  # type: ignore[arg-type]
                                    heartbeat_interval=0.5)
                total = link.connect()
                link.start()
                wake = threading.Event()
                options = EngineOptions(rounds=total, liveness=(math.inf, math.inf), source=link,
                                        observers=[lambda event: _wake_on(event, wake)],
                                        metrics_path=plan.workspace / "logs" / "regions" / f"{name}_metrics.jsonl")
                with open_engine(region_plan(plan, name), list(sites), options) as engine:
                    if isinstance(engine, RunResult):
                        link.join(60.0)
                        return
                    link.on_error = engine.abort
                    pool = make_pool(per_region)
                    try:
                        roster = Roster({s: data_paths[s] for s in sites}, f"region {name}")
                        Dispatcher(engine, pool, roster, NoProgress(), wake).run(lambda report: None)
                    finally:
                        pool.close()
                    link.join(60.0)
            except BaseException as err:  # noqa: BLE001 - reported by the main thread
                errors[name] = err
                top.abort(f"region '{name}' stopped: {err}")

        threads = [threading.Thread(target=region, args=(name, sites, lr), name=f"fx-region-{name}", daemon=True)
                   for name, (sites, lr) in topology.regions.items()]
        for thread in threads:
            thread.start()
        try:
            reports = top.drive(on_round)
        except FxError as err:
            top.abort(err.message)
            raise
        finally:
            for thread in threads:
                thread.join(60.0)
        if errors:
            name, failure = next(iter(errors.items()))
            raise failure if isinstance(failure, FxError) else FxError(f"region '{name}' failed: {failure!r}",
                                                                      "run `fx simulate` again: it resumes")
        return top.result(reports)
