"""Console objects for command output (stdout) and diagnostics (stderr)."""
from __future__ import annotations

import functools

from rich.console import Console


@functools.lru_cache(maxsize=None)
def console() -> Console:
    """Console for a command's results."""
    return Console(highlight=False, soft_wrap=True, emoji=False)


@functools.lru_cache(maxsize=None)
def err_console() -> Console:
    """Console for errors, warnings and progress."""
    return Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


def ok(message: str) -> None:
    """Print a success line."""
    from rich.markup import escape

    console().print(f"[green]✔[/] {escape(message)}")
