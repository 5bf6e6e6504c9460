"""``fx workspace export | import``."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from fx_cli.cli.output import console, err_console, ok


@click.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Archive to write (default: <workspace>.zip in the current folder).")
@click.option("--force", is_flag=True, help="Replace an existing archive.")
def export(output: Path | None, force: bool) -> None:
    """Zip this workspace (plan, code, initial model, pinned requirements) for the other sites."""
    from fx_cli.workspace.export import export_workspace

    done = export_workspace(Path.cwd(), output, force)
    ok(f"exported {done.archive} ({len(done.included)} files, {done.size:,} bytes), "
       f"federation {done.federation_id}")
    out = console()
    out.print("included:")
    for name in done.included:
        out.print(f"  {name}")
    out.print("left out:")
    for name, reason in done.left_out or [("(nothing)", "")]:
        out.print(f"  {name}" + (f": {reason}" if reason else ""))
    out.print("requirements.txt pins: " + ", ".join(done.pins))
    for note in done.notes:
        err_console().print(f"[yellow]note:[/] {note}")
    out.print(f"plan hash: {done.plan_hash}")


@click.command("import")
@click.option("-a", "--archive", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Workspace archive made by `fx workspace export`.")
@click.option("--prefix", type=click.Path(file_okay=False, path_type=Path),
              help="New folder to unpack into (default: the archive's name without .zip).")
@click.option("--install/--no-install", default=None,
              help="pip-install requirements.txt into this environment [default: install when interactive].")
@click.option("-s", "--silent", is_flag=True, help="Non-interactive: install only with an explicit --install.")
@click.option("--pip-arg", "pip_args", multiple=True, metavar="ARG",
              help="Extra argument for pip, repeatable (e.g. --pip-arg=--no-index --pip-arg=--find-links=DIR).")
@click.option("--max-gib", type=float, default=None,
              help="Accept members and a total of up to this many GiB (default: 1 per member, 4 in all).")
def import_(archive: Path, prefix: Path | None, install: bool | None, silent: bool,
            pip_args: tuple[str, ...], max_gib: float | None) -> None:
    """Unpack a workspace archive into a new folder, verify its plan and install its requirements."""
    from rich.markup import escape

    from fx_cli.workspace.import_ import import_limits, import_workspace, next_steps

    done = import_workspace(archive, prefix, limits=import_limits(max_gib))
    ok(f"imported {archive} into {done.path} ({len(done.files)} files)")
    console().print(f"federation: {done.plan.federation_id}   plan hash: {done.plan.plan_hash}")
    console().print(f"aggregator: {done.plan.agg_addr}:{done.plan.agg_port}")
    console().print("check that this federation id matches the one the aggregator's owner announced")
    for warning in done.warnings:
        err_console().print(f"[yellow]warning:[/] {escape(warning)}")
    if done.translated:
        console().print("an OpenFL workspace; translated for fx:")
        for line in done.translated:
            console().print(f"  {escape(line)}")
    _show_code(done.code, done.code_digest)
    if install is None:
        install = not silent and sys.stdin.isatty()
    _install(done.path / "requirements.txt", install, pip_args)
    console().print("next steps:")
    for step in next_steps(done):
        console().print(f"  {step}")


def _show_code(code: list[tuple[str, str]], digest: str) -> None:
    """Say, before anything runs it, that src/ is code this host will execute."""
    if not code:
        console().print("the workspace has no code in src/")
        return
    out = console()
    out.print(f"src/ holds {len(code)} file(s) of code that will run on this host (when a collaborator or "
              f"`fx plan initialize` starts); review them before running anything:", markup=False)
    for name, sha in code:
        out.print(f"  {sha}  {name}", markup=False)
    out.print(f"src/ digest (sha256 of the list above): {digest}; compare it with the aggregator owner's",
              markup=False)


def _install(requirements: Path, install: bool, pip_args: tuple[str, ...]) -> None:
    """Run pip with its output shown as progress, or say how to do it later."""
    from fx_cli.workspace.requirements import manual_install, pip_install

    if not requirements.is_file():
        console().print("the archive has no requirements.txt; nothing to install")
        return
    if not install:
        console().print(f"requirements not installed; to install them: {manual_install(requirements)}")
        return

    err_console().print(f"installing {requirements} with pip ...")
    pip_install(requirements, pip_args, on_line=lambda line: err_console().print(f"  pip: {line}", markup=False))
    ok(f"installed the requirements of {requirements}")
