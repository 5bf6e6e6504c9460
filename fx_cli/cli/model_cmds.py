"""``fx model info | save``."""
from __future__ import annotations

from pathlib import Path

import click

from fx_cli.cli.output import console, ok, step


@click.command()
@click.option("-i", "--input", "path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="A .pbuf model file.")
def info(path: Path) -> None:
    """List a model file's tensors, shapes, round and total size (reads no tensor data)."""
    from rich.table import Table

    from fx_cli.tensors.pbuf import iter_model

    scan = iter_model(path, load_data=False)
    headers = [h for h, _ in scan]
    table = Table(title=f"{path}")
    for col in ("tensor", "shape", "bytes"):
        table.add_column(col, justify="right" if col == "bytes" else "left")
    for h in headers:
        table.add_row(h.name, "x".join(map(str, h.shape)) or "scalar", f"{h.nbytes:,}")
    console().print(table)
    total = sum(h.nbytes for h in headers)
    rnd = headers[0].round_number if headers else 0
    values = total // 4  # float32; the reader checked every shape against its byte count
    console().print(f"{len(headers)} tensors, {values:,} values, {total:,} bytes of tensor data, round {rnd}, "
                    f"file size {path.stat().st_size:,} bytes")
    trailer = scan.trailer
    if trailer is None:
        console().print("no fx checksum record: written by OpenFL (or another tool), or cut short", markup=False)
    else:
        console().print(f"fx checksum record: {trailer.count} tensors, SHA-256 {trailer.sha256.hex()} (tensor data "
                        "not read here; `fx model save` and the aggregator verify it)", markup=False)


@click.command()
@click.option("-i", "--input", "model_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The .pbuf model file to convert, e.g. save/last.pbuf.")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Where to write the converted model (e.g. final.keras or final.npz).")
@click.option("-p", "--plan", "plan_path", default="plan/plan.yaml", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="Plan whose task runner defines the model.")
@click.option("-f", "--format", "fmt", type=click.Choice(["keras", "pt", "npz"]), default=None,
              help="keras: a native .keras file; pt: a PyTorch state_dict; npz: named numpy arrays. Default: from the output suffix.")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
def save(model_path: Path, output: Path, plan_path: Path, fmt: str | None, force: bool) -> None:
    """Convert a .pbuf into the framework's native format (or a .npz of named arrays)."""
    from fx_cli.runners.export import save_model

    saved = save_model(plan_path, model_path, output, fmt, force, progress=step)
    ok(f"wrote {saved.path} ({saved.format}, {saved.tensor_count} tensors from round {saved.round_number})")
