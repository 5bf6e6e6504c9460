"""``fx workspace create``."""
from __future__ import annotations

from pathlib import Path

import click

from fx_cli.cli.output import console, ok


@click.command()
@click.option("--prefix", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder of the new workspace.")
@click.option("--template", default="keras/digits", show_default=True,
              help="Template name; an unknown name lists the valid ones.")
@click.option("--force", is_flag=True, help="Create over an existing non-empty folder.")
def create(prefix: Path, template: str, force: bool) -> None:
    """Create a workspace from a template."""
    from fx_cli.workspace.create import create_workspace

    made = create_workspace(prefix, template, force)
    ok(f"created workspace {made.path} from template {made.template} (federation plan_{made.plan_hash[:8]})")
    console().print(f"next: cd {made.path} && fx plan initialize")
