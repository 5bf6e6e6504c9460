"""Every number in a plan has a range, checked with the other plan problems and named by key path."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from fx_cli.errors import PlanError
from fx_cli.plan.loader import load_plan
from tests.conftest import run_fx

NAN, INF = math.nan, math.inf


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("origin")
    assert run_fx("workspace", "create", "--prefix", str(root / "ws"), "--template", "numpy/synthetic").exit_code == 0
    return root / "ws"


def _plan_with(origin: Path, tmp_path: Path, edits: dict[str, Any]) -> Path:
    """A copy of the plan with ``{'section.settings.key': value}`` (or any dotted path) set."""
    import shutil
    ws = tmp_path / "ws"
    shutil.copytree(origin, ws)
    path = ws / "plan" / "plan.yaml"
    plan = yaml.safe_load(path.read_text())
    for dotted, value in edits.items():
        node = plan
        *parents, last = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    path.write_text(yaml.safe_dump(plan))
    return path


BAD = {
    "aggregator.settings.rounds_to_train": [0, -3, 2**31, 10**12],
    "aggregator.settings.join_deadline": [0, -5, NAN, INF],
    "aggregator.settings.heartbeat_timeout": [0, -1.5, NAN, INF, 10**9],
    "aggregator.settings.round_deadline": [0, -1, NAN],
    "aggregator.settings.db_store_rounds": [-1],
    "collaborator.settings.heartbeat_interval": [0, -1, NAN],
    "network.settings.chunk_size_mib": [0, -1, 1e6, NAN, INF],
    "network.settings.client_reconnect_interval": [0, NAN],
    "network.settings.reconnect_deadline": [-1, 0, NAN, INF],
    "network.settings.max_concurrent_transfers": [0, -2, 10**6],
    "network.settings.stream_window_mib": [-1, 1e6, NAN, INF],
    "network.settings.upload_connection_mib": [-1, NAN, INF, 2**31],
    "network.settings.agg_port": [0, 70000, -1],
    "tasks.train.kwargs.epochs": [-1, 0, 10**9],
    "tasks.train.kwargs.batch_size": [0, -32],
    "tasks.aggregated_model_validation.kwargs.batch_size": [0],
    "task_runner.settings.num_params": [-5, 0],
    "task_runner.settings.learning_rate": [NAN, -0.1],
    "data_loader.settings.samples_per_shard": [0, -100],
}
CASES = [(key, value) for key, values in BAD.items() for value in values]


@pytest.mark.parametrize("key, value", CASES, ids=[f"{k}={v}" for k, v in CASES])
def test_out_of_range_values_are_plan_problems_naming_the_key(key, value, origin, tmp_path):
    path = _plan_with(origin, tmp_path, {key: value})
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    named = [p for p in caught.value.problems if key in p]
    assert named, caught.value.problems


STRAGGLERS = [
    ("fx_cli.aggregator.stragglers.PercentagePolicy", "percent_collaborators_needed", 0),
    ("fx_cli.aggregator.stragglers.PercentagePolicy", "percent_collaborators_needed", 1.5),
    ("fx_cli.aggregator.stragglers.PercentagePolicy", "minimum_reporting", 0),
    ("fx_cli.aggregator.stragglers.CutoffTimePolicy", "straggler_cutoff_time", -1),
    ("fx_cli.aggregator.stragglers.CutoffTimePolicy", "straggler_cutoff_time", NAN),
    ("fx_cli.aggregator.stragglers.CutoffTimePolicy", "straggler_cutoff_time", 0),
]


@pytest.mark.parametrize("template, key, value", STRAGGLERS)
def test_plugin_settings_are_checked_against_the_ranges_the_class_declares(template, key, value, origin, tmp_path):
    path = _plan_with(origin, tmp_path, {"straggler_handling_policy.template": template,
                                         f"straggler_handling_policy.settings.{key}": value})
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    assert any(f"straggler_handling_policy.settings.{key}" in p for p in caught.value.problems)


def test_nan_anywhere_is_refused(origin, tmp_path):
    path = _plan_with(origin, tmp_path, {"tasks.train.kwargs.custom_factor": NAN,
                                         "tasks.train.kwargs.weights": [1.0, NAN]})
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    text = "\n".join(caught.value.problems)
    assert "tasks.train.kwargs.custom_factor: NaN" in text and "tasks.train.kwargs.weights[1]: NaN" in text


def test_interval_must_be_below_its_timeout(origin, tmp_path):
    path = _plan_with(origin, tmp_path, {"collaborator.settings.heartbeat_interval": 30,
                                         "aggregator.settings.heartbeat_timeout": 30,
                                         "network.settings.client_reconnect_interval": 10,
                                         "network.settings.reconnect_deadline": 5})
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    text = "\n".join(caught.value.problems)
    assert "heartbeat_interval: 30 must be below aggregator.settings.heartbeat_timeout" in text
    assert "client_reconnect_interval: 10 must be below network.settings.reconnect_deadline" in text


def test_all_value_problems_are_reported_at_once_by_the_cli(origin, tmp_path, monkeypatch):
    path = _plan_with(origin, tmp_path, {"aggregator.settings.rounds_to_train": -1,
                                         "aggregator.settings.heartbeat_timeout": NAN,
                                         "network.settings.chunk_size_mib": 1e9,
                                         "tasks.train.kwargs.epochs": -2,
                                         "aggregator.settings.no_such_key": 1})
    monkeypatch.chdir(path.parent.parent)
    for command in (("plan", "print"), ("aggregator", "start")):
        res = run_fx(*command)
        assert res.exit_code == 1 and "Traceback" not in res.all, res.all
        assert "the plan has " in res.stderr, res.stderr
        for key in ("rounds_to_train", "heartbeat_timeout", "chunk_size_mib", "epochs", "no_such_key"):
            assert key in res.stderr


@pytest.mark.parametrize("edits", [
    {"aggregator.settings.round_deadline": None},
    {"aggregator.settings.rounds_to_train": 1_000_000},
    {"network.settings.chunk_size_mib": 0.01},
    {"straggler_handling_policy.template": "fx_cli.aggregator.stragglers.CutoffTimePolicy",
     "straggler_handling_policy.settings.straggler_cutoff_time": INF},
    {"straggler_handling_policy.template": "fx_cli.aggregator.stragglers.PercentagePolicy",
     "straggler_handling_policy.settings.percent_collaborators_needed": 1.0},
])
def test_values_at_the_edges_of_their_ranges_are_accepted(edits, origin, tmp_path):
    load_plan(_plan_with(origin, tmp_path, edits))


@pytest.mark.parametrize("key", ["aggregator.settings.data_size_median_multiple", "aggregator.settings.rejoin_deadline"])
@pytest.mark.parametrize("value", [0, -1, NAN, INF])
def test_trust_settings_have_ranges_too(key, value, origin, tmp_path):
    with pytest.raises(PlanError) as caught:
        load_plan(_plan_with(origin, tmp_path, {key: value}))
    assert any(key in p for p in caught.value.problems)


@pytest.mark.parametrize("limits", [{"one": 0}, {"one": -5}, {"*": 2**60}, {"one": 1.5}])
def test_declared_data_size_limits_must_be_sample_counts(limits, origin, tmp_path):
    with pytest.raises(PlanError) as caught:
        load_plan(_plan_with(origin, tmp_path, {"aggregator.settings.data_size_limits": limits}))
    assert any("data_size_limits" in p for p in caught.value.problems)
