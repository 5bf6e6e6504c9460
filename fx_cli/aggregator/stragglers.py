"""Straggler policies: when may a round end without every collaborator?"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod

from fx_cli.plan.ranges import Range, count, seconds


class StragglerPolicy(ABC):
    """Decides, from who is done and the time since the round's first task, whether a round can end."""

    minimum_reporting = 1

    def start_round(self, now: float) -> None:
        self.started = now

    @abstractmethod
    def can_end(self, done: int, expected: int, now: float) -> bool:
        """Whether the round may end with ``done`` of ``expected`` collaborators finished."""

    def next_check(self) -> float | None:
        """A time at which ``can_end`` may change without new results (None: never)."""
        return None

    def describe(self) -> str:
        return type(self).__name__


class WaitForAllPolicy(StragglerPolicy):
    """The round ends when every expected collaborator is done (the default)."""

    def can_end(self, done: int, expected: int, now: float) -> bool:
        return done >= expected


class PercentagePolicy(StragglerPolicy):
    """The round ends once a fraction of collaborators (and at least a minimum) are done."""

    SETTING_RANGES = {"percent_collaborators_needed": Range(0, 1, low_open=True, what="a fraction"),
                      "minimum_reporting": count(1_000_000)}

    def __init__(self, percent_collaborators_needed: float = 1.0, minimum_reporting: int = 1) -> None:
        if not 0 < percent_collaborators_needed <= 1:
            raise ValueError("percent_collaborators_needed must be in (0, 1]")
        if minimum_reporting < 1:
            raise ValueError("minimum_reporting must be at least 1")
        self.percent = percent_collaborators_needed
        self.minimum_reporting = minimum_reporting

    def can_end(self, done: int, expected: int, now: float) -> bool:
        return done >= max(self.minimum_reporting, math.ceil(self.percent * expected - 1e-9))

    def describe(self) -> str:
        return f"PercentagePolicy({self.percent:g}, minimum {self.minimum_reporting})"


class CutoffTimePolicy(StragglerPolicy):
    """All must finish before the cut-off; after it, the round ends once ``minimum_reporting`` are done."""

    SETTING_RANGES = {"straggler_cutoff_time": seconds(allow_inf=True), "minimum_reporting": count(1_000_000)}

    def __init__(self, straggler_cutoff_time: float = math.inf, minimum_reporting: int = 1) -> None:
        if minimum_reporting < 1:
            raise ValueError("minimum_reporting must be at least 1")
        self.cutoff = float(straggler_cutoff_time)
        self.minimum_reporting = minimum_reporting
        self.started = 0.0

    def can_end(self, done: int, expected: int, now: float) -> bool:
        if done >= expected:
            return True
        return now - self.started >= self.cutoff and done >= self.minimum_reporting

    def next_check(self) -> float | None:
        return None if math.isinf(self.cutoff) else self.started + self.cutoff

    def describe(self) -> str:
        return f"CutoffTimePolicy({self.cutoff:g} s, minimum {self.minimum_reporting})"
