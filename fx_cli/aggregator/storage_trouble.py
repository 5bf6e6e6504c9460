"""The first result the aggregator could not store (a full disk, an I/O error), kept to name the cause when a
round then cannot complete: collaborators retry such uploads and in the end give up, which alone would read
like stragglers."""
from __future__ import annotations

import threading
from typing import Callable


class StorageTrouble:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.first: tuple[float, str] | None = None  # (when, error)
        self._lock = threading.Lock()

    def record(self, error: str) -> None:
        """A result could not be stored; only the first such error is kept."""
        with self._lock:
            if self.first is None:
                self.first = (self.clock(), error)

    def note(self) -> str | None:
        """Why results went missing on this side (None when storing never failed)."""
        if self.first is None:
            return None
        since, error = self.first
        return (f"the aggregator could not store collaborators' results ({error}) since {self.clock() - since:.0f} s "
                "ago, so they kept retrying and gave up")
