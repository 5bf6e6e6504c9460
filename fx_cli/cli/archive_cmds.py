"""Workspace archives (placeholder until export/import land: each exits non-zero)."""
from __future__ import annotations

import click

from fx_cli.errors import NotImplementedYet


def _stub(name: str) -> click.Command:
    @click.command(name=name.split()[-1], context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def command(args: tuple[str, ...]) -> None:
        raise NotImplementedYet(f"fx {name}")
    return command


export = _stub("workspace export")
import_ = _stub("workspace import")
