"""The PyTorch runner on torch/digits: stable names, opt_treatment through the collaborator's executor, .pt files."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fx_cli.collaborator.tasks import TaskExecutor
from fx_cli.errors import FxError
from fx_cli.plan import load_plan
from fx_cli.runners.build import build_runner
from tests.runtime_helpers import fx_in

BATCH = 64


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("torch_runner")
    fx_in(root, "workspace", "create", "--prefix", str(root / "ws"), "--template", "torch/digits")
    return root / "ws"


def runner(ws: Path, shard: str | None = "1"):
    return build_runner(load_plan(ws / "plan" / "plan.yaml"), shard)


def executor(ws: Path, opt_treatment: str, shard: str = "1") -> TaskExecutor:
    plan = load_plan(ws / "plan" / "plan.yaml")
    tasks = dict(plan.tasks)
    tasks["train"] = dataclasses.replace(tasks["train"], kwargs={"epochs": 1, "batch_size": BATCH, "metrics": ["loss"]})
    return TaskExecutor(build_runner(plan, shard), tasks, opt_treatment, "one")


def steps(tensors: dict[str, np.ndarray]) -> set[float]:
    return {float(v) for k, v in tensors.items() if k.endswith("/step")}


def test_tensor_names_are_the_state_dict_keys_and_the_same_in_every_build(ws):
    a, b = runner(ws, None), runner(ws, None)
    names = sorted(a.get_tensors())
    assert names == sorted(a.model.state_dict())
    assert names == ["conv.bias", "conv.weight", "fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"]
    for name, array in a.get_tensors().items():
        np.testing.assert_array_equal(array, b.get_tensors()[name])  # seeded initialisation
    assert a.optimizer_tensor_names() == b.optimizer_tensor_names() != []  # optimizer state exists from the start


def test_reset_starts_every_training_from_a_fresh_optimizer(ws):
    ex = executor(ws, "RESET")
    start = ex.runner.get_tensors()
    batches = -(-ex.runner.train_data_size() // BATCH)
    first = ex.run("train", 0, start).tensors
    assert steps(ex.runner.get_tensors(with_opt_vars=True)) == {float(batches)}
    second = ex.run("train", 0, start).tensors
    assert steps(ex.runner.get_tensors(with_opt_vars=True)) == {float(batches)}
    for name in start:
        np.testing.assert_array_equal(first[name], second[name])  # same start, same state: same update


def test_continue_local_keeps_the_optimizer_state_between_rounds(ws):
    ex = executor(ws, "CONTINUE_LOCAL")
    start = ex.runner.get_tensors()
    batches = -(-ex.runner.train_data_size() // BATCH)
    first = ex.run("train", 0, start).tensors
    second = ex.run("train", 0, start).tensors
    assert steps(ex.runner.get_tensors(with_opt_vars=True)) == {float(2 * batches)}
    assert not np.array_equal(first["fc2.weight"], second["fc2.weight"])  # Adam's moments carried over
    assert sorted(second) == sorted(start)  # optimizer state stays local


def test_continue_global_loads_and_returns_the_optimizer_state_of_the_global_model(ws):
    ex = executor(ws, "CONTINUE_GLOBAL")
    model = ex.runner.get_tensors(with_opt_vars=True)
    model = {k: (np.full_like(v, 100.0) if k.endswith("/step") else v) for k, v in model.items()}
    batches = -(-ex.runner.train_data_size() // BATCH)
    out = ex.run("train", 0, model).tensors
    assert sorted(out) == sorted(model)
    assert steps(out) == {100.0 + batches}


def test_pt_file_round_trips_and_loads_with_plain_torch(ws, tmp_path):
    import torch

    trained = runner(ws)
    trained.train_task(0, epochs=1, batch_size=BATCH)
    path = Path(trained.save_native(str(tmp_path / "model")))
    assert path.suffix == ".pt"
    state = torch.load(path, weights_only=True)
    assert sorted(state) == sorted(trained.get_tensors())
    fresh = runner(ws, None)
    fresh.load_native(str(path))
    for name, array in trained.get_tensors().items():
        np.testing.assert_array_equal(fresh.get_tensors()[name], array)


def test_pt_file_of_another_model_is_refused_naming_the_tensor(ws, tmp_path):
    import torch

    state = runner(ws, None).model.state_dict()
    state["fc2.weight"] = torch.zeros(3, 3)
    torch.save(state, tmp_path / "other.pt")
    with pytest.raises(FxError, match=r"tensor 'fc2.weight': the model expects shape \(10, 64\), found \(3, 3\)"):
        runner(ws, None).load_native(str(tmp_path / "other.pt"))


def test_validating_a_torch_plan_imports_no_torch(ws):
    script = ("import sys\nfrom fx_cli.plan import load_plan\n"
              f"load_plan({str(ws / 'plan' / 'plan.yaml')!r})\n"
              "import fx_cli.runners.torch_runner\nassert 'torch' not in sys.modules\nprint('clean')\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "clean" in proc.stdout, proc.stderr[-2000:]
