"""The record format of the audit chain (pure functions shared by the writer and the verifier).

One record per line, canonical JSON (sorted keys, no spaces):
``{"seq", "time", "kind", "data", "prev", "hash"}``. ``prev`` is the SHA-256 of the previous
line's bytes (64 zeros for the first), so removing, reordering or changing a line breaks the
next link; ``hash`` is the SHA-256 of the record without ``hash``, so a changed line is named itself.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

GENESIS = "0" * 64
RESERVED = ("seq", "time", "kind", "data", "prev", "hash")


def canonical(obj: Mapping[str, Any]) -> bytes:
    """Canonical JSON bytes: sorted keys, compact separators, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def line_hash(line: bytes) -> str:
    """The link to a line: SHA-256 of its bytes (without the newline)."""
    return hashlib.sha256(line).hexdigest()


def body_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 of a record's canonical form without its own ``hash`` field."""
    return hashlib.sha256(canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()


def build(seq: int, time: str, kind: str, data: Mapping[str, Any], prev: str) -> bytes:
    """One complete record line (no newline)."""
    record: dict[str, Any] = {"seq": seq, "time": time, "kind": kind, "data": dict(data), "prev": prev}
    record["hash"] = body_hash(record)
    return canonical(record)


def head_message(prev: str, seq: int) -> bytes:
    """What a head signature signs: the hash of the line before it and that line's sequence number."""
    return f"fx-audit-head:v1:{seq}:{prev}".encode("ascii")
