"""Console objects for command output (stdout) and diagnostics (stderr)."""
from __future__ import annotations

import functools
import os
import sys

from rich.console import Console

# Piped output (CI logs, `make demo | tee`) would otherwise wrap at 80 columns.
PIPE_WIDTH = 140


def _width(stream: object) -> int | None:
    if os.environ.get("COLUMNS") or getattr(stream, "isatty", lambda: False)():
        return None
    return PIPE_WIDTH


@functools.lru_cache(maxsize=None)
def console() -> Console:
    """Console for a command's results."""
    return Console(highlight=False, soft_wrap=True, emoji=False, width=_width(sys.stdout))


@functools.lru_cache(maxsize=None)
def err_console() -> Console:
    """Console for errors, warnings and progress."""
    return Console(stderr=True, highlight=False, soft_wrap=True, emoji=False, width=_width(sys.stderr))


def ok(message: str) -> None:
    """Print a success line."""
    from rich.markup import escape

    console().print(f"[green]✔[/] {escape(message)}")


def step(message: str) -> None:
    """Say on stderr what a slow command is doing now (plain text: it also reads well in logs)."""
    err_console().print(f"… {message}", markup=False)


def warn(message: str) -> None:
    """A warning on stderr."""
    from rich.markup import escape

    err_console().print(f"[yellow]warning:[/] {escape(message)}")
