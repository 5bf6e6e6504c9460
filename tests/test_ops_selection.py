"""Client selection strategies in a real mTLS federation, across a kill -9 of the aggregator and a resume."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from fx_cli.aggregator.selection import check_rule
from fx_cli.errors import PlanError
from tests.fault_helpers import killed, processes
from tests.runtime_helpers import make_workspace

ACC = "aggregated_model_validation/accuracy"


def run_killed_and_resumed(tmp_path: Path, cols: list[str], rounds: int, rule: dict) -> list[dict]:  # type: ignore[type-arg]
    """Run with the aggregator killed before round 3 and started again; every process must end with 0."""
    ws = make_workspace(tmp_path, cols, rounds=rounds, aggregator={"selection": rule})
    with processes(ws) as procs:
        agg = procs.aggregator(fault="aggregator:before_round_3")
        sites = [procs.collaborator(n) for n in cols]
        killed(agg)
        agg = procs.aggregator()
        for proc in (agg, *sites):  # unselected collaborators waited without error
            assert proc.wait(240) == 0, proc.output()
    return [json.loads(x) for x in (ws / "logs" / "aggregator_metrics.jsonl").read_text().splitlines()]


def test_random_selection_is_seeded_and_the_same_after_a_resume(tmp_path: Path) -> None:
    cols = ["one", "two", "three"]
    recs = run_killed_and_resumed(tmp_path, cols, 4, {"strategy": "random", "fraction": 0.5, "minimum": 1,
                                                      "seed": 7})
    training = [r for r in recs if not r["final"]]
    expected = [sorted(random.Random(f"7:{r}").sample(sorted(cols), 2)) for r in range(4)]
    assert [sorted(r["participants"]) for r in training] == expected
    assert len({tuple(e) for e in expected}) > 1  # the cohort really changes between rounds
    assert sorted(recs[-1]["participants"]) == sorted(cols) and recs[-1]["final"]  # everyone validates the final


def test_performance_selection_uses_each_collaborators_last_metric(tmp_path: Path) -> None:
    recs = run_killed_and_resumed(tmp_path, ["one", "two"], 4, {"strategy": "performance", "k": 1,
                                                                "metric": "accuracy"})
    training = [r for r in recs if not r["final"]]
    assert [r["participants"] for r in training[:2]] == [["one"], ["two"]]  # unmeasured first, by name
    last: dict[str, float] = {}
    for r in training:
        if r["round"] > 2:
            assert r["participants"] == [max(last, key=lambda c: (last[c], c))], (r, last)
        for col, metrics in r["by_collaborator"].items():
            last[col] = metrics[ACC]


def test_resource_selection_keeps_collaborators_below_a_threshold_out(tmp_path: Path) -> None:
    # shard 1 ('one') reports 100 training samples, shard 2 ('two') 200
    recs = run_killed_and_resumed(tmp_path, ["one", "two"], 3, {"strategy": "resource",
                                                                "thresholds": {"min_train_samples": 150}})
    training = [r for r in recs if not r["final"]]
    # round 1 is planned before anyone reported; from then on (and after the restart) only 'two' qualifies
    assert [r["participants"] for r in training] == [["one", "two"], ["two"], ["two"]]
    caps = json.loads((tmp_path / "ws" / "local_state" / "capabilities.json").read_text())
    assert caps["one"]["train_samples"] == 100 and caps["two"]["train_samples"] == 200


def test_bad_selection_rules_are_named() -> None:
    with pytest.raises(PlanError, match="selection.strategy"):
        check_rule({"strategy": "best"})
    with pytest.raises(PlanError) as err:
        check_rule({"strategy": "random", "fraction": 0, "minimum": 0, "k": 2})
    for key in ("fraction", "minimum", "k"):
        assert f"selection.{key}" in str(err.value)
    with pytest.raises(PlanError, match="thresholds"):
        check_rule({"strategy": "resource", "thresholds": {"cpus": 2}})


def test_capabilities_reported_at_the_same_moment_are_all_kept(tmp_path: Path) -> None:
    """Collaborators join from concurrent gRPC handlers; each one's report must survive the others'."""
    import threading

    from fx_cli.aggregator.selection import read_capabilities, record_capabilities

    path = tmp_path / "capabilities.json"
    names = [f"col-{i}" for i in range(16)]
    start = threading.Barrier(len(names))

    def report(name: str) -> None:
        start.wait()
        record_capabilities(path, name, {"train_samples": int(name.split("-")[1])})

    threads = [threading.Thread(target=report, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(read_capabilities(path)) == sorted(names)
