"""Logging set-up for the CLI (library modules only create loggers)."""
from __future__ import annotations

import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Console lines printed outside logging (the per-round line) reach the log file through this logger only.
CONSOLE_COPY = "fx_console_copy"


class PlainHandler(logging.Handler):
    """``[HH:MM:SS] LEVEL    message`` lines on stderr, laid out as the rich handler does, without rendering.

    Used when stderr is not a terminal (services, pipes, files): rich lays each record out as a table,
    which cost the aggregator more CPU per collaborator than the RPCs it logs.
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stamp = time.strftime("%X", time.localtime(record.created))
            stream = sys.stderr  # looked up each time, like rich's console: tests swap it
            stream.write(f"[{stamp}] {record.levelname:<8} {self.format(record)}\n")
            stream.flush()
        except Exception:  # logging must never take the process down
            self.handleError(record)


def setup_logging(level: str = "info") -> None:
    """Route the ``fx`` loggers to stderr: a rich handler on a terminal, plain lines otherwise."""
    root = logging.getLogger("fx")
    root.setLevel(level.upper())
    if not any(getattr(h, "fx_console", False) for h in root.handlers):
        handler: logging.Handler
        if sys.stderr.isatty():
            from rich.logging import RichHandler

            from fx_cli.cli.output import err_console

            handler = RichHandler(console=err_console(), show_path=False, rich_tracebacks=False,
                                  log_time_format="[%X]")
        else:
            handler = PlainHandler()
        setattr(handler, "fx_console", True)  # marks the one console handler (setup may run twice)
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
    root.propagate = False


def add_file_log(path: str) -> None:
    """Also write the ``fx`` logs to ``path`` (plain text)."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(FILE_FORMAT))
    logging.getLogger("fx").addHandler(handler)


@contextlib.contextmanager
def console_log_file(path: Path) -> Iterator[Callable[[str], None]]:
    """While active, the ``fx`` logs also go to ``path`` (appended); yields ``copy(line)`` for printed lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FILE_FORMAT))
    handler.setLevel(logging.DEBUG)
    fx_logger, copy_logger = logging.getLogger("fx"), logging.getLogger(CONSOLE_COPY)
    copy_logger.setLevel(logging.INFO)
    copy_logger.propagate = False
    fx_logger.addHandler(handler)
    copy_logger.addHandler(handler)
    try:
        yield lambda line: copy_logger.info(line)
    finally:
        fx_logger.removeHandler(handler)
        copy_logger.removeHandler(handler)
        handler.close()
