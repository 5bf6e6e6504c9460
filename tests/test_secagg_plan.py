"""The plan's secure_aggregation section: overflow, aggregations that need individual updates, central DP."""
from __future__ import annotations

import copy

from fx_cli.plan import load_plan
from fx_cli.secagg.settings import secagg_of
from tests.test_plan import MINIMAL, problems_of, write_plan


def plan_with(settings: dict, **extra: dict) -> dict:
    config = copy.deepcopy(MINIMAL)
    config["aggregator"]["settings"]["secure_aggregation"] = True
    config["secure_aggregation"] = {"settings": settings}
    config.update(extra)
    return config


def test_defaults_load_and_the_section_is_ignored_without_the_switch(tmp_path):
    s = secagg_of(load_plan(write_plan(tmp_path, plan_with({"threshold": 3}))).config)
    assert s is not None and (s.threshold, s.clipping_range, s.quantization_bits, s.modulus_bits) == (3, 8.0, 22, 64)
    off = copy.deepcopy(MINIMAL)
    off["secure_aggregation"] = {"settings": {"modulus_bits": 32}}
    assert secagg_of(load_plan(write_plan(tmp_path / "off", off)).config) is None


def test_a_sum_that_can_overflow_is_refused_with_what_to_change(tmp_path):
    problems = problems_of(write_plan(tmp_path, plan_with({"modulus_bits": 32, "max_collaborators": 10,
                                                           "max_weight": 1000})))
    assert any("the masked sum can overflow: 10 collaborators × max_weight 1000" in p and "needs 36 bits" in p
               and "use modulus_bits: 64" in p for p in problems), problems


def test_aggregations_needing_individual_updates_and_central_dp_are_refused(tmp_path):
    tasks = {"defaults": "plan/defaults/tasks_numpy.yaml",
             "train": {"function": "train_task", "kwargs": {}, "aggregation_type": "fx_cli.aggregation.Median"}}
    problems = problems_of(write_plan(tmp_path, plan_with({}, tasks=tasks, privacy={"settings": {"mode": "central"}})))
    text = "\n".join(problems)
    assert "tasks.train.aggregation_type: fx_cli.aggregation.Median cannot be used with secure aggregation" in text
    assert "privacy.settings.mode: central needs the aggregator to clip each update" in text
    load_plan(write_plan(tmp_path / "ok", plan_with({}, privacy={"settings": {"mode": "local"}})))


def test_wrong_types_are_reported_by_the_schema(tmp_path):
    problems = problems_of(write_plan(tmp_path, plan_with({"modulus_bits": 48, "treshold": 3})))
    assert any("secure_aggregation.settings.modulus_bits: expected one of 32, 64" in p for p in problems)
    assert any("treshold: unknown key (did you mean threshold?)" in p for p in problems)
