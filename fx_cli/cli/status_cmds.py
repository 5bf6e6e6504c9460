"""``fx aggregator status``."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from fx_cli.cli.output import console


@click.command("status")
@click.option("-p", "--plan", "plan_path", default="plan/plan.yaml", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="Plan file.")
@click.option("-c", "--authorized-cols", "--authorized_cols", "cols_path", default="plan/cols.yaml",
              show_default=True, type=click.Path(dir_okay=False, path_type=Path), help="Authorized collaborators.")
@click.option("--json", "as_json", is_flag=True, help="Print the documents as JSON instead of tables.")
def aggregator_status(plan_path: Path, cols_path: Path, as_json: bool) -> None:
    """Show the run: from the running aggregator's status API, or from the saved state when it is not running."""
    from fx_cli.aggregator.inputs import aggregator_inputs
    from fx_cli.status.client import gather

    plan, cols = aggregator_inputs(plan_path, cols_path)
    report = gather(plan, cols)
    if as_json:
        import json

        click.echo(json.dumps({"source": report.source, "status": report.status, "clients": report.clients,
                               "metrics": report.metrics}, indent=1))
        return
    _print(report.source, report.status, report.clients, report.metrics)


def _print(source: str, status: dict[str, Any], clients: list[dict[str, Any]], metrics: list[dict[str, Any]]) -> None:
    from rich.table import Table

    out = console()
    best = status.get("best") or {}
    summary = Table(title=f"federation {status['federation']} ({source})", show_header=False)
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("phase", str(status["phase"]) + (f" ({status['note']})" if status.get("note") else ""))
    summary.add_row("round", f"{status['round']}/{status['rounds_to_train']} ({status['rounds_done']} done)")
    summary.add_row("elapsed", _secs(status["elapsed_s"]))
    summary.add_row("ETA", _secs(status["eta_s"]))
    summary.add_row("best", f"{best.get('metric')} {best['score']:.4f} (round {best.get('round')})"
                    if best.get("score") is not None else "-")
    summary.add_row("models", f"last {status['models']['last']}, best {status['models']['best']}")
    out.print(summary)
    table = Table(title="collaborators")
    for col in ("name", "connected", "last seen", "task", "rounds", "bytes", "last metrics", "refusals"):
        table.add_column(col)
    for c in clients:
        shown = " ".join(f"{k}={v:.4f}" for k, v in sorted(c["last_metrics"].items()))
        table.add_row(c["name"], "-" if c["connected"] is None else "yes" if c["connected"] else "no",
                      c["last_seen"] or "-", c["current_task"] or "-", str(c["rounds_done"]), str(c["bytes_in"]),
                      shown, str(c["refusals"]) + (f" ({c['last_refusal']})" if c["last_refusal"] else ""))
    out.print(table)
    rounds = Table(title="rounds")
    for col in ("round", "participants", "seconds", "metrics"):
        rounds.add_column(col)
    for m in metrics[-10:]:
        rounds.add_row("final" if m.get("final") else str(m["round"]), str(len(m.get("participants", []))),
                       f"{m.get('seconds', 0):.2f}", " ".join(f"{k}={v:.4f}" for k, v in m["metrics"].items()))
    out.print(rounds)


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"
