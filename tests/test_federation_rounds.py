"""Rounds: straggler policies, assigners, ``--task_group evaluation`` and heartbeats, in real (threaded) federations."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fx_cli.aggregator.assigners import RandomGroupedAssigner
from fx_cli.errors import FxError
from fx_cli.tensors.pbuf import read_model
from tests.runtime_helpers import final_model, make_workspace, reference_model, run_in_process, synthetic_runner

FOUR = ["one", "two", "three", "four"]
SHARDS4 = {n: i + 1 for i, n in enumerate(FOUR)}


def rounds_log(ws: Path, final: bool = False) -> list[dict]:
    """The training rounds' records (or, with ``final``, only the final model's evaluation)."""
    lines = [json.loads(x) for x in (ws / "logs" / "aggregator_metrics.jsonl").read_text().splitlines()]
    return [x for x in lines if x["final"] == final]


def assert_model(ws: Path, expected: dict[str, np.ndarray]) -> None:
    final = final_model(ws)
    assert sorted(final) == sorted(expected)
    for name in final:
        np.testing.assert_allclose(final[name], expected[name], rtol=2e-6, atol=1e-6)


def policy(template: str, **settings: object) -> dict:
    return {"template": f"fx_cli.aggregator.stragglers.{template}", **settings}


def test_percentage_policy_completes_without_a_collaborator_that_never_comes(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, FOUR, rounds=2,
                        straggler_handling_policy=policy("PercentagePolicy", percent_collaborators_needed=0.75))
    out = run_in_process(ws, FOUR, start_collaborators=lambda n: n != "four")
    assert not out.errors, out.errors
    assert out.aggregator.rounds_done == 2
    assert [r["participants"] for r in rounds_log(ws)] == [["one", "three", "two"]] * 2
    assert_model(ws, reference_model(ws, {n: s for n, s in SHARDS4.items() if n != "four"}, 2))


def test_cutoff_policy_ends_each_round_at_the_cutoff_with_the_minimum(tmp_path: Path) -> None:
    names = ["one", "two", "three"]
    ws = make_workspace(tmp_path, names, rounds=2, straggler_handling_policy=policy(
        "CutoffTimePolicy", straggler_cutoff_time=1.0, minimum_reporting=2))
    out = run_in_process(ws, names, start_collaborators=lambda n: n != "three")
    assert not out.errors, out.errors
    log = rounds_log(ws)
    assert [r["participants"] for r in log] == [["one", "two"]] * 2
    assert all(r["seconds"] >= 1.0 for r in log), "the round must wait for the cut-off"
    assert_model(ws, reference_model(ws, {"one": 1, "two": 2}, 2))


def test_cutoff_policy_below_its_minimum_ends_the_run_naming_the_absentee(tmp_path: Path) -> None:
    names = ["one", "two"]
    ws = make_workspace(tmp_path, names, rounds=2, aggregator={"join_deadline": 1.5},
                        straggler_handling_policy=policy("CutoffTimePolicy", straggler_cutoff_time=0.5,
                                                         minimum_reporting=2))
    out = run_in_process(ws, names, start_collaborators=lambda n: n == "one")
    error = out.errors["aggregator"]
    assert isinstance(error, FxError) and "'two' never connected" in error.message
    assert "CutoffTimePolicy" in error.message
    assert "ended the run" in out.errors["one"].message  # told at once, not left waiting


GATED_RUNNER = '''
import time
from pathlib import Path
from fx_cli.runners.synthetic import SyntheticRunner


def wait_for(path, text):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (path.exists() and text in path.read_text()):
        time.sleep(0.02)


class GatedRunner(SyntheticRunner):
    """Shard 1 trains once shard 2 has this round's tasks; in round 1 shard 2 trains only after the round ended."""

    def train_task(self, round_num, **kwargs):
        logs = Path(__file__).resolve().parents[1] / "logs"
        if self.data_loader.shard == 1:
            wait_for(logs / "two_metrics.jsonl", '"round": %d' % (round_num + 1))
        elif round_num == 0:
            wait_for(logs / "aggregator_metrics.jsonl", '"round": 1')
        return super().train_task(round_num, **kwargs)
