"""OpenFL 1.9 class paths in plans: translated where fx has the class, refused by name (with the reason) where not."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from fx_cli.errors import PlanError
from fx_cli.plan import load_plan
from tests.openfl_helpers import copy_openfl_files
from tests.runtime_helpers import fx_in


@pytest.fixture(scope="module")
def base_ws(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("openfl_plans")
    fx_in(root, "workspace", "create", "--prefix", str(root / "ws"), "--template", "numpy/synthetic")
    ws = root / "ws"
    copy_openfl_files("numpy", ws)
    return ws


def with_plan(base: Path, tmp_path: Path, edit) -> Path:
    ws = tmp_path / "ws"
    shutil.copytree(base, ws)
    plan = yaml.safe_load((ws / "plan" / "plan.yaml").read_text())
    edit(plan)
    (ws / "plan" / "plan.yaml").write_text(yaml.safe_dump(plan))
    return ws


def problems_of(ws: Path) -> str:
    with pytest.raises(PlanError) as caught:
        load_plan(ws / "plan" / "plan.yaml")
    return caught.value.message


def test_the_openfl_plan_loads_with_its_class_paths_translated(base_ws):
    plan = load_plan(base_ws / "plan" / "plan.yaml")
    assert plan.template("task_runner") == "src.taskrunner.LinearRegression"


def test_openfl_straggler_and_assigner_paths_translate(base_ws, tmp_path):
    def edit(plan):
        plan["straggler_handling_policy"] = {
            "template": "openfl.component.aggregator.straggler_handling.PercentagePolicy",
            "settings": {"percent_collaborators_needed": 0.5, "minimum_reporting": 1}}
        plan["assigner"]["template"] = "openfl.component.assigner.RandomGroupedAssigner"
    load_plan(with_plan(base_ws, tmp_path, edit) / "plan" / "plan.yaml")


@pytest.mark.parametrize("section,template,why", [
    ("task_runner", "openfl.federated.task.runner_gandlf.GaNDLFTaskRunner", "GaNDLF"),
    ("data_loader", "openfl.federated.data.loader_flower.FlowerDataLoader", "Flower"),
    ("compression_pipeline", "openfl.pipelines.EdenPipeline", "Int8QuantizationPipeline"),
    ("aggregator", "openfl.experimental.component.Aggregator", "workflow interface"),
])
def test_unsupported_openfl_classes_are_refused_naming_the_class(base_ws, tmp_path, section, template, why):
    ws = with_plan(base_ws, tmp_path, lambda plan: plan[section].update(template=template))
    message = problems_of(ws)
    assert f"{section}.template" in message and template in message and "not supported by fx" in message
    assert why in message


def test_xgboost_bagging_aggregation_is_refused_by_name(base_ws, tmp_path):
    agg = "openfl.interface.aggregation_functions.FedBaggingXGBoost"
    ws = with_plan(base_ws, tmp_path, lambda plan: plan["tasks"]["train"].update(aggregation_type={"template": agg}))
    message = problems_of(ws)
    assert "tasks.train.aggregation_type.template" in message and agg in message and "XGBoost" in message


def test_flower_connector_section_is_refused_by_name(base_ws, tmp_path):
    ws = with_plan(base_ws, tmp_path, lambda plan: plan.update(
        connector={"template": "openfl.component.ConnectorFlower", "settings": {"automatic_shutdown": True}}))
    message = problems_of(ws)
    assert "connector" in message and "openfl.component.ConnectorFlower" in message and "Flower" in message


def test_workspace_code_importing_the_workflow_api_is_refused_with_the_reason(base_ws, tmp_path):
    ws = with_plan(base_ws, tmp_path, lambda plan: plan["task_runner"].update(template="src.flow.MyFlow"))
    (ws / "src" / "flow.py").write_text("from openfl.experimental.workflow.interface import FLSpec\n\n"
                                       "class MyFlow(FLSpec):\n    pass\n")
    message = problems_of(ws)
    assert "src.flow.MyFlow" in message and "openfl.experimental" in message and "workflow interface" in message


def test_flower_plan_with_openfls_defaults_files_is_refused_naming_the_connector(base_ws, tmp_path):
    def edit(plan):
        plan["connector"] = {"defaults": "plan/defaults/connector_flower.yaml"}
        plan["tasks"] = {"defaults": "plan/defaults/tasks_flower.yaml"}
    message = problems_of(with_plan(base_ws, tmp_path, edit))
    assert "openfl.component.ConnectorFlower" in message and "Flower" in message


def test_xgboost_plan_with_openfls_task_defaults_is_refused_naming_the_aggregation(base_ws, tmp_path):
    message = problems_of(with_plan(base_ws, tmp_path,
                                    lambda plan: plan.update(tasks={"defaults": "plan/defaults/tasks_xgb.yaml"})))
    assert "openfl.interface.aggregation_functions.FedBaggingXGBoost" in message and "XGBoost" in message
