"""Plan identity: a canonical hash, the federation id and the derived port."""
from __future__ import annotations

import hashlib
import json
import os
import socket
from typing import Any

PORT_BASE = 49152
PORT_SPAN = 11847  # same range as OpenFL: 49152-60998


def canonical_bytes(config: Any) -> bytes:
    """Serialise plan data independently of YAML formatting and key order."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str).encode("utf-8")


def plan_hash(config: Any) -> str:
    """SHA-384 hex digest of the canonical form."""
    return hashlib.sha384(canonical_bytes(config)).hexdigest()


def federation_id(digest: str) -> str:
    """Short, printable id of a federation, shared by every participant."""
    return f"plan_{digest[:8]}"


def derived_port(digest: str) -> int:
    """A deterministic port in 49152-60998 from a plan hash."""
    return PORT_BASE + int(digest[:8], 16) % PORT_SPAN


def local_fqdn() -> str:
    """``$FQDN`` when set, else the host's fully-qualified name, lower-cased."""
    return (os.environ.get("FQDN") or socket.getfqdn()).lower()


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a.b.c": leaf}`` view of nested mappings, for naming differing keys."""
    if isinstance(config, dict):
        out: dict[str, Any] = {}
        for key, value in config.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: config}


def differing_keys(a: Any, b: Any) -> list[str]:
    """Key paths whose values differ between two plans."""
    fa, fb = flatten(a), flatten(b)
    return sorted(k for k in set(fa) | set(fb) if fa.get(k, object()) != fb.get(k, object()))
