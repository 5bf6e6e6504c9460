"""Early stopping, client selection and eligibility work in `fx simulate` too (the same engine)."""
from __future__ import annotations

import json
import random
from pathlib import Path

from tests.runtime_helpers import fx_in, make_workspace
from tests.test_simulate import flat, simulate

ACC = "aggregated_model_validation/accuracy"


def records(ws: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(x) for x in (ws / "logs" / "aggregator_metrics.jsonl").read_text().splitlines()]


def test_simulated_run_stops_early_and_selects_its_cohort(tmp_path: Path) -> None:
    cols = ["one", "two", "three"]
    ws = make_workspace(tmp_path, cols, rounds=10, tls=False, aggregator={
        "early_stopping": {"metric": "accuracy", "target": 0.9},
        "selection": {"strategy": "random", "fraction": 0.5, "seed": 3}})
    res = simulate(ws, "--workers", "1")
    assert res.returncode == 0, flat(res)
    recs = records(ws)
    training = [r for r in recs if not r["final"]]
    assert [sorted(r["participants"]) for r in training] == \
        [sorted(random.Random(f"3:{r}").sample(sorted(cols), 2)) for r in range(len(training))]
    assert training[-1]["metrics"][ACC] >= 0.9 > max([r["metrics"][ACC] for r in training[:-1]], default=0.0)
    assert len(training) < 10 and recs[-1]["final"] and "reached the target 0.9" in training[-1]["stopped"]
    # the same audit log as fx aggregator start (unsigned here: no certificates), and a status page while it ran
    audit = [json.loads(x) for x in (ws / "logs" / "audit.jsonl").read_text().splitlines()]
    assert [r["data"]["round"] for r in audit if r["kind"] == "round_closed"] == [r["round"] for r in training]
    assert sum(r["kind"] == "update_accepted" for r in audit) >= 2 * len(training)
    assert audit[-1]["kind"] == "run_finished" and "reached the target" in audit[-1]["data"]["stop_reason"]
    assert "status page and API: http://127.0.0.1:" in flat(res)
    assert "the log is not signed" in fx_in(ws, "audit", "verify")


def test_simulated_result_breaking_an_eligibility_rule_stops_the_run_naming_it(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, ["one", "two"], rounds=2, tls=False,
                        aggregator={"eligibility": {"max_data_size": 150}})  # 'two' claims 200
    res = simulate(ws, "--workers", "1")
    assert res.returncode == 1 and "not eligible: rule max_data_size" in flat(res), flat(res)
