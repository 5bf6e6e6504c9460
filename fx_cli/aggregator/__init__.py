"""The aggregator role: round state machine, assigners, straggler policies, persistence, servicer.

Where things are: ``round`` (pure round logic), ``coordinator`` (thread-safe
run state), ``servicer`` (gRPC), ``intake`` (checking and spilling uploads),
``combine``/``roundend`` (aggregation and crash-safe saving), ``state``
(SQLite), ``modelstore`` (indexed model files), ``service`` (wiring and the
main loop), ``metrics`` (round reports). Importing the package is cheap.
"""
from __future__ import annotations


class Aggregator:
    """The plan's ``aggregator.template``; its settings are ``aggregator.settings`` (run: ``fx aggregator start``)."""

    def __init__(self, **settings: object) -> None:
        self.settings = dict(settings)
