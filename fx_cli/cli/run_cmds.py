"""``fx aggregator start``/``reset``, ``fx collaborator start`` and ``fx collaborator ping``."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from fx_cli.cli.output import console, ok

if TYPE_CHECKING:
    from fx_cli.aggregator.metrics import RoundReport

PLAN = click.option("-p", "--plan", "plan_path", default="plan/plan.yaml", show_default=True,
                    type=click.Path(dir_okay=False, path_type=Path), help="Plan file.")
NAME = click.option("-n", "--collaborator-name", "--collaborator_name", "name", required=True,
                    help="This collaborator's name (as in plan/cols.yaml and its certificate).")


@click.command("start")
@PLAN
@click.option("-c", "--authorized-cols", "--authorized_cols", "cols_path", default="plan/cols.yaml",
              show_default=True, type=click.Path(dir_okay=False, path_type=Path), help="Authorized collaborators.")
@click.option("--task-group", "--task_group", "task_group", default=None,
              help="Run only this assigner task group; 'evaluation' validates the initial model and saves nothing.")
@click.option("--resume", is_flag=True,
              help="Continue the saved run even though plan.yaml changed since: completed rounds, the global model "
                   "and the best score are kept; the current round's received results are asked for again. A "
                   "finished run continues when rounds_to_train grew.")
def aggregator_start(plan_path: Path, cols_path: Path, task_group: str | None, resume: bool) -> None:
    """Run the aggregator until every round is done (exit 0), or the run cannot complete (exit 1).

    A run that was interrupted (even by kill -9) resumes where it was; a finished one says so and exits 0.
    """
    from fx_cli.aggregator.operate import run_operated
    from fx_cli.aggregator.service import AggregatorRun
    from fx_cli.errors import Interrupted
    from fx_cli.logs import console_log_file
    from fx_cli.plan.loader import require_workspace

    with console_log_file(require_workspace(plan_path) / "logs" / "aggregator.log") as copy:
        def on_round(report: RoundReport) -> None:
            console().print(report.line())
            copy(report.line())

        try:
            result = run_operated(AggregatorRun(plan_path, cols_path, task_group, resume), on_round=on_round,
                                  on_status=_say_status)
        except KeyboardInterrupt:
            raise Interrupted("interrupted: the run so far is saved (local_state/): completed rounds, the "
                              "global model and the results already received",
                              "run the same command, `fx aggregator start`, to resume where it stopped "
                              "(`fx aggregator reset` starts over instead)") from None
    if result.already_finished:
        ok(f"this run already finished all {result.rounds_to_train} rounds; final model: {result.last_path}")
        return
    final = next((r for r in reversed(result.reports) if r.final), None)
    if final is not None:
        shown = " ".join(f"{k}={v:.4f}" for k, v in final.display.items())
        console().print(f"final model: {shown}")
    from fx_cli.privacy.summary import summary_line

    dp = summary_line([r.privacy for r in result.reports])
    if dp is not None:
        console().print(dp)
    if result.stop_reason:
        console().print(f"stopped early after round {result.rounds_to_train}: {result.stop_reason}")
    if result.results_path is not None:
        ok(f"federation complete: results in {result.results_path}")
    elif result.last_path is not None:
        ok(f"federation complete: final aggregated model {result.last_path}"
           + (f", best model {result.best_path} ({result.best_score:.4f})" if result.best_path else ""))
    else:
        ok("evaluation complete (no model saved)")


def _say_status(url: str, token: str | None) -> None:
    """The status page's address (and, beyond loopback, its token: printed, never logged)."""
    shown = f"{url}/?token={token}" if token else f"{url}/"
    console().print(f"status page and API: {shown}" + ("  (keep this token private)" if token else ""))


@click.command("reset")
@PLAN
@click.option("-y", "--yes", "-s", "--silent", "yes", is_flag=True,
              help="Do not ask for confirmation (needed where there is no terminal).")
