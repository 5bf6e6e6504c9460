"""A clock that does not run while the aggregator itself is stopped.

``time.monotonic`` keeps counting while the process is stopped (SIGSTOP, a
suspended laptop or VM, a debugger): without care, an aggregator that wakes
after 60 s blames every peer for 60 s of silence that was its own. A ticker
thread notes the time every ``TICK`` seconds; a gap much longer than a tick
means the process was not running, and that gap is taken out of
``ActiveClock.now()``. Every deadline about peers (heartbeats, rejoin, join,
round and straggler cut-offs, transfer stalls) is measured on this clock.
Whoever reads the clock first after a pause (ticker or request thread)
accounts for it, under one lock, so no decision is taken on the raw jump.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

log = logging.getLogger("fx.aggregator")
TICK = 0.5
# A gap this much longer than a tick is a pause, not scheduling noise (busy machines delay threads by seconds).
PAUSE_THRESHOLD = 5.0


class ActiveClock:
    """Monotonic seconds, minus the time the process was detected to be stopped."""

    def __init__(self, raw: Callable[[], float] = time.monotonic, tick: float = TICK,
                 threshold: float = PAUSE_THRESHOLD) -> None:
        self.raw = raw
        self.tick = tick
        self.threshold = threshold
        self.paused = 0.0
        self.pauses = 0
        self._last = raw()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def now(self) -> float:
        """The clock; a pause since the last reading is detected and excluded first."""
        with self._lock:
            raw = self.raw()
            gap = raw - self._last
            if gap > self.tick + self.threshold:
                stopped = gap - self.tick
                self.paused += stopped
                self.pauses += 1
                log.warning("the aggregator itself was not running for about %.0f s (stopped, suspended or "
                            "starved); that time does not count against any collaborator's deadlines", stopped)
            self._last = raw
            return raw - self.paused

    __call__ = now

    def start(self) -> "ActiveClock":
        """Start the ticker (a daemon thread) that keeps the last reading fresh."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="fx-pause-watch", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            self.now()
