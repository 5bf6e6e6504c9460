"""The audit log of real mTLS federations: refusals with fingerprints, kill -9 and resume, fx audit verify."""
from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from fx_cli.cli.main import cli
from fx_cli.plan.participants import write_cols
from tests.fault_helpers import killed, processes
from tests.runtime_helpers import make_workspace


def verify(ws: Path, *args: str) -> tuple[int, str]:
    with contextlib.chdir(ws):
        res = CliRunner().invoke(cli, ["audit", "verify", *args])
    return res.exit_code, " ".join((res.output + res.stderr).split())


def records(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_refusal_kill_and_resume_are_on_a_verifiable_record(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, ["one", "two", "intruder"], rounds=3)
    write_cols(ws / "plan" / "cols.yaml", ["one", "two"])  # 'intruder' holds a valid certificate, but is not listed
    audit = ws / "logs" / "audit.jsonl"
    with processes(ws) as procs:
        agg = procs.aggregator(fault="aggregator:before_round_3")
        intruder = procs.collaborator("intruder")
        assert intruder.wait(120) != 0
        one, two = procs.collaborator("one"), procs.collaborator("two")
        killed(agg)
        # a kill in the middle of writing a record leaves a partial line (records are written whole, so add one)
        audit.write_bytes(audit.read_bytes() + b'{"data":{"collaborator":"one","round":3')
        code, out = verify(ws)
        assert code == 0 and "is an incomplete record" in out, out
        agg = procs.aggregator()
        for proc in (agg, one, two):
            assert proc.wait(180) == 0, proc.output()

    code, out = verify(ws)
    assert code == 0 and "record(s) intact" in out, out
    recs = records(audit)
    refused = [r["data"] for r in recs if r["kind"] == "join_refused"]
    assert refused and refused[0]["collaborator"] == "intruder" and "not in the aggregator's plan/cols.yaml" in \
        refused[0]["reason"]
    fingerprint = refused[0]["cert_fingerprint"]
    from fx_cli.pki.fingerprint import fingerprint as fp
    from fx_cli.pki.store import read_cert
    assert fingerprint == fp(read_cert(ws / "cert" / "client" / "col_intruder.crt"))
    kinds = [r["kind"] for r in recs]
    assert kinds.count("run_started") == 2 and "tail_truncated" in kinds
    assert [r["data"]["round"] for r in recs if r["kind"] == "round_closed"] == [1, 2, 3]
    cut = next(r["data"] for r in recs if r["kind"] == "tail_truncated")
    assert cut["text"].startswith('{"data":{"collaborator":"one"')

    # one edited record, one deleted record, a truncated tail: each named
    lines = audit.read_bytes().splitlines()
    edited = tmp_path / "edited.jsonl"
    target = next(i for i, r in enumerate(recs) if r["kind"] == "update_accepted")
    lines_edited = list(lines)
    lines_edited[target] = lines_edited[target].replace(b'"nbytes":', b'"nbytes":1')
    edited.write_bytes(b"\n".join(lines_edited) + b"\n")
    code, out = verify(ws, "--log", str(edited))
    assert code == 1 and f"line {target + 1}: record seq {target + 1} was changed" in out, out

    deleted = tmp_path / "deleted.jsonl"
    deleted.write_bytes(b"\n".join(lines[:target] + lines[target + 1:]) + b"\n")
    code, out = verify(ws, "--log", str(deleted))
    assert code == 1 and f"line {target + 1}: records seq {target + 1}..{target + 1} are missing" in out, out

    truncated = tmp_path / "truncated.jsonl"
    truncated.write_bytes(audit.read_bytes()[:-25])
    code, out = verify(ws, "--log", str(truncated))
    assert code == 0 and f"line {len(lines)} is an incomplete record" in out, out

    # a head signature checked against another aggregator's certificate fails, naming the first signed head
    other = make_workspace(tmp_path / "other", ["one"], rounds=1)
    code, out = verify(ws, "--cert", str(next((other / "cert" / "server").glob("agg_*.crt"))))
    first_head = next(i for i, r in enumerate(recs) if r["kind"] == "head_signed") + 1
    assert code == 1 and f"line {first_head}: head signature at seq {first_head} is by" in out, out
    shutil.rmtree(other)
