"""Engine events and gate decisions → audit records and the status board (quick: called under the engine lock)."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable

from fx_cli.aggregator.metrics import RoundReport
from fx_cli.aggregator.outcomes import Event, EventKind
from fx_cli.aggregator.peers import Peer
from fx_cli.audit.log import Audit
from fx_cli.status.board import LiveBoard


class OpsWatch:
    """An engine ``Observer`` and the gate's ``GateWatch`` in one."""

    def __init__(self, audit: Audit, board: LiveBoard,
                 round_closed: Callable[[RoundReport], None] = lambda r: None,
                 capabilities_file: Path | None = None) -> None:
        self.capabilities_file = capabilities_file  # kept for resource-based selection
        self.audit = audit
        self.board = board
        self.round_closed = round_closed  # right after the round is durably saved (before the next opens)
        self._lock = threading.Lock()
        # A shut-out collaborator retries every few seconds: one record per (name, fingerprint, reason) in a row.
        self._last_refusal: dict[str, tuple[str | None, str]] = {}
        self._repeats: dict[str, int] = {}

    # --- GateWatch ------------------------------------------------------------------------------

    def admitted(self, name: str) -> None:
        self.board.seen(name)

    def joined(self, name: str, peer: Peer) -> None:
        self.board.seen(name)
        with self._lock:
            self._last_refusal.pop(name, None)
        self.audit.record("join", collaborator=name, peer=peer.address, cert_fingerprint=peer.cert_fingerprint)

    def refused(self, claimed: str, peer: Peer, reason: str) -> None:
        key = (peer.cert_fingerprint, reason)
        with self._lock:
            if self._last_refusal.get(claimed) == key:
                self._repeats[claimed] = self._repeats.get(claimed, 0) + 1
                return
            self._last_refusal[claimed] = key
            repeats = self._repeats.pop(claimed, 0)
        self.audit.record("join_refused", collaborator=claimed, peer=peer.address,
                          cert_fingerprint=peer.cert_fingerprint, reason=reason, earlier_repeats=repeats)
        self.board.publish({"type": "audit", "kind": "join_refused", "collaborator": claimed})

    def capabilities(self, name: str, caps: Any) -> None:
        fields = {k: getattr(caps, k) for k in ("train_samples", "valid_samples", "cpu_count", "memory_bytes", "gpu",
                                                "fx_version")}
        self.audit.record("capabilities", collaborator=name, **fields)
        if self.capabilities_file is not None:
            from fx_cli.aggregator.selection import record_capabilities

            record_capabilities(self.capabilities_file, name, fields)
        self.board.capabilities(name, fields)

    # --- engine Observer ------------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        kind, r, col = event.kind, event.round + 1, event.collaborator
        if kind is EventKind.TASKS_GIVEN:
            tasks = event.detail.split(",") if event.detail else []
            self.audit.record("task_assigned", collaborator=col, round=r, tasks=tasks)
            self.board.seen(col, task=tasks[0] if tasks else "")
        elif kind is EventKind.UPDATE_ACCEPTED:
            self.audit.record("update_accepted", collaborator=col, round=r, task=event.task, blake3=event.blake3,
                              nbytes=event.nbytes, metrics=dict(event.metrics))
            self.board.seen(col, task="")
        elif kind is EventKind.UPDATE_REFUSED:
            self.audit.record("update_refused", collaborator=col, round=r, task=event.task, reason=event.detail,
                              message=event.message)
            self.board.publish({"type": "audit", "kind": "update_refused", "collaborator": col})
        elif kind is EventKind.UPDATE_LATE:
            self.audit.record("update_late", collaborator=col, round=r, task=event.task)
        elif kind is EventKind.ROUND_OPENED:
            self.board.publish({"type": "phase", "phase": "running", "round": r})
        elif kind is EventKind.ROUND_CLOSED and event.report is not None:
            self.round_closed(event.report)
        elif kind is EventKind.RUN_ABORTED:
            self.audit.record("run_aborted", round=r, reason=event.message)
        elif kind is EventKind.CLAIM_ADJUSTED:
            self.audit.record(event.detail, collaborator=col, round=r, task=event.task, why=event.message,
                              **{k: v for k, v in event.metrics.items()})
