"""OpenFL 1.9 workspace code runs unchanged: TaskRunner/DataLoader subclasses, TensorKey-keyed results."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.openfl_helpers import OPENFL_WS, openfl_workspace, reference_linear_fedavg
from tests.runtime_helpers import final_model, run_federation, run_in_process


def test_openfl_is_not_installed_here(tmp_path):
    """The tests below exercise fx's stand-in; they would prove nothing next to a real OpenFL."""
    out = run_python("import importlib.util; print(importlib.util.find_spec('openfl'))", tmp_path)
    assert out.stdout.strip() == "None", out.stdout + out.stderr


@pytest.fixture(scope="module")
def numpy_federation(tmp_path_factory):
    ws = openfl_workspace(tmp_path_factory.mktemp("openfl_numpy"), ["one", "two"])
    run = run_federation(ws, ["one", "two"], timeout=300)
    assert run.codes == {"aggregator": 0, "one": 0, "two": 0}, run.outputs
    return ws, run


def test_openfl_numpy_workspace_completes_a_mtls_federation_and_matches_fedavg(numpy_federation):
    ws, _ = numpy_federation
    got = final_model(ws)
    assert sorted(got) == ["linear/b", "linear/w"]  # the holdout 'local_steps' never left a collaborator
    want = reference_linear_fedavg([1, 2], rounds=3)
    for name, array in want.items():
        np.testing.assert_allclose(got[name], array, rtol=1e-5, atol=1e-6, err_msg=name)
    assert not np.allclose(got["linear/w"], 0.0)


def test_openfl_runner_metrics_are_reported_under_their_own_names(numpy_federation):
    ws, _ = numpy_federation
    records = [json.loads(line) for line in (ws / "logs" / "aggregator_metrics.jsonl").read_text().splitlines()]
    text = json.dumps(records)
    assert "score" in text and "mse" in text


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, text=True, capture_output=True, timeout=120)


def test_a_real_openfl_installation_is_never_shadowed(tmp_path):
    fake = tmp_path / "site" / "openfl"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("REAL = True\n")
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from fx_cli.compat.finder import install_openfl_finder; install_openfl_finder()\n"
            "import openfl; print(getattr(openfl, 'REAL', False), getattr(openfl, 'FX_COMPAT', False))"
            % str(tmp_path / "site"))
    out = run_python(code, tmp_path)
    assert out.stdout.split() == ["True", "False"], out.stderr


def test_without_openfl_the_compat_names_are_importable(tmp_path):
    code = ("from fx_cli.compat.finder import install_openfl_finder; install_openfl_finder()\n"
            "from openfl.federated import TaskRunner, DataLoader\n"
            "from openfl.federated.task.runner import TaskRunner as T2\n"
            "from openfl.federated.data.loader import DataLoader as D2\n"
            "from openfl.utilities import TensorKey, Metric\n"
            "import openfl; assert TaskRunner is T2 and DataLoader is D2 and openfl.FX_COMPAT\n"
            "print(TensorKey('w', 'GLOBAL', 0, False, ('model',)).origin, Metric('acc', 1.0).name)")
    out = run_python(code, tmp_path)
    assert out.stdout.split() == ["GLOBAL", "acc"], out.stderr


@pytest.mark.parametrize("module,reason", [("openfl.experimental", "workflow interface"),
                                           ("openfl.federated.task.runner_flower", "Flower"),
                                           ("openfl.federated.task.runner_gandlf", "GaNDLF")])
def test_unsupported_openfl_modules_are_refused_on_import_with_the_reason(tmp_path, module, reason):
    code = ("from fx_cli.compat.finder import install_openfl_finder; install_openfl_finder()\n"
            f"import {module}")
    out = run_python(code, tmp_path)
    assert out.returncode != 0 and module in out.stderr and reason in out.stderr, out.stderr


def test_the_same_openfl_workspace_runs_unchanged_in_fx_simulate(numpy_federation, tmp_path):
    real, _ = numpy_federation
    sim = tmp_path / "sim"
    shutil.copytree(real, sim, ignore=shutil.ignore_patterns("local_state", "logs", "last.pbuf", "best.pbuf"))
    res = subprocess.run([sys.executable, "-m", "fx_cli", "simulate", "--workers", "1"], cwd=sim, text=True,
                         capture_output=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    got = final_model(sim)
    for name, array in reference_linear_fedavg([1, 2], rounds=3).items():
        np.testing.assert_allclose(got[name], array, rtol=1e-5, atol=1e-6, err_msg=name)
    np.testing.assert_array_equal(got["linear/w"], final_model(real)["linear/w"])  # same as over mTLS


def test_openfl_custom_aggregation_function_runs_unchanged(tmp_path):
    """An AggregationFunction subclass with OpenFL's call(local_tensors, db_iterator, ...) aggregates in fx."""
    def add_aggregation(ws):
        shutil.copy(OPENFL_WS / "numpy_aggregation.py", ws / "src" / "aggregation.py")

    train = {"function": "train_task", "kwargs": {"epochs": 2, "metrics": ["mse"]},
             "aggregation_type": {"template": "src.aggregation.HalfStep"}}
    ws = openfl_workspace(tmp_path, ["one", "two"], tasks={"train": train}, after_copy=add_aggregation)
    run = run_in_process(ws, ["one", "two"], timeout=300)
    assert not run.errors, run.errors
    got = final_model(ws)
    for name, array in reference_linear_fedavg([1, 2], rounds=3, server_step=0.5).items():
        np.testing.assert_allclose(got[name], array, rtol=1e-5, atol=1e-6, err_msg=name)
