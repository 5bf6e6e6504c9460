"""gRPC's failure texts turned into plain words (the raw text stays in the debug log).

gRPC reports a failed connection as, for example, ``failed to connect to all addresses; last error:
UNKNOWN: ipv6:%5B::1%5D:59037: Failed to connect to remote host: Connection refused``. Users act on
"nothing is listening there", not on the resolver's address list.
"""
from __future__ import annotations

import logging

log = logging.getLogger("fx.transport")

# (substring of gRPC's text, lower-case) -> what it means for the user. First match wins.
_REASONS: tuple[tuple[str, str], ...] = (
    ("connection refused", "nothing is listening at that address (connection refused)"),
    ("dns resolution failed", "the host name does not resolve (DNS)"),
    ("name resolution failed", "the host name does not resolve (DNS)"),
    ("no route to host", "the network has no route to that host"),
    ("network is unreachable", "the network is unreachable from here"),
    ("connection timed out", "the connection attempt timed out (a firewall, or the wrong host?)"),
    ("deadline exceeded", "no answer in time"),
    ("timeout occurred", "no answer in time"),
    ("connection reset", "the connection was reset by the other side"),
    ("socket closed", "the connection was closed by the other side"),
    ("broken pipe", "the connection was closed by the other side"),
    ("handshake failed", "the TLS handshake failed"),
    ("ssl_error", "the TLS handshake failed"),
)


def plain_reason(raw: str, fallback: str = "unavailable") -> str:
    """A short plain-words reason for gRPC's ``raw`` failure text; unknown texts are shortened, not hidden."""
    if not raw:
        return fallback
    log.debug("gRPC said: %s", raw)
    lowered = raw.lower()
    for needle, meaning in _REASONS:
        if needle in lowered:
            return meaning
    first = raw.splitlines()[0]
    return first if len(first) <= 160 else first[:157] + "..."


def bind_reason(raw: str) -> str:
    """Why a server could not listen; gRPC only says "Failed to bind ... set GRPC_VERBOSITY" here."""
    if raw:
        log.debug("gRPC said: %s", raw)
    return "the port is already in use, or this host has no such address"