'''


def test_a_straggler_is_told_it_missed_the_round_and_rejoins_the_next(tmp_path: Path) -> None:
    names = ["one", "two"]
    ws = make_workspace(tmp_path, names, rounds=2, prepare=lambda w: (w / "src" / "gated.py").write_text(GATED_RUNNER),
                        task_runner={"template": "src.gated.GatedRunner"},
                        straggler_handling_policy=policy("PercentagePolicy", percent_collaborators_needed=0.5))
    out = run_in_process(ws, names)
    assert not out.errors, out.errors
    two = out.collaborators["two"]
    assert two.missed[0] == 1 and 1 not in two.rounds
    log = rounds_log(ws)
    assert log[0]["participants"] == ["one"] and log[0]["expected"] == 2
    # Round 2 ends as soon as either is done, so who made it varies; that 'two' worked on it does not.
    records = [json.loads(x) for x in (ws / "logs" / "two_metrics.jsonl").read_text().splitlines()]
    worked = [r["round"] for r in records if not r["final"]]
    assert worked.count(2) >= 1


def test_heartbeats_keep_a_collaborator_alive_through_a_task_longer_than_the_timeout(tmp_path: Path) -> None:
    slow = ("import time\nfrom fx_cli.runners.synthetic import SyntheticRunner\n"
            "class SlowRunner(SyntheticRunner):\n"
            "    def train_task(self, round_num, **kwargs):\n"
            "        time.sleep(2.5)\n"
            "        return super().train_task(round_num, **kwargs)\n")
    ws = make_workspace(tmp_path, ["one"], rounds=1, prepare=lambda w: (w / "src" / "slow.py").write_text(slow),
                        task_runner={"template": "src.slow.SlowRunner"},
                        aggregator={"heartbeat_timeout": 1.0}, collaborator={"heartbeat_interval": 0.1})
    out = run_in_process(ws, ["one"])
    assert not out.errors, out.errors
    assert rounds_log(ws)[0]["participants"] == ["one"]


def test_random_grouped_assigner_trains_only_the_learning_group(tmp_path: Path) -> None:
    groups = [{"name": "learning", "percentage": 0.5, "tasks": ["aggregated_model_validation", "train"]},
              {"name": "evaluation", "percentage": 0.5, "tasks": ["aggregated_model_validation"]}]
    ws = make_workspace(tmp_path, FOUR, rounds=3, assigner={"task_groups": groups, "seed": 7})
    out = run_in_process(ws, FOUR)
    assert not out.errors, out.errors
    assigner = RandomGroupedAssigner(groups, FOUR, 3, seed=7)
    trainers = {r: [c for c in FOUR if "train" in assigner.tasks_for(c, r)] for r in range(3)}
    assert all(len(t) == 2 for t in trainers.values()) and len({tuple(t) for t in trainers.values()}) > 1
    assert_model(ws, reference_model(ws, SHARDS4, 3, trainers=lambda r: trainers[r]))
    for name in FOUR:
        tasks = [json.loads(x)["task"] for x in (ws / "logs" / f"{name}_metrics.jsonl").read_text().splitlines()]
        assert tasks.count("train") == sum(name in t for t in trainers.values())


def test_static_grouped_assigner_gives_each_collaborator_its_group(tmp_path: Path) -> None:
    names = ["one", "two", "three"]
    groups = [{"name": "learning", "collaborators": ["one", "two"],
               "tasks": ["aggregated_model_validation", "train", "locally_tuned_model_validation"]},
              {"name": "evaluation", "collaborators": ["three"], "tasks": ["aggregated_model_validation"]}]
    ws = make_workspace(tmp_path, names, rounds=2, assigner={
        "template": "fx_cli.aggregator.assigners.StaticGroupedAssigner", "task_groups": groups})
    out = run_in_process(ws, names)
    assert not out.errors, out.errors
    assert_model(ws, reference_model(ws, {"one": 1, "two": 2}, 2))
    three = [json.loads(x)["task"] for x in (ws / "logs" / "three_metrics.jsonl").read_text().splitlines()]
    assert three == ["aggregated_model_validation"] * 3  # two rounds and the final model


def test_evaluation_task_group_validates_the_initial_model_and_saves_nothing(tmp_path: Path) -> None:
    names = ["one", "two"]
    ws = make_workspace(tmp_path, names, rounds=3)
    out = run_in_process(ws, names, task_group="evaluation")
    assert not out.errors, out.errors
    result = out.aggregator
    assert result.rounds_done == 1 and result.last_path is None
    init = read_model(ws / "save" / "init.pbuf").tensors
    scores, sizes = [], []
    for shard in (1, 2):
        runner = synthetic_runner(ws, shard)
        runner.set_tensors(init)
        scores.append(runner.validate_task(0).metrics["accuracy"])
        sizes.append(runner.valid_data_size())
    expected = sum(s * n for s, n in zip(scores, sizes)) / sum(sizes)
    assert result.reports[0].metrics == pytest.approx({"aggregated_model_validation/accuracy": expected})
    assert not any((ws / "save" / f).exists() for f in ("last.pbuf", "best.pbuf"))
    assert not (ws / "local_state" / "aggregator.db").exists()
    assert list((ws / "local_state").iterdir()) == []
    assert all(c.rounds == [1] for c in out.collaborators.values())


def test_best_model_follows_the_configured_metric_and_direction(tmp_path: Path) -> None:
    names = ["one", "two"]
    ws = make_workspace(tmp_path, names, rounds=3, aggregator={"best_metric": "accuracy",
                                                             "best_metric_higher_is_better": False})
    out = run_in_process(ws, names)
    assert not out.errors, out.errors
    log = rounds_log(ws)
    accuracy = [r["metrics"]["aggregated_model_validation/accuracy"] for r in log]
    assert accuracy == sorted(accuracy)  # synthetic training only improves, so lower-is-better keeps round 1
    assert [r["best"] for r in log] == [True, False, False] and not rounds_log(ws, final=True)[0]["best"]
    assert read_model(ws / "save" / "best.pbuf").round_number == 0  # the model validated in round 1: the initial one
    assert read_model(ws / "save" / "last.pbuf").round_number == 3


def test_a_finished_run_started_again_says_so_and_keeps_its_model(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, ["one"], rounds=1, aggregator={"join_deadline": 3600})
    assert not run_in_process(ws, ["one"]).errors
    before = (ws / "save" / "last.pbuf").read_bytes()
    # It says so at once: it does not wait for anyone to join (run_in_process fails if it is still running).
    again = run_in_process(ws, [], timeout=600)
    assert again.aggregator.already_finished
    assert (ws / "save" / "last.pbuf").read_bytes() == before
