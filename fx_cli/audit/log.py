"""The audit log writer: ``AuditLog(path, signer).record(kind, **fields)``, thread-safe, fsynced per record.

Records are appended to a JSON-lines hash chain (format in ``chain.py``). ``sign_head()`` appends a
``head_signed`` record carrying the aggregator's signature of the chain so far; the aggregator calls it at
every round end. A writer killed mid-record leaves an incomplete last line: the next ``AuditLog`` on the same
file cuts it off and records what it cut (length, SHA-256 and text) as ``tail_truncated``, so the chain stays
verifiable and the loss is on the record.
"""
from __future__ import annotations

import datetime
import logging
import os
import threading
from pathlib import Path
from typing import Any, Protocol

from fx_cli.audit import chain
from fx_cli.audit.signing import HeadSigner

log = logging.getLogger("fx.audit")


class Audit(Protocol):
    """What the rest of fx writes audit events through (``AuditLog`` or ``NullAudit``)."""

    def record(self, kind: str, **fields: Any) -> None: ...

    def sign_head(self) -> None: ...

    def close(self) -> None: ...


class NullAudit:
    """An audit log that keeps nothing (``aggregator.settings.audit_log: false``, evaluation runs, tests)."""

    def record(self, kind: str, **fields: Any) -> None:
        return None

    def sign_head(self) -> None:
        return None

    def close(self) -> None:
        return None


class AuditLog:
    """Append-only, hash-chained, signed-at-round-end audit records in one file."""

    def __init__(self, path: Path, signer: HeadSigner | None = None) -> None:
        self.path = Path(path)
        self.signer = signer
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._seq, self._prev, cut = _resume(self.path)
        self._fh = open(self.path, "ab")
        if cut is not None:
            log.warning("%s: the last record was incomplete (the writer was stopped mid-write); it is cut off and "
                        "noted in the log", self.path)
            self.record("tail_truncated", **cut)

    def record(self, kind: str, **fields: Any) -> None:
        """Append one record ``{kind, data: fields}``; values must be JSON (str, numbers, bools, lists, dicts)."""
        if kind in chain.RESERVED:
            raise ValueError(f"audit kind {kind!r} is reserved")
        with self._lock:
            self._append(kind, fields)

    def sign_head(self) -> None:
        """Append the aggregator's signature of the chain so far (nothing without a signer)."""
        if self.signer is None:
            return
        with self._lock:
            message = chain.head_message(self._prev, self._seq)
            self._append("head_signed", {"signs_seq": self._seq, "signer": self.signer.cert_fingerprint,
                                         "signature": self.signer.sign(message)})

    def close(self) -> None:
        with self._lock:
            self._fh.close()

    def _append(self, kind: str, data: dict[str, Any]) -> None:
        line = chain.build(self._seq + 1, _now(), kind, data, self._prev)
        self._fh.write(line + b"\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._seq += 1
        self._prev = chain.line_hash(line)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _resume(path: Path) -> tuple[int, str, dict[str, Any] | None]:
    """(last seq, link to the last line, what was cut from an incomplete tail) of an existing log."""
    if not path.exists():
        return 0, chain.GENESIS, None
    data = path.read_bytes()
    cut: dict[str, Any] | None = None
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        tail = data[keep:]
        cut = {"bytes": len(tail), "sha256": chain.line_hash(tail), "text": tail.decode("utf-8", "replace")}
        with open(path, "r+b") as fh:
            fh.truncate(keep)
            os.fsync(fh.fileno())
        data = data[:keep]
    lines = data.splitlines()
    if not lines:
        return 0, chain.GENESIS, cut
    return _seq_of(lines[-1], len(lines)), chain.line_hash(lines[-1]), cut


def _seq_of(line: bytes, fallback: int) -> int:
    import json

    try:
        seq = json.loads(line)["seq"]
        return seq if isinstance(seq, int) else fallback
    except (ValueError, KeyError, TypeError):
        return fallback
