"""Choosing aggregation functions from the plan, including user-defined ones in the workspace's src/."""
from __future__ import annotations

import textwrap

import numpy as np
import pytest

from fx_cli.aggregation import (FedAdagrad, FedAdam, FedAvgM, FedYogi, GeometricMedian, Median, WeightedAverage,
                                resolve_aggregation)
from fx_cli.errors import FxError
from fx_cli.plan.schema import check_settings
from tests.aggregation_helpers import contributions

TRIMMED_MEAN = textwrap.dedent('''
    import numpy as np
    from fx_cli.aggregation import AggregationFunction

    class TrimmedMean(AggregationFunction):
        """Drops the ``trim`` lowest and highest values of each element, then averages."""

        def __init__(self, trim: int = 1) -> None:
            self.trim = trim
            self.rounds_seen = []

        def aggregate(self, tensor_name, base, contributions, round_num):
            self.rounds_seen.append(round_num)
            stack = np.sort(np.stack([c.load() for c in contributions]), axis=0)
            return stack[self.trim:len(stack) - self.trim].mean(axis=0).astype(base.dtype)

    class NotAnAggregator:
        pass
''')


@pytest.fixture
def workspace(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "__init__.py").write_text("")
    (tmp_path / "src" / "myagg.py").write_text(TRIMMED_MEAN)
    return tmp_path


def test_no_aggregation_type_means_fedavg(tmp_path):
    assert type(resolve_aggregation(None, tmp_path)) is WeightedAverage


@pytest.mark.parametrize("template,cls", [
    ("fx_cli.aggregation.WeightedAverage", WeightedAverage), ("fx_cli.aggregation.Median", Median),
    ("fx_cli.aggregation.GeometricMedian", GeometricMedian), ("fx_cli.aggregation.FedAvgM", FedAvgM),
    ("fx_cli.aggregation.FedAdam", FedAdam), ("fx_cli.aggregation.FedYogi", FedYogi),
    ("fx_cli.aggregation.FedAdagrad", FedAdagrad),
    ("openfl.interface.aggregation_functions.WeightedAverage", WeightedAverage),
    ("openfl.interface.aggregation_functions.Median", Median),
    ("openfl.interface.aggregation_functions.GeometricMedian", GeometricMedian),
    ("openfl.interface.aggregation_functions.AdamAdaptiveAggregation", FedAdam),
    ("openfl.interface.aggregation_functions.YogiAdaptiveAggregation", FedYogi),
    ("openfl.interface.aggregation_functions.AdagradAdaptiveAggregation", FedAdagrad),
])
def test_shipped_and_openfl_names_resolve(template, cls, tmp_path):
    assert type(resolve_aggregation({"template": template}, tmp_path)) is cls


def test_settings_reach_the_constructor(tmp_path):
    fn = resolve_aggregation({"template": "fx_cli.aggregation.FedAdam",
                              "settings": {"learning_rate": 0.1, "beta_2": 0.9}}, tmp_path)
    assert (fn.learning_rate, fn.beta_1, fn.beta_2, fn.tau) == (0.1, 0.9, 0.9, 1e-3)
    assert isinstance(resolve_aggregation("fx_cli.aggregation.Median", tmp_path), Median)


def test_user_defined_function_from_workspace_src_aggregates(workspace):
    fn = resolve_aggregation({"template": "src.myagg.TrimmedMean", "settings": {"trim": 1}}, workspace)
    ups = [np.array([1.0, 10.0], np.float32), np.array([2.0, 20.0], np.float32),
           np.array([3.0, 30.0], np.float32), np.array([100.0, -100.0], np.float32)]
    out = fn.aggregate("w", np.zeros(2, np.float32), contributions(ups, [1, 1, 1, 1]), 7)
    assert out.tolist() == [2.5, 15.0] and fn.rounds_seen == [7]
    assert fn.state() == {}  # the default: a stateless function


