"""aggregator.settings.early_stopping in a real mTLS federation: the right round, final validation, a kill -9."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from fx_cli.aggregator.stopping import EarlyStopping
from fx_cli.errors import PlanError
from tests.fault_helpers import flat, killed, processes
from tests.runtime_helpers import make_workspace

ACC = "aggregated_model_validation/accuracy"


def rounds(ws: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(x) for x in (ws / "logs" / "aggregator_metrics.jsonl").read_text().splitlines()]


def test_target_reached_stops_after_that_round_with_final_validation(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, ["one", "two"], rounds=10,
                        aggregator={"early_stopping": {"metric": "accuracy", "mode": "max", "target": 0.9}})
    with processes(ws) as procs:
        agg, one, two = procs.aggregator(), procs.collaborator("one"), procs.collaborator("two")
        for proc in (agg, one, two):
            assert proc.wait(180) == 0, proc.output()
    recs = rounds(ws)
    training = [r for r in recs if not r["final"]]
    first_hit = next(r["round"] for r in training if r["metrics"][ACC] >= 0.9)
    assert training[-1]["round"] == first_hit < 10
    assert all(r["metrics"][ACC] < 0.9 for r in training[:-1])
    assert recs[-1]["final"] and recs[-1]["round"] == first_hit  # the final model was validated by every site
    assert training[-1]["stopped"].startswith("accuracy reached the target 0.9")
    out = flat(agg.output())
    assert f"stopped early after round {first_hit}: accuracy reached the target 0.9" in out
    assert "federation complete: final aggregated model" in out and (ws / "save" / "last.pbuf").exists()
    audit = [json.loads(x) for x in (ws / "logs" / "audit.jsonl").read_text().splitlines()]
    assert next(r for r in audit if r["kind"] == "run_finished")["data"]["stop_reason"] == training[-1]["stopped"]


def test_patience_decision_survives_a_kill_after_it_was_saved(tmp_path: Path) -> None:
    rule = {"metric": "accuracy", "min_delta": 0.5, "patience": 2}  # nothing improves by 0.5: stop after round 3
    ws = make_workspace(tmp_path, ["one", "two"], rounds=10, aggregator={"early_stopping": rule})
    with processes(ws) as procs:
        # the 8th 'saving_model' point is round 3's, right after the commit that holds the decision
        agg = procs.aggregator(fault="aggregator:saving_model#8")
        one, two = procs.collaborator("one"), procs.collaborator("two")
        killed(agg)
        agg = procs.aggregator()
        for proc in (agg, one, two):
            assert proc.wait(180) == 0, proc.output()
    recs = rounds(ws)
    training = [r for r in recs if not r["final"]]
    assert [r["round"] for r in training] == [1, 2, 3] and recs[-1]["final"]
    # independently: no round improved on the best by more than 0.5, so rounds 2 and 3 use up the patience
    assert all(b["metrics"][ACC] - a["metrics"][ACC] <= 0.5 for a, b in zip(training, training[1:]))
    assert "did not improve by more than 0.5 for 2 round(s)" in training[-1]["stopped"]
    assert "early stopping ended training after round 3" in flat(agg.output())
    again = processes(ws)
    with again as procs:
        agg = procs.aggregator()
        assert agg.wait(60) == 0 and "already finished" in flat(agg.output())


def test_bad_rules_are_named() -> None:
    with pytest.raises(PlanError) as err:
        EarlyStopping.from_settings({"metric": "", "mode": "up", "patience": 0, "min_delta": -1, "extra": 1},
                                    ["val"], "accuracy", True)
    text = str(err.value)
    for key in ("metric", "mode", "patience", "min_delta", "extra"):
        assert f"early_stopping.{key}" in text
    with pytest.raises(PlanError, match="set patience"):
        EarlyStopping.from_settings({"metric": "accuracy"}, ["val"], "accuracy", True)
    rule = EarlyStopping.from_settings({"metric": "loss", "mode": "min", "patience": 1, "min_delta": 0.1},
                                       ["val"], "accuracy", True)
    assert rule is not None
    hist = [{"round": 1, "metrics": {"val/loss": 1.0}}, {"round": 2, "metrics": {"val/loss": 0.85}}]
    assert rule.decide(hist) == ""  # improved by 0.15
    assert "did not improve" in rule.decide(hist + [{"round": 3, "metrics": {"val/loss": 0.8}}])


def test_plan_validation_names_bad_operations_rules(tmp_path: Path) -> None:
    from fx_cli.plan import load_plan
    from tests.runtime_helpers import edit_plan, make_workspace as make_ws

    ws = make_ws(tmp_path, ["one"], rounds=1, tls=False)
    edit_plan(ws, aggregator={"early_stopping": {"mode": "up"}, "eligibility": {"min_samples": -1},
                              "selection": {"strategy": "random", "fraction": 2}, "status_address": "nowhere"})
    with pytest.raises(PlanError) as err:
        load_plan(ws / "plan" / "plan.yaml")
    text = str(err.value)
    for key in ("early_stopping.mode", "eligibility.min_samples", "selection.fraction", "status_address"):
        assert key in text, text
