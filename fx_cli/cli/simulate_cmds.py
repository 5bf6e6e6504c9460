"""``fx simulate``: the plan's federation with N virtual collaborators on this machine (or a Ray cluster)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from fx_cli.cli.output import console, err_console, ok


class RichProgress:
    """A progress bar per round (collaborators done / total, ETA) on stderr; round lines print above it."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("collaborators"), TimeRemainingColumn(), console=err_console(),
                            transient=True)
        self.task: Any = None

    def __enter__(self) -> "RichProgress":
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def round_started(self, label: str, total: int) -> None:
        self.round_ended()
        self.task = self.bar.add_task(label, total=total)

    def advance(self) -> None:
        if self.task is not None:
            self.bar.advance(self.task)

    def round_ended(self) -> None:
        if self.task is not None:
            self.bar.remove_task(self.task)
            self.task = None


@click.command("simulate")
@click.option("-p", "--plan", "plan_path", default="plan/plan.yaml", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="Plan file.")
@click.option("-d", "--data-config", "data_path", default="plan/data.yaml", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="Collaborators and data paths used when neither --collaborators nor --partition is given.")
@click.option("-n", "--collaborators", type=int, default=None,
              help="Number of virtual collaborators [default: those in plan/data.yaml].")
@click.option("--partition", default=None, metavar="iid|dirichlet:ALPHA|shards:K",
              help="Split the data loader's data set N ways (the loader's simulation_split hook) [default with "
                   "--collaborators: iid; without: the data paths of plan/data.yaml].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the partition.")
@click.option("-w", "--workers", type=int, default=None,
              help="Worker processes (or Ray actors), each building the task runner once [default: cores].")
@click.option("-r", "--rounds", type=int, default=None, help="Rounds to train in this run (overrides the plan).")
@click.option("--backend", type=click.Choice(["process", "ray"]), default="process", show_default=True,
              help="Where workers run: processes on this machine, or Ray actors.")
@click.option("--address", default=None,
              help="Ray cluster to join (e.g. 10.0.0.5:6379, as `ray start --head` prints) [default: a local "
                   "Ray instance].")
@click.option("--topology", "topology", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="A YAML file of regions and their sites (regions: {NAME: [SITE, ...]}, local_rounds: N): "
                   "simulate a hierarchical federation with a middle aggregator per region.")
def simulate(plan_path: Path, data_path: Path, collaborators: int | None, partition: str | None, seed: int,
             workers: int | None, rounds: int | None, backend: str, address: str | None,
             topology: Path | None) -> None:
    """Run the plan with N virtual collaborators here: same round engine, aggregation and saved state as
    `fx aggregator start`, no certificates and no sockets. Interrupted (even kill -9), it resumes when run again.
    """
    from fx_cli.simulate.run import SimulationRun, run_simulation

    run = SimulationRun(plan_path, data_path, collaborators, partition, seed, workers, rounds, backend, address,
                        topology)
    with RichProgress() as progress:
        result = run_simulation(run, on_round=lambda report: progress.bar.console.print(report.line()),
                                progress=progress, on_status=lambda url, token: progress.bar.console.print(
                                    f"status page and API: {url}/" + (f"?token={token}" if token else "")))
    if result.already_finished:
        ok(f"this run already finished all {result.rounds_to_train} rounds; final model: {result.last_path} "
           "(`fx aggregator reset` starts over)")
        return
    final = next((r for r in reversed(result.reports) if r.final), None)
    if final is not None:
        shown = " ".join(f"{k}={v:.4f}" for k, v in final.display.items())
        console().print(f"final model: {shown}")
    from fx_cli.privacy.summary import summary_line

    dp = summary_line([r.privacy for r in result.reports])
    if dp is not None:
        console().print(dp)
    if result.results_path is not None:
        ok(f"simulation complete: results in {result.results_path}")
    else:
        ok(f"simulation complete: final aggregated model {result.last_path}"
           + (f", best model {result.best_path} ({result.best_score:.4f})" if result.best_path else ""))