def test_plan_checker_validates_settings_against_the_constructor(workspace):
    from fx_cli.plan.templates import resolve_class
    cls = resolve_class("src.myagg.TrimmedMean", workspace, "here")
    assert check_settings({"trim": 2}, cls, "tasks.train.aggregation_type.settings") == []
    assert check_settings({"trim": "two"}, cls, "x") == ["x.trim: expected int, got 'two'"]
    problems = check_settings({"momentun": 0.5}, FedAvgM, "tasks.train.aggregation_type.settings")
    assert problems == ["tasks.train.aggregation_type.settings.momentun: unknown key (did you mean momentum?)"]


def test_class_that_is_not_an_aggregation_function_is_refused(workspace):
    with pytest.raises(FxError, match="src.myagg.NotAnAggregator is not a fx_cli.aggregation.AggregationFunction"):
        resolve_aggregation({"template": "src.myagg.NotAnAggregator"}, workspace,
                            where="tasks.train.aggregation_type")


def test_unknown_setting_names_the_plan_key(workspace):
    with pytest.raises(FxError, match=r"tasks.train.aggregation_type.settings: cannot build src.myagg.TrimmedMean"):
        resolve_aggregation({"template": "src.myagg.TrimmedMean", "settings": {"trimm": 1}}, workspace,
                            where="tasks.train.aggregation_type")


def test_out_of_range_setting_is_an_fx_error(tmp_path):
    with pytest.raises(FxError, match="0 <= momentum < 1"):
        resolve_aggregation({"template": "fx_cli.aggregation.FedAvgM", "settings": {"momentum": 1.5}}, tmp_path)


def test_template_outside_the_allow_list_is_refused(tmp_path):
    with pytest.raises(FxError, match="outside the allowed packages"):
        resolve_aggregation({"template": "os.system"}, tmp_path)


def test_missing_template_key_is_refused(tmp_path):
    with pytest.raises(FxError, match="expected a mapping with 'template'"):
        resolve_aggregation({"settings": {}}, tmp_path, where="tasks.train.aggregation_type")


def _edit_plan(ws, edit):
    import yaml

    path = ws / "plan" / "plan.yaml"
    plan = yaml.safe_load(path.read_text())
    edit(plan)
    path.write_text(yaml.safe_dump(plan))
    return path


def test_plan_entries_build_the_aggregation_and_compression_they_name(make_workspace):
    from fx_cli.compression import ZlibPipeline, resolve_pipeline
    from fx_cli.plan import load_plan

    ws = make_workspace("numpy/synthetic", initialize=False)

    def edit(plan):
        plan["tasks"]["train"]["aggregation_type"] = {"template": "fx_cli.aggregation.FedYogi",
                                                      "settings": {"learning_rate": 0.2}}
        plan["compression_pipeline"] = {"template": "fx_cli.compression.ZlibPipeline", "settings": {"level": 3}}

    plan = load_plan(_edit_plan(ws, edit))
    fn = resolve_aggregation(plan.tasks["train"].aggregation_type, plan.workspace)
    assert isinstance(fn, FedYogi) and fn.learning_rate == 0.2
    assert type(resolve_aggregation(plan.tasks["aggregated_model_validation"].aggregation_type, ws)) is WeightedAverage
    pipeline = resolve_pipeline(plan.template("compression_pipeline"), plan.settings("compression_pipeline"), ws)
    assert isinstance(pipeline, ZlibPipeline) and pipeline.level == 3


def test_plan_with_a_misspelt_aggregation_setting_is_refused_naming_the_key(make_workspace):
    from fx_cli.errors import PlanError
    from fx_cli.plan import load_plan

    ws = make_workspace("numpy/synthetic", initialize=False)

    def edit(plan):
        plan["tasks"]["train"]["aggregation_type"] = {"template": "fx_cli.aggregation.FedAdam",
                                                      "settings": {"beta1": 0.8}}

    with pytest.raises(PlanError, match=r"tasks.train.aggregation_type.settings.beta1: unknown key "
                                        r"\(did you mean beta_1\?\)"):
        load_plan(_edit_plan(ws, edit))