def aggregator_reset(plan_path: Path, yes: bool) -> None:
    """Delete the aggregator's saved run (local_state/) so that the next start begins at round 1.

    Models already exported to save/ are kept until the new run replaces them; logs/aggregator_metrics.jsonl
    is kept under a dated name.
    """
    from fx_cli.aggregator.reset import reset_state
    from fx_cli.plan import load_plan

    plan = load_plan(plan_path, check_classes=False)
    db_path = plan.resolve_path(plan.aggregator.persistent_db_path)
    if not yes:
        click.confirm(f"delete the saved run in {db_path.parent}?", abort=True)
    result = reset_state(db_path, plan.workspace / "logs" / "aggregator_metrics.jsonl")
    if not result.removed:
        ok(f"nothing to reset: {result.was_at} in {db_path.parent}")
        return
    ok(f"deleted {result.was_at}: " + ", ".join(str(p) for p in result.removed))
    if result.archived_metrics:
        ok(f"kept the round metrics as {result.archived_metrics}")
    console().print("the next `fx aggregator start` begins at round 1")


def _data_config(ctx: click.Context, param: click.Parameter, value: Path) -> Path:
    """``-d`` here is the data-config file (as in OpenFL); a data path given instead is explained."""
    if value.is_file() or value.suffix in (".yaml", ".yml"):
        return value
    raise click.BadParameter(
        f"{str(value)!r} is not a data-config file. In `fx collaborator start`, -d/--data-config names the "
        f"file of 'name,data path' lines (default plan/data.yaml); a data path such as {str(value)!r} is "
        f"registered once with `fx collaborator create -n NAME -d {value}`, then `fx collaborator start -n NAME` "
        f"finds it there")


@click.command("start")
@PLAN
@NAME
@click.option("-d", "--data-config", "--data_config", "data_path", default="plan/data.yaml", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), callback=_data_config,
              help="The data-config file: one 'name,data path' line per collaborator (not the data path itself: "
                   "that is registered with `fx collaborator create -d`).")
def collaborator_start(plan_path: Path, name: str, data_path: Path) -> None:
    """Take part in the federation until the aggregator says it is finished."""
    from fx_cli.collaborator.loop import CollaboratorRun, run_collaborator
    from fx_cli.errors import Interrupted
    from fx_cli.logs import console_log_file
    from fx_cli.names import check_collaborator_name
    from fx_cli.plan.loader import require_workspace

    with console_log_file(require_workspace(plan_path) / "logs" / f"{check_collaborator_name(name)}.log"):
        try:
            result = run_collaborator(CollaboratorRun(name, plan_path, data_path))
        except KeyboardInterrupt:
            raise Interrupted(f"interrupted: '{name}' left the federation; nothing it sent is lost",
                              f"run `fx collaborator start -n {name}` again to rejoin: the aggregator gives it "
                              f"its current task again") from None
    if result.already_finished:
        ok("the federation had already finished; nothing to do")
        return
    missed = f"; missed rounds {', '.join(map(str, result.missed))}" if result.missed else ""
    ok(f"'{name}' finished: contributed to {len(result.rounds)} round(s){missed}")


@click.command("ping")
@PLAN
@NAME
@click.option("--timeout", default=10.0, show_default=True, type=float, help="Seconds to wait for the answer.")
def collaborator_ping(plan_path: Path, name: str, timeout: float) -> None:
    """Check reachability, TLS, authorization and plan agreement with the aggregator (no training)."""
    from fx_cli.collaborator.ping import ping

    report = ping(name, plan_path, timeout)
    reply = report.reply
    ok(f"reachable: {report.target} answered in {report.seconds * 1000:.0f} ms")
    ok(f"transport: {report.security}")
    ok(f"authorized as '{report.name}'")
    ok(f"plan matches the aggregator's ({reply.federation_id})")
    state = "finished" if reply.finished else f"at round {min(reply.round + 1, reply.rounds_to_train)}"
    console().print(f"federation {state} of {reply.rounds_to_train}")
