"""What only the running aggregator knows (who is connected, doing what), and the live event fan-out (SSE)."""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

# Events a slow reader has not taken yet beyond this are dropped for that reader (it reloads on reconnect).
QUEUE_LIMIT = 256


@dataclass
class Presence:
    last_seen: float  # wall-clock
    task: str = ""  # what it is doing now ("" when idle or unknown)


@dataclass
class LiveBoard:
    """Thread-safe live facts, updated by the aggregator's observers and read by the HTTP handlers."""

    heartbeat_timeout: float
    phase: str = "starting"
    phase_note: str = ""
    started: float = field(default_factory=time.time)
    presence: dict[str, Presence] = field(default_factory=dict)
    caps: dict[str, dict[str, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _readers: list[queue.Queue[dict[str, Any] | None]] = field(default_factory=list, repr=False)

    def set_phase(self, phase: str, note: str = "") -> None:
        with self._lock:
            self.phase, self.phase_note = phase, note
        self.publish({"type": "phase", "phase": phase, "note": note})

    def seen(self, name: str, task: str | None = None) -> None:
        with self._lock:
            entry = self.presence.setdefault(name, Presence(time.time()))
            entry.last_seen = time.time()
            if task is not None:
                entry.task = task
        if task is not None:
            self.publish({"type": "client", "name": name, "task": task})

    def capabilities(self, name: str, caps: dict[str, Any]) -> None:
        with self._lock:
            self.caps[name] = dict(caps)
        self.publish({"type": "client", "name": name})

    def capabilities_of(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            return dict(self.caps[name]) if name in self.caps else None

    def connected(self, name: str, now: float) -> bool | None:
        """True/False while running; None when this process has not heard from ``name``."""
        with self._lock:
            entry = self.presence.get(name)
            return None if entry is None else now - entry.last_seen <= self.heartbeat_timeout

    def snapshot(self) -> tuple[str, str, dict[str, Presence]]:
        with self._lock:
            return self.phase, self.phase_note, {k: Presence(v.last_seen, v.task) for k, v in self.presence.items()}

    # --- Server-Sent Events fan-out -----------------------------------------------------------

    def subscribe(self) -> queue.Queue[dict[str, Any] | None]:
        reader: queue.Queue[dict[str, Any] | None] = queue.Queue(QUEUE_LIMIT)
        with self._lock:
            self._readers.append(reader)
        return reader

    def unsubscribe(self, reader: queue.Queue[dict[str, Any] | None]) -> None:
        with self._lock:
            if reader in self._readers:
                self._readers.remove(reader)

    def publish(self, event: dict[str, Any]) -> None:
        with self._lock:
            readers = list(self._readers)
        for reader in readers:
            try:
                reader.put_nowait(event)
            except queue.Full:
                pass

    def close(self) -> None:
        """End every event stream (the server is stopping)."""
        with self._lock:
            readers, self._readers = list(self._readers), []
        for reader in readers:
            try:
                reader.put_nowait(None)
            except queue.Full:
                pass
