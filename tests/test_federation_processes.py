"""End-to-end federations as real processes over mutual TLS on loopback (numpy/synthetic)."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from fx_cli.tensors.pbuf import read_model
from tests.fault_helpers import flat
from tests.timing_helpers import deadline
from tests.runtime_helpers import (edit_plan, final_model, make_workspace, processes, reference_fedavg,
                                   run_federation, synthetic_runner)

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
    run = run_federation(ws, names, timeout=TIMEOUT)
    assert run.ok, run
    out = run.outputs["aggregator"]
    assert "mutual TLS" in out and "round 1/2" in out and "round 2/2" in out and "participants=4/4" in out
    reference = reference_fedavg(ws, {n: i + 1 for i, n in enumerate(names)}, rounds=2)
    final = final_model(ws)
    assert sorted(final) == sorted(reference)
    for name, array in final.items():
        np.testing.assert_allclose(array, reference[name], rtol=2e-6, atol=1e-6)
    assert read_model(ws / "save" / "last.pbuf").round_number == 2
    lines = [json.loads(x) for x in (ws / "logs" / "aggregator_metrics.jsonl").read_text().splitlines()]
    rounds, (last,) = lines[:-1], lines[-1:]
    assert [x["round"] for x in rounds] == [1, 2] and not any(x["final"] for x in rounds) and last["final"]
    assert all(x["participants"] == sorted(names) and x["bytes_in"] > 0 and x["seconds"] > 0 for x in rounds)
    assert rounds[1]["metrics"]["aggregated_model_validation/accuracy"] > rounds[0]["metrics"][
        "aggregated_model_validation/accuracy"]
    # The federation's final accuracy is that of the saved final model, evaluated here independently.
    scores, sizes = [], []
    for shard in range(1, 5):
        runner = synthetic_runner(ws, shard)
        runner.set_tensors(final)
        scores.append(runner.validate_task(2).metrics["accuracy"])
        sizes.append(runner.valid_data_size())
    expected = sum(a * n for a, n in zip(scores, sizes)) / sum(sizes)
    assert last["metrics"] == pytest.approx({"aggregated_model_validation/accuracy": expected}, rel=1e-9)
    assert "final model  accuracy=" in out and "final model: accuracy=" in out
    for name in names:
        records = (ws / "logs" / f"{name}_metrics.jsonl").read_text().splitlines()
        assert len(records) == 7  # 3 tasks x 2 rounds, then the final model's validation


def test_unauthorized_collaborators_are_refused_at_once_and_the_others_complete(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, ["one", "two"], certify=["one", "two", "three"], rounds=2)
    (ws / "plan" / "data.yaml").write_text("one,1\ntwo,2\nthree,3\n")
    impostor = tmp_path / "impostor"
    shutil.copytree(ws, impostor)
    for ext in ("crt", "key"):  # 'two' claimed with one's certificate
        shutil.copyfile(ws / "cert" / "client" / f"col_one.{ext}", impostor / "cert" / "client" / f"col_two.{ext}")
    with processes(ws) as procs:
        agg = procs.aggregator()
        wait_until(lambda: "listening on" in agg.output(), what="the aggregator to listen")
        outsider = procs.collaborator("three")
        fake = procs.collaborator("two", cwd=impostor)
        assert outsider.wait(TIMEOUT) == 1
        assert fake.wait(TIMEOUT) == 1
        for refused in (outsider, fake):  # refused at once: never retried (on a busy machine too)
            assert "retrying in" not in flat(refused.output()), refused.output()
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
    # 'one' and 'two' must join within join_deadline: 3 s when idle, longer when processes start slowly.
    join = deadline(3)
    ws = make_workspace(tmp_path, ["one", "two", "three"], rounds=2, aggregator={"join_deadline": join})
    with processes(ws) as procs:
        agg = procs.aggregator()
        present = [procs.collaborator("one"), procs.collaborator("two")]
        assert agg.wait(TIMEOUT) == 1
        assert all(c.wait(TIMEOUT) == 1 for c in present)
    text = " ".join(agg.output().split())
    assert f"'three' never connected (join_deadline {join:g} s)" in text and "WaitForAllPolicy" in text
    assert "'one' never connected" not in text and "'two' never connected" not in text
    assert "the aggregator ended the run" in " ".join(present[0].output().split())
    assert not (ws / "save" / "last.pbuf").exists()


def wait_until(predicate, timeout: float = TIMEOUT, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    """Poll an observable condition (a file's content) until it holds; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def has_line(path: Path, text: str) -> bool:
    return path.exists() and text in path.read_text()


HELD_RUNNER = '''
import time
from pathlib import Path
from fx_cli.runners.synthetic import SyntheticRunner

class HeldRunner(SyntheticRunner):
    """Shard 2 holds its round-2 training until the file 'release' appears in the workspace."""

    def train_task(self, round_num, **kwargs):
        release = Path(__file__).resolve().parents[1] / "release"
        while self.data_loader.shard == 2 and round_num == 1 and not release.exists():
            time.sleep(0.05)
        return super().train_task(round_num, **kwargs)
'''


def test_aggregator_killed_mid_round_resumes_with_the_results_it_had(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, ["one", "two"], rounds=3, prepare=lambda w: (w / "src" / "held.py").write_text(
        HELD_RUNNER), task_runner={"template": "src.held.HeldRunner"}, network={"reconnect_deadline": 60})
    logs = ws / "logs"
    with processes(ws) as procs:
        first = procs.aggregator()
        one, two = procs.collaborator("one"), procs.collaborator("two")
        wait_until(lambda: has_line(first.log, "round 2: received 'locally_tuned_model_validation' from 'one'"),
                   what="'one' to finish round 2")
        first.popen.kill()  # SIGKILL: no clean-up of any kind
        first.popen.wait()
        second = procs.start("aggregator-again", "aggregator", "start")
        wait_until(lambda: has_line(second.log, "resuming at round 2/3 with"), what="the resume")
        (ws / "release").write_text("go")
        assert second.wait(TIMEOUT) == 0, second.output()
        assert one.wait(TIMEOUT) == 0, one.output()
        assert two.wait(TIMEOUT) == 0, two.output()
    assert has_line(second.log, "participants=2/2")
    one_tasks = [json.loads(x) for x in (logs / "one_metrics.jsonl").read_text().splitlines()]
    assert len(one_tasks) == 10, "'one' must not redo the work the aggregator had already saved (9 + final)"
    reference = reference_fedavg(ws, {"one": 1, "two": 2}, rounds=3)
    for name, array in final_model(ws).items():
        np.testing.assert_allclose(array, reference[name], rtol=2e-6, atol=1e-6)
    history = [json.loads(x) for x in (logs / "aggregator_metrics.jsonl").read_text().splitlines()]
    assert [x["round"] for x in history if not x["final"]] == [1, 2, 3] and history[-1]["final"]


TRIPWIRE_DATA = '''
from fx_cli.runners.synthetic import SyntheticData

class TripwireData(SyntheticData):
    """Refuses to be built for real data: proves a command never built the data loader."""

    def __init__(self, data_path=None, **settings):
        if data_path is not None:
            raise RuntimeError("the data loader was built")
        super().__init__(data_path, **settings)
'''


def test_ping_reports_which_check_failed_without_building_the_data_loader(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    ws = make_workspace(tmp_path, ["one", "two"], rounds=1, certify=["one", "two", "three"],
                        prepare=lambda w: (w / "src" / "tripwire.py").write_text(TRIPWIRE_DATA),
                        data_loader={"template": "src.tripwire.TripwireData"})
    (ws / "plan" / "data.yaml").write_text("one,1\ntwo,2\nthree,3\n")
    other = tmp_path / "other"
    shutil.copytree(ws, other)
    edit_plan(other, aggregator={"rounds_to_train": 7})
    monkeypatch.setenv("PYTHONPATH", str(no_tensorflow_path(tmp_path)))
    with processes(ws) as procs:
        agg = procs.aggregator()
        wait_until(lambda: has_line(agg.log, "listening on"), what="the aggregator to listen")
        good = procs.start("ping-one", "collaborator", "ping", "-n", "one")
        outsider = procs.start("ping-three", "collaborator", "ping", "-n", "three")
        mismatch = procs.start("ping-other", "collaborator", "ping", "-n", "one", cwd=other)
        assert good.wait(TIMEOUT) == 0, good.output()
        assert outsider.wait(TIMEOUT) == 1 and mismatch.wait(TIMEOUT) == 1
        agg.popen.kill()
        agg.popen.wait()
        down = procs.start("ping-down", "collaborator", "ping", "-n", "one", "--timeout", "2")
        assert down.wait(TIMEOUT) == 1
    text = " ".join(good.output().split())
    for line in ("reachable: localhost:", "transport: mutual TLS", "authorized as 'one'", "plan matches"):
        assert line in text
    assert "authorization check failed" in outsider.output()
    assert "plan check failed" in mismatch.output() and "aggregator.settings.rounds_to_train" in " ".join(
        mismatch.output().split())
    assert "reachability check failed" in down.output()
