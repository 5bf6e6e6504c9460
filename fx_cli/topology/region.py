"""``fx aggregator start`` in a middle (regional) aggregator's workspace: serve its sites, answer its parent.

A region's plan has an ``upstream`` section naming the parent's plan (a copy of
the parent workspace's ``plan/plan.yaml``), the region's collaborator name at
the parent and ``local_rounds``. The region is an ordinary aggregator for its
own sites (its ``plan/cols.yaml``, its server certificate) on the one round
engine, and a collaborator of its parent (its client certificate from the same
CA) through ``UpstreamLink``. Sites never connect to the parent, and the parent
only ever receives the region's aggregate.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable, Sequence

from fx_cli.aggregator.engine import EngineOptions, RunResult, open_engine
from fx_cli.aggregator.metrics import RoundReport
from fx_cli.aggregator.outcomes import Observer
from fx_cli.errors import FxError, PlanError
from fx_cli.plan import Plan, load_plan
from fx_cli.topology.upstream import UpstreamLink

log = logging.getLogger("fx.region")

if TYPE_CHECKING:  # avoids an import cycle with service.py
    from fx_cli.aggregator.service import AggregatorRun
    from fx_cli.aggregator.peers import GateWatch


def parent_plan(plan: Plan) -> Plan:
    """The parent's plan named by ``upstream.settings.plan``, checked against this region's plan."""
    up = plan.upstream
    assert up is not None
    path = plan.resolve_path(up.plan)
    if not up.name:
        raise PlanError([f"{plan.path}: upstream.settings.name: required: this region's collaborator name at the "
                         "parent (the name of its client certificate and in the parent's cols.yaml)"])
    if not path.is_file():
        raise FxError(f"{path}: the parent's plan (upstream.settings.plan) is missing",
                      "copy plan/plan.yaml of the parent's workspace (from its exported archive) there")
    parent = load_plan(path)
    problems = []
    missing = sorted(set(parent.tasks) - set(plan.tasks))
    if missing:
        problems.append(f"{plan.path}: tasks: the parent's tasks {', '.join(missing)} are not in this region's plan")
    if parent.aggregator.final_evaluation != plan.aggregator.final_evaluation:
        problems.append(f"{plan.path}: aggregator.settings.final_evaluation: must equal the parent's "
                        f"({parent.aggregator.final_evaluation}): the parent's final evaluation is the region's")
    if problems:
        raise PlanError(problems)
    return parent


def run_region(plan: Plan, cols: list[str], run: "AggregatorRun", on_round: Callable[[RoundReport], None],
               on_ready: Callable[[str], None], observers: Sequence[Observer] = (),
               watch: "GateWatch | None" = None) -> RunResult:
    """Serve this region's sites for every round of the parent; raise ``FxError`` when that cannot complete."""
    from fx_cli.aggregator.service import serve_engine
    from fx_cli.collaborator.loop import client_credentials_for
    from fx_cli.collaborator.session import AggregatorClient

    up = plan.upstream
    assert up is not None
    parent = parent_plan(plan)
    with AggregatorClient(parent, up.name, client_credentials_for(parent, up.name)) as client:
        link = UpstreamLink(parent, up.name, up.local_rounds, client, plan.collaborator.heartbeat_interval)
        rounds = link.connect()
        log.info("region '%s': %d local round(s) per parent round, %d in all", up.name, up.local_rounds, rounds)
        link.start()
        options = EngineOptions(task_group=run.task_group, resume=run.resume, rounds=rounds, source=link,
                                observers=observers)
        with open_engine(plan, cols, options) as engine:
            if isinstance(engine, RunResult):
                link.join(_farewell(parent))
                return engine
            link.on_error = engine.abort
            reports, not_told = serve_engine(plan, cols, run.cols_path, engine, on_round, on_ready, watch)
            link.join(_farewell(parent))  # its last answers are read from the saved state: before it closes
            return engine.result(reports, not_told)


def _farewell(parent: Plan) -> float:
    """How long the region waits, after its last round, for the parent to say the run is over."""
    return parent.aggregator.heartbeat_timeout + parent.network.reconnect_deadline
