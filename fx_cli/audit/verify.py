"""``fx audit verify``: walk the chain, check every link, self-hash and head signature; name the first bad record."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from fx_cli.audit import chain
from fx_cli.audit.signing import signature_ok
from fx_cli.errors import FxError
from fx_cli.pki.fingerprint import fingerprint


@dataclass
class Verdict:
    """The outcome of checking one audit log."""

    records: int = 0  # good records, in order from the first
    signed_heads: int = 0
    last_signed_seq: int = 0
    bad_line: int | None = None  # 1-based line number of the first bad record
    problem: str = ""
    truncated_line: int | None = None  # an incomplete last line (the writer was killed mid-write)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.bad_line is None

    @property
    def unsigned_tail(self) -> int:
        """Good records after the last signed head (not covered by any signature yet)."""
        return max(0, self.records - self.last_signed_seq - (1 if self.signed_heads else 0))


def verify_log(path: Path, cert: x509.Certificate | None) -> Verdict:
    """Check ``path``; signatures are checked against ``cert`` (None: signatures are reported, not checked)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FxError(f"{path}: no audit log here", "run it in the aggregator's workspace, or give --log") from None
    verdict = Verdict()
    lines = data.split(b"\n")
    complete, tail = lines[:-1], lines[-1]
    prev, seq = chain.GENESIS, 0
    for number, line in enumerate(complete, start=1):
        problem, record = _check(line, prev, seq, cert)
        if problem:
            verdict.bad_line, verdict.problem = number, problem
            return verdict
        assert record is not None
        if record["kind"] == "head_signed":
            verdict.signed_heads += 1
            verdict.last_signed_seq = int(record["data"]["signs_seq"])
        verdict.records += 1
        prev, seq = chain.line_hash(line), record["seq"]
    if tail:
        verdict.truncated_line = len(complete) + 1
    if cert is None and verdict.signed_heads:
        verdict.notes.append("signatures were not checked (no aggregator certificate given)")
    return verdict


def _check(line: bytes, prev: str, seq: int, cert: x509.Certificate | None) -> tuple[str, dict[str, Any] | None]:
    """(problem or '', the parsed record)."""
    try:
        record = json.loads(line)
    except ValueError:
        return "not a JSON record (edited, or bytes damaged)", None
    if not isinstance(record, dict) or set(record) != set(chain.RESERVED) or not isinstance(record["seq"], int) \
            or not isinstance(record["data"], dict):
        return "not an audit record (fields missing or added)", None
    if record["hash"] != chain.body_hash(record):
        return f"record seq {record['seq']} was changed after it was written (its hash does not match its content)", None
    if record["seq"] != seq + 1:
        gap = f"records seq {seq + 1}..{record['seq'] - 1} are missing" if record["seq"] > seq + 1 else \
            f"seq {record['seq']} comes after seq {seq} (records reordered or repeated)"
        return gap, None
    if record["prev"] != prev:
        return f"record seq {record['seq']} does not follow the record before it (that record was changed or " \
               "replaced)", None
    if record["kind"] == "head_signed":
        return _check_head(record, prev, seq, cert), record
    return "", record


def _check_head(record: dict[str, Any], prev: str, seq: int, cert: x509.Certificate | None) -> str:
    data = record["data"]
    if data.get("signs_seq") != seq:
        return f"head signature at seq {record['seq']} claims to sign seq {data.get('signs_seq')}, not {seq}"
    if cert is None:
        return ""
    if data.get("signer") != fingerprint(cert):
        return f"head signature at seq {record['seq']} is by {data.get('signer')}, not the aggregator certificate " \
               f"{fingerprint(cert)}"
    if not signature_ok(cert, chain.head_message(prev, seq), str(data.get("signature", ""))):
        return f"head signature at seq {record['seq']} is not valid for the chain before it"
    return ""
