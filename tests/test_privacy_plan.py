"""The plan's privacy section: types, values and conflicts are reported like every other plan problem."""
from __future__ import annotations

import copy

import pytest

from fx_cli.plan import load_plan
from fx_cli.privacy.settings import privacy_of
from tests.test_plan import MINIMAL, problems_of, write_plan


def with_privacy(settings: dict, aggregation: str | None = None) -> dict:
    config = copy.deepcopy(MINIMAL)
    config["privacy"] = {"settings": settings}
    if aggregation:
        config["tasks"] = {"defaults": "plan/defaults/tasks_numpy.yaml",
                           "train": {"function": "train_task", "kwargs": {}, "aggregation_type": aggregation}}
    return config


def test_a_valid_privacy_section_loads_with_its_defaults(tmp_path):
    plan = load_plan(write_plan(tmp_path, with_privacy({"mode": "local", "clip_norm": 0.5, "max_epsilon": 8})))
    p = privacy_of(plan.config)
    assert p is not None and (p.mode, p.clip_norm, p.noise_multiplier, p.delta, p.max_epsilon) == \
        ("local", 0.5, 1.0, 1e-5, 8)
    assert privacy_of(load_plan(write_plan(tmp_path / "b", MINIMAL)).config) is None


def test_bad_privacy_values_are_all_reported_with_their_key_path(tmp_path):
    problems = problems_of(write_plan(tmp_path, with_privacy(
        {"clip_norm": 0, "noise_multiplier": -1.0, "delta": 1.5, "max_epsilon": 0, "sampling_rate": 2.0})))
    text = "\n".join(problems)
    for key in ("clip_norm", "noise_multiplier", "delta", "max_epsilon", "sampling_rate"):
        assert f"privacy.settings.{key}:" in text


def test_type_errors_and_unknown_keys_come_from_the_schema(tmp_path):
    problems = problems_of(write_plan(tmp_path, with_privacy({"mode": "global", "noise_multplier": 1.0})))
    assert any("privacy.settings.mode: expected one of 'central', 'local'" in p for p in problems)
    assert any("noise_multplier: unknown key (did you mean noise_multiplier?)" in p for p in problems)


def test_adaptive_clipping_needs_central_mode_and_enough_count_noise(tmp_path):
    problems = problems_of(write_plan(tmp_path, with_privacy({"mode": "local", "adaptive_clipping": True})))
    assert any("adaptive_clipping: only works with mode: central" in p for p in problems)
    problems = problems_of(write_plan(tmp_path / "b", with_privacy(
        {"adaptive_clipping": True, "noise_multiplier": 2.0, "clipped_count_stddev": 0.5})))
    assert any("clipped_count_stddev: must exceed noise_multiplier/2 = 1" in p for p in problems)


@pytest.mark.parametrize("aggregation", ["fx_cli.aggregation.Median", "fx_cli.aggregation.GeometricMedian",
                                         "fx_cli.aggregation.FedAdam"])
def test_central_dp_refuses_aggregations_that_are_not_a_sum(tmp_path, aggregation):
    problems = problems_of(write_plan(tmp_path, with_privacy({"mode": "central"}, aggregation)))
    assert any(f"tasks.train.aggregation_type: {aggregation} cannot be used with privacy mode: central" in p
               for p in problems)
    load_plan(write_plan(tmp_path / "ok", with_privacy({"mode": "central"}, "fx_cli.aggregation.WeightedAverage")))
