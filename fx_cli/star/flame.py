"""The ``flame`` handle a STAR node is built with: its identity and ``flame_log``.

User classes written for FLAME call ``self.flame.flame_log(msg, log_type=...)``; this keeps that call
working in fx. Log types map onto Python logging levels of the ``fx.star`` logger.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from fx_cli.errors import FxError

LOG = logging.getLogger("fx.star")

# FLAME's log types, mapped onto logging levels.
LOG_LEVELS: dict[str, int] = {
    "normal": logging.INFO,
    "info": logging.INFO,
    "notice": logging.INFO,
    "debug": logging.DEBUG,
    "warning": logging.WARNING,
    "alert": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "emergency": logging.CRITICAL,
}

ANALYZER_ROLE = "default"
AGGREGATOR_ROLE = "aggregator"


@dataclass
class Flame:
    """What a STAR node knows about its place in the federation, and where its logs go."""

    node_id: str
    role: str
    participant_ids: list[str] = field(default_factory=list)
    lines: list[tuple[str, str]] = field(default_factory=list)

    def flame_log(self, msg: object, sep: str = " ", end: str = "\n", file: object = None,
                  log_type: str = "normal", suppress_head: bool = False,
                  suppress_tail: bool = False) -> None:
        """Log ``msg`` at the level of ``log_type`` (FLAME's names: normal, debug, notice, error, ...)."""
        level = LOG_LEVELS.get(str(log_type).lower())
        if level is None:
            raise FxError(f"flame_log: unknown log_type {log_type!r}",
                          "use one of: " + ", ".join(sorted(LOG_LEVELS)))
        text = str(msg)
        self.lines.append((str(log_type).lower(), text))
        LOG.log(level, "%s", text if suppress_head else f"[{self.node_id}] {text}")

    def get_participant_ids(self) -> list[str]:
        """The analyzer nodes' ids."""
        return list(self.participant_ids)

    def get_id(self) -> str:
        """This node's id."""
        return self.node_id
