"""``fx model info | save``."""
from __future__ import annotations

from pathlib import Path

import click

from fx_cli.cli.output import console
from fx_cli.errors import NotImplementedYet


@click.command()
@click.option("-i", "--input", "path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="A .pbuf model file.")
def info(path: Path) -> None:
    """List a model file's tensors, shapes, round and total size (reads no tensor data)."""
    from rich.table import Table

    from fx_cli.tensors.pbuf import model_headers

    headers = model_headers(path)
    table = Table(title=f"{path}")
    for col in ("tensor", "shape", "bytes"):
        table.add_column(col, justify="right" if col == "bytes" else "left")
    for h in headers:
        table.add_row(h.name, "x".join(map(str, h.shape)) or "scalar", f"{h.nbytes:,}")
    console().print(table)
    total = sum(h.nbytes for h in headers)
    rnd = headers[0].round_number if headers else 0
    console().print(f"{len(headers)} tensors, {sum(int(__import__('numpy').prod(h.shape)) for h in headers):,} "
                    f"values, {total:,} bytes of tensor data, round {rnd}, file size {path.stat().st_size:,} bytes")


@click.command()
def save() -> None:
    """Convert a .pbuf into the framework's native format."""
    raise NotImplementedYet("fx model save")
