"""Each eligibility rule refuses in a real mTLS federation, naming the rule to the collaborator and in the audit log."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from fx_cli.aggregator.eligibility import Eligibility, version_allowed
from fx_cli.errors import PlanError
from tests.fault_helpers import flat, processes, wait_until
from tests.runtime_helpers import make_workspace


def audit(ws: Path) -> list[dict]:  # type: ignore[type-arg]
    path = ws / "logs" / "audit.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def refused_run(tmp_path: Path, rule: dict, refused: str, kind: str,  # type: ignore[type-arg]
                reported: tuple[str, ...] = ()) -> tuple[str, dict, list[dict]]:  # type: ignore[type-arg]
    """Start a 2-site federation under ``rule``; ``refused`` must exit 1; returns its output and the audit record."""
    ws = make_workspace(tmp_path, ["one", "two"], rounds=2, aggregator={"eligibility": rule})
    with processes(ws) as procs:
        agg = procs.aggregator()
        sites = {n: procs.collaborator(n) for n in ("one", "two")}
        assert sites[refused].wait(120) == 1, sites[refused].output()
        wait_until(lambda: any(r["kind"] == kind and r["data"]["collaborator"] == refused for r in audit(ws)),
                   f"a {kind} record for '{refused}'", procs=[agg])
        for name in reported:
            wait_until(lambda: any(r["kind"] == "capabilities" and r["data"]["collaborator"] == name
                                   for r in audit(ws)), f"the capabilities of '{name}'", procs=[agg])
        records = audit(ws)
    record = next(r["data"] for r in records if r["kind"] == kind and r["data"]["collaborator"] == refused)
    return flat(sites[refused].output()), record, records


def test_min_samples_refuses_at_join(tmp_path: Path) -> None:
    out, record, records = refused_run(tmp_path, {"min_samples": 150}, "one", "join_refused",
                                       reported=("two",))  # one: 100, two: 200
    assert "not eligible: rule min_samples: 100 training samples, at least 150 required" in out
    assert "rule min_samples" in record["reason"] and len(record["cert_fingerprint"]) == 95
    caps = next(r["data"] for r in records if r["kind"] == "capabilities" and r["data"]["collaborator"] == "two")
    assert caps["train_samples"] == 200 and caps["valid_samples"] == 100 and caps["cpu_count"] >= 1
    assert caps["memory_bytes"] > 0 and isinstance(caps["gpu"], bool) and caps["fx_version"]


def test_fx_version_range_refuses_at_join(tmp_path: Path) -> None:
    out, record, _ = refused_run(tmp_path, {"fx_versions": ">=999"}, "one", "join_refused")
    assert "not eligible: rule fx_versions" in out and "outside >=999" in record["reason"]


def test_max_data_size_refuses_the_update(tmp_path: Path) -> None:
    out, record, _ = refused_run(tmp_path, {"max_data_size": 150}, "two", "update_refused")
    assert "not eligible: rule max_data_size: the result claims 200 samples, at most 150 allowed" in out
    assert record["task"] == "train" and "rule max_data_size" in record["message"]


def test_max_update_norm_refuses_the_update(tmp_path: Path) -> None:
    out, record, records = refused_run(tmp_path, {"max_update_norm": 1e-6}, "one", "update_refused")
    assert "not eligible: rule max_update_norm: the update moves the model by" in out
    assert "rule max_update_norm" in record["message"]
    assert not any(r["kind"] == "update_accepted" and r["data"]["task"] == "train" for r in records)


def test_rules_are_validated_and_versions_compared() -> None:
    with pytest.raises(PlanError) as err:
        Eligibility.from_settings({"min_samples": 0, "fx_versions": "new", "max_update_norm": -1, "x": 1})
    for key in ("min_samples", "fx_versions", "max_update_norm", "x"):
        assert f"eligibility.{key}" in str(err.value)
    assert version_allowed("1.2.0", ">=1.2,<2") and not version_allowed("2.0", ">=1.2,<2")
    assert version_allowed("0.10.1", ">0.9") and not version_allowed("", ">=0")
