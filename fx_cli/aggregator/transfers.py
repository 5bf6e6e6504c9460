"""Transfer slots: how many model streams move at once, and what happens to one that stops moving.

Each in-flight stream (a model download, an update upload) holds a few chunks in
gRPC and Python buffers, so a small fixed number of slots bounds the
aggregator's memory whatever the number of collaborators. A peer that stops
reading or sending (hung, or hostile) would hold its slot forever and stall
everyone else: a stream with no progress for ``stall_timeout`` seconds loses its
slot, and the call is ended UNAVAILABLE (an honest but slow sender retries).
"""
from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

import grpc

log = logging.getLogger("fx.aggregator")
T = TypeVar("T")
# How often a stream that waits for a slot, or moves, tells the round its peer is alive.
ALIVE_EVERY = 1.0


class SlotLost(Exception):
    """A stream that lost (or never got) its transfer slot; ``code`` is the status its call ends with."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Lease:
    """One stream's hold on a slot; ``touch`` on every frame moved."""

    def __init__(self, what: str, now: float, alive: Callable[[], bool]) -> None:
        self.what = what
        self.last = self.noted = now
        self.alive = alive
        self.lost = False

    def touch(self, now: float) -> None:
        if self.lost:
            raise SlotLost(grpc.StatusCode.UNAVAILABLE, f"{self.what} made no progress for too long and lost its "
                                                         "transfer slot; retry")
        self.last = now
        if now - self.noted >= ALIVE_EVERY:  # a transfer longer than heartbeat_timeout is not a dead peer
            self.noted = now
            self.alive()


class Transfers:
    def __init__(self, slots: int, stall_timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_timeout = stall_timeout
        self.clock = clock
        self._free = threading.Semaphore(slots)
        self._lock = threading.Lock()
        self._leases: set[Lease] = set()
        self._watching = False
        self.limit = slots
        self.peak = 0  # most transfers in flight at once, for the end-of-run log

    @contextmanager
    def slot(self, what: str, alive: Callable[[], bool] = lambda: True) -> Iterator[Lease]:
        """Wait for a free slot and hold it for the block (or until the stream stalls).

        ``alive()`` is called while waiting and moving: it tells the round the peer is there (a queued peer
        is not a silent one), and returns False when the call was abandoned, which ends the wait.
        """
        while not self._free.acquire(timeout=ALIVE_EVERY):
            if not alive():
                raise SlotLost(grpc.StatusCode.CANCELLED, f"{what} was abandoned while waiting for a transfer slot")
        lease = Lease(what, self.clock(), alive)
        with self._lock:
            self._leases.add(lease)
            self.peak = max(self.peak, len(self._leases))
            if not self._watching:
                self._watching = True
                threading.Thread(target=self._watch, name="fx-transfer-watchdog", daemon=True).start()
        try:
            yield lease
        finally:
            self._give_back(lease)

    def moving(self, lease: Lease, items: Iterator[T]) -> Iterator[T]:
        """``items``, touching ``lease`` as each one passes."""
        for item in items:
            lease.touch(self.clock())
            yield item

    def _give_back(self, lease: Lease) -> None:
        with self._lock:
            if lease in self._leases:
                self._leases.discard(lease)
                self._free.release()

    def _watch(self) -> None:
        """Take slots from stalled streams; ends when no stream is in flight."""
        while True:
            time.sleep(min(1.0, self.stall_timeout / 4))
            now = self.clock()
            with self._lock:
                if not self._leases:
                    self._watching = False
                    return
                stalled = [lease for lease in self._leases if now - lease.last > self.stall_timeout]
            for lease in stalled:
                lease.lost = True
                log.warning("%s made no progress for %.0f s (stall limit: heartbeat_timeout %g s); its transfer "
                            "slot goes to the others", lease.what, now - lease.last, self.stall_timeout)
                self._give_back(lease)
