"""Logging set-up for the CLI (library modules only create loggers)."""
from __future__ import annotations

import logging


def setup_logging(level: str = "info") -> None:
    """Route the ``fx`` loggers to a rich handler on stderr."""
    from rich.logging import RichHandler

    from fx_cli.cli.output import err_console

    root = logging.getLogger("fx")
    root.setLevel(level.upper())
    if not any(isinstance(h, RichHandler) for h in root.handlers):
        handler = RichHandler(console=err_console(), show_path=False, rich_tracebacks=False,
                              log_time_format="[%X]")
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
    root.propagate = False


def add_file_log(path: str) -> None:
    """Also write the ``fx`` logs to ``path`` (plain text)."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("fx").addHandler(handler)
