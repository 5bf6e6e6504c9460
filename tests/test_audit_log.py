"""The audit log: a hash chain with signed heads; verification names the first bad record."""
from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from fx_cli.audit import AuditLog, HeadSigner
from fx_cli.audit.verify import verify_log
from fx_cli.pki.fingerprint import fingerprint
from fx_cli.pki.keys import PrivateKey, new_private_key


def self_signed(key: PrivateKey, cn: str = "agg") -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.timezone.utc)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA384()))


@pytest.fixture
def signer() -> tuple[HeadSigner, x509.Certificate]:
    key = new_private_key()
    cert = self_signed(key)
    return HeadSigner(key, fingerprint(cert)), cert


def write_rounds(path: Path, signer: HeadSigner, rounds: int = 3) -> None:
    audit = AuditLog(path, signer)
    audit.record("plan_loaded", plan_hash="ab" * 24)
    for r in range(1, rounds + 1):
        audit.record("task_assigned", collaborator="one", round=r, tasks=["train"])
        audit.record("update_accepted", collaborator="one", round=r, blake3="cd" * 32)
        audit.record("round_closed", round=r, participants=["one"], model_sha256="ef" * 32)
        audit.sign_head()
    audit.close()


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def test_clean_log_verifies_with_every_head_signature(tmp_path: Path, signer: tuple[HeadSigner, x509.Certificate]) -> None:
    path = tmp_path / "audit.jsonl"
    write_rounds(path, signer[0])
    verdict = verify_log(path, signer[1])
    assert verdict.ok, verdict.problem
    assert (verdict.records, verdict.signed_heads, verdict.unsigned_tail) == (13, 3, 0)
    kinds = [json.loads(line)["kind"] for line in lines(path)]
    assert kinds[:5] == ["plan_loaded", "task_assigned", "update_accepted", "round_closed", "head_signed"]


def test_edited_record_is_named(tmp_path: Path, signer: tuple[HeadSigner, x509.Certificate]) -> None:
    path = tmp_path / "audit.jsonl"
    write_rounds(path, signer[0])
    content = lines(path)
    content[6] = content[6].replace(b'"one"', b'"two"')  # seq 7: update_accepted of round 2
    path.write_bytes(b"\n".join(content) + b"\n")
    verdict = verify_log(path, signer[1])
    assert (verdict.bad_line, verdict.records) == (7, 6)
    assert "seq 7 was changed" in verdict.problem


def test_edited_record_with_recomputed_hash_is_caught_by_the_next_link(tmp_path: Path,
                                                                        signer: tuple[HeadSigner, x509.Certificate]) -> None:
    from fx_cli.audit import chain

    path = tmp_path / "audit.jsonl"
    write_rounds(path, signer[0])
    content = lines(path)
    record = json.loads(content[2])
    record["data"]["blake3"] = "00" * 32
    record["hash"] = chain.body_hash(record)
    content[2] = chain.canonical(record)
    path.write_bytes(b"\n".join(content) + b"\n")
    verdict = verify_log(path, signer[1])
    assert verdict.bad_line == 4 and "does not follow" in verdict.problem


def test_deleted_record_is_named(tmp_path: Path, signer: tuple[HeadSigner, x509.Certificate]) -> None:
    path = tmp_path / "audit.jsonl"
    write_rounds(path, signer[0])
    content = lines(path)
    del content[9]  # seq 10
    path.write_bytes(b"\n".join(content) + b"\n")
    verdict = verify_log(path, signer[1])
    assert verdict.bad_line == 10 and "seq 10..10 are missing" in verdict.problem


def test_truncated_tail_is_reported_and_verification_stops_there(tmp_path: Path,
                                                                 signer: tuple[HeadSigner, x509.Certificate]) -> None:
    path = tmp_path / "audit.jsonl"
    write_rounds(path, signer[0])
    data = path.read_bytes()
    path.write_bytes(data[:-40])  # a kill -9 in the middle of writing the last record
    verdict = verify_log(path, signer[1])
    assert verdict.ok and verdict.truncated_line == 13 and verdict.records == 12


def test_a_new_writer_cuts_an_incomplete_tail_and_records_it(tmp_path: Path,
                                                            signer: tuple[HeadSigner, x509.Certificate]) -> None:
    path = tmp_path / "audit.jsonl"
    write_rounds(path, signer[0], rounds=1)
    path.write_bytes(path.read_bytes() + b'{"seq":6,"time":"20')
    audit = AuditLog(path, signer[0])
    audit.record("plan_loaded", plan_hash="x")
    audit.sign_head()
    audit.close()
    verdict = verify_log(path, signer[1])
    assert verdict.ok and verdict.truncated_line is None and verdict.records == 8
    cut = json.loads(lines(path)[5])
    assert cut["kind"] == "tail_truncated" and cut["data"]["text"] == '{"seq":6,"time":"20'


def test_a_signature_from_another_key_is_refused(tmp_path: Path, signer: tuple[HeadSigner, x509.Certificate]) -> None:
    path = tmp_path / "audit.jsonl"
    other_key = new_private_key()
    impostor = HeadSigner(other_key, signer[0].cert_fingerprint)  # claims the aggregator's fingerprint
    write_rounds(path, impostor, rounds=1)
    verdict = verify_log(path, signer[1])
    assert verdict.bad_line == 5 and "not valid" in verdict.problem


def test_concurrent_writers_keep_one_chain(tmp_path: Path, signer: tuple[HeadSigner, x509.Certificate]) -> None:
    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path, signer[0])
    threads = [threading.Thread(target=lambda i=i: [audit.record("join", collaborator=f"c{i}", n=n)
                                                    for n in range(20)]) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    audit.sign_head()
    audit.close()
    verdict = verify_log(path, signer[1])
    assert verdict.ok and verdict.records == 81 and verdict.signed_heads == 1


def test_reserved_kinds_are_refused(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl")
    with pytest.raises(ValueError):
        audit.record("hash", x=1)
    audit.close()
