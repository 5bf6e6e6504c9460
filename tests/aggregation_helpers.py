"""Helpers for aggregation tests: contributions whose loads are counted like reads of spill files."""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import numpy as np

from fx_cli.aggregation import Contribution


@dataclass
class LoadTracker:
    """Counts loads and how many loaded arrays are alive at once (each load returns a fresh copy)."""

    loads: int = 0
    live: int = 0
    max_live: int = 0
    per_name: dict[str, int] = field(default_factory=dict)

    def loader(self, name: str, array: np.ndarray):
        def load() -> np.ndarray:
            fresh = array.copy()  # like reading a spill file: a new buffer every call
            self.loads += 1
            self.per_name[name] = self.per_name.get(name, 0) + 1
            self.live += 1
            self.max_live = max(self.max_live, self.live)
            weakref.finalize(fresh, self._dropped)
            return fresh
        return load

    def _dropped(self) -> None:
        self.live -= 1


def contributions(updates: list[np.ndarray], weights: list[float], tracker: LoadTracker | None = None
                  ) -> list[Contribution]:
    """Contributions named col_0, col_1, ... with normalised weights."""
    tracker = tracker or LoadTracker()
    total = sum(weights)
    return [Contribution(f"col_{i}", w / total, tracker.loader(f"col_{i}", u))
            for i, (u, w) in enumerate(zip(updates, weights))]
