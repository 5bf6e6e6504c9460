"""End-to-end federations as real processes over mutual TLS on loopback (numpy/synthetic)."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from fx_cli.tensors.pbuf import read_model
from tests.runtime_helpers import edit_plan, final_model, make_workspace, processes, reference_fedavg

pytestmark = pytest.mark.slow
TIMEOUT = 90


def no_tensorflow_path(root: Path) -> Path:
    """A PYTHONPATH entry whose ``tensorflow`` package fails on import: a tripwire for processes that must not."""
    trap = root / "tf_tripwire" / "tensorflow"
    trap.mkdir(parents=True)
    (trap / "__init__.py").write_text("raise ImportError('tensorflow was imported by a process that must not')\n")
    return trap.parent


def test_four_collaborators_over_mtls_produce_the_weighted_average(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    names = ["one", "two", "three", "four"]
    ws = make_workspace(tmp_path, names, rounds=2)
    monkeypatch.setenv("PYTHONPATH", str(no_tensorflow_path(tmp_path)))
    with processes(ws) as procs:
        agg = procs.aggregator()
        cols = [procs.collaborator(n) for n in names]
        assert agg.wait(TIMEOUT) == 0, agg.output()
        for c in cols:
            assert c.wait(TIMEOUT) == 0, c.output()
    out = agg.output()
    assert "mutual TLS" in out and "round 1/2" in out and "round 2/2" in out and "participants=4/4" in out
    reference = reference_fedavg(ws, {n: i + 1 for i, n in enumerate(names)}, rounds=2)
    final = final_model(ws)
    assert sorted(final) == sorted(reference)
    for name, array in final.items():
        np.testing.assert_allclose(array, reference[name], rtol=2e-6, atol=1e-6)
    assert read_model(ws / "save" / "last.pbuf").round_number == 2
    lines = [json.loads(x) for x in (ws / "logs" / "aggregator_metrics.jsonl").read_text().splitlines()]
    assert [x["round"] for x in lines] == [1, 2]
    assert all(x["participants"] == sorted(names) and x["bytes_in"] > 0 and x["seconds"] > 0 for x in lines)
    assert lines[1]["metrics"]["aggregated_model_validation/accuracy"] > lines[0]["metrics"][
        "aggregated_model_validation/accuracy"]
    for name in names:
        records = (ws / "logs" / f"{name}_metrics.jsonl").read_text().splitlines()
        assert len(records) == 6  # 3 tasks x 2 rounds


def test_unauthorized_collaborators_are_refused_at_once_and_the_others_complete(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, ["one", "two"], certify=["one", "two", "three"], rounds=2)
    (ws / "plan" / "data.yaml").write_text("one,1\ntwo,2\nthree,3\n")
    impostor = tmp_path / "impostor"
    shutil.copytree(ws, impostor)
    for ext in ("crt", "key"):  # 'two' claimed with one's certificate
        shutil.copyfile(ws / "cert" / "client" / f"col_one.{ext}", impostor / "cert" / "client" / f"col_two.{ext}")
    with processes(ws) as procs:
        agg = procs.aggregator()
        started = time.monotonic()
        outsider = procs.collaborator("three")
        fake = procs.collaborator("two", cwd=impostor)
        assert outsider.wait(TIMEOUT) == 1
        assert fake.wait(TIMEOUT) == 1
        assert time.monotonic() - started < 12, "a refused collaborator must not retry"
        one, two = procs.collaborator("one"), procs.collaborator("two")
        assert agg.wait(TIMEOUT) == 0, agg.output()
        assert one.wait(TIMEOUT) == 0 and two.wait(TIMEOUT) == 0
    assert "'three' is not in the aggregator's plan/cols.yaml" in outsider.output()
    assert "CN 'one' does not match the claimed collaborator name 'two'" in fake.output()
    assert "participants=2/2" in agg.output()


def test_plan_hash_mismatch_is_refused_naming_the_differing_key(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, ["one"], rounds=1)
    other = tmp_path / "other"
    shutil.copytree(ws, other)
    edit_plan(other, task_runner={"learning_rate": 0.25})
    with processes(ws) as procs:
        agg = procs.aggregator()
        wrong = procs.collaborator("one", cwd=other)
        assert wrong.wait(TIMEOUT) == 1
        right = procs.collaborator("one")
        assert agg.wait(TIMEOUT) == 0, agg.output()
        assert right.wait(TIMEOUT) == 0
    text = " ".join(wrong.output().split())
    assert "plan mismatch" in text and "task_runner.settings.learning_rate" in text


def test_wait_for_all_ends_the_run_when_a_collaborator_never_comes(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, ["one", "two", "three"], rounds=2, aggregator={"join_deadline": 3})
    with processes(ws) as procs:
        agg = procs.aggregator()
        present = [procs.collaborator("one"), procs.collaborator("two")]
        assert agg.wait(TIMEOUT) == 1
        assert all(c.wait(TIMEOUT) == 1 for c in present)
    text = " ".join(agg.output().split())
    assert "'three' never connected (join_deadline 3 s)" in text and "WaitForAllPolicy" in text
    assert "the aggregator ended the run" in " ".join(present[0].output().split())
    assert not (ws / "save" / "last.pbuf").exists()
