"""``fx plot``."""
from __future__ import annotations

from pathlib import Path

import click

from fx_cli.cli.output import ok
from fx_cli.errors import FxError


@click.command("plot")
@click.option("--metrics", "metrics_path", default="logs/aggregator_metrics.jsonl", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="The aggregator's per-round metrics.")
@click.option("--site", "sites", multiple=True, metavar="NAME=PATH",
              help="A collaborator's logs/<name>_metrics.jsonl (repeatable). Default: every *_metrics.jsonl next to "
                   "the aggregator's file.")
@click.option("-o", "--output", "out", default="plots", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Folder for the PNG files.")
def plot(metrics_path: Path, sites: tuple[str, ...], out: Path) -> None:
    """Write PNG charts: metrics per round, per-collaborator metrics, round times, bytes, participants."""
    from fx_cli.plot.charts import write_charts
    from fx_cli.plot.data import load_run, site_logs

    chosen = dict(_site(s) for s in sites) if sites else site_logs(metrics_path.parent)
    written = write_charts(load_run(metrics_path, chosen), out)
    if not written:
        raise FxError(f"{metrics_path}: no round records to plot", "run at least one round first")
    for path in written:
        ok(f"wrote {path}")


def _site(spec: str) -> tuple[str, Path]:
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise FxError(f"--site {spec!r}: expected NAME=PATH", "e.g. --site one=../site-one/logs/one_metrics.jsonl")
    return name, Path(path)
