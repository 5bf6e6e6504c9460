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


def variant(ws: Path, **settings):
    """The template's runner built with other task_runner settings (e.g. weight decay, SGD)."""
    plan = load_plan(ws / "plan" / "plan.yaml")
    base = build_runner(plan, "1")
    return type(base)(data_loader=base.data_loader, **{**plan.settings("task_runner"), **settings})


def test_a_download_into_the_tensor_buffers_writes_the_model_itself(ws):
    import torch

    r = runner(ws)
    buffers = r.tensor_buffers()
    assert sorted(buffers) == sorted(r.model.state_dict())  # every entry of this model is a float32 parameter
    for name, array in buffers.items():
        assert array.flags.writeable and array.flags.c_contiguous and array.dtype == np.float32
        array[...] = 0.25  # what a download does: write the next global model into the arrays
    assert all(bool((p == 0.25).all()) for p in r.model.parameters())
    r.set_tensors(buffers)  # its own arrays back: nothing to copy, and accepted
    assert all(bool((p == 0.25).all()) for p in r.model.parameters())
    others = {name: np.full_like(a, 0.5) for name, a in buffers.items()}
    r.set_tensors(others)  # new arrays are still copied in, and stay independent of the model
    others["fc1.weight"][...] = 7.0
    assert bool((r.model.fc1.weight == 0.5).all())
    with torch.no_grad():
        r.model.fc2.bias.add_(1.0)
    assert bool((torch.as_tensor(r.tensor_buffers()["fc2.bias"]) == 1.5).all())  # always the live memory


def test_a_tensor_buffer_leaves_out_entries_that_are_not_float32(ws):
    import torch

    r = runner(ws, None)
    r.model.register_buffer("seen", torch.zeros(3, dtype=torch.int64))  # as batch norm's step counter
    buffers = r.tensor_buffers()
    assert "seen" not in buffers and "fc1.weight" in buffers
    tensors = r.get_tensors()
    tensors["seen"] = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    r.set_tensors({**tensors, **buffers})  # the buffers as they are, the counter cast back to int64
    assert r.model.seen.dtype == torch.int64 and r.model.seen.tolist() == [1, 2, 3]


BN_MODEL = """
import torch


class BatchNormNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(64, 16)
        self.bn = torch.nn.BatchNorm1d(16)
        self.out = torch.nn.Linear(16, 10)

    def forward(self, x):
        return self.out(torch.relu(self.bn(self.fc(x.reshape(len(x), -1)))))
"""


def test_batch_norm_statistics_a_validation_changes_do_not_carry_into_the_training_after_it(ws):
    """The download goes into the parameters themselves; buffers get arrays of their own and are loaded again at
    every task, so each task starts from the global model's running statistics, as in OpenFL."""
    import torch

    (ws / "src" / "bn_model.py").write_text(BN_MODEL)
    r = variant(ws, model="src.bn_model.BatchNormNet", model_settings={})
    into = r.tensor_buffers()
    assert {"fc.weight", "bn.weight", "bn.bias"} <= set(into)
    assert not {"bn.running_mean", "bn.running_var", "bn.num_batches_tracked"} & set(into)
    sent = {name: np.random.default_rng(1).random(a.shape).astype(np.float32) + 0.5
            for name, a in r.get_tensors().items()}  # the global model, as the aggregator sends it
    downloaded = {name: into.get(name, np.empty_like(a)) for name, a in sent.items()}
    for name, array in downloaded.items():  # the download: parameters into the model, the rest into new arrays
        array[...] = sent[name]
    r.set_tensors(downloaded)  # the validation's load
    r.model.train()
    with torch.no_grad():
        r.model(torch.randn(32, 64))  # a validation that runs the model in training mode moves the statistics
    assert not np.allclose(r.model.bn.running_mean.numpy(), sent["bn.running_mean"])
    r.set_tensors(downloaded)  # the training's load: back to the global model's statistics
    for name in ("bn.running_mean", "bn.running_var", "fc.weight"):
        np.testing.assert_array_equal(r.model.state_dict()[name].numpy(), sent[name])


@pytest.mark.parametrize("settings", [{}, {"weight_decay": 0.01}, {"optimizer": "sgd", "momentum": 0.9},
                                      {"optimizer": "sgd", "momentum": 0.9, "weight_decay": 0.01}],
                         ids=["adam", "adam-decay", "sgd-momentum", "sgd-momentum-decay"])
def test_reset_puts_back_the_primed_state_in_place_without_holding_a_copy_of_zeros(ws, settings):
    import torch

    r = variant(ws, **settings)
    torch.manual_seed(r.seed)
    unprimed = type(r.model)(**load_plan(ws / "plan" / "plan.yaml").settings("task_runner")["model_settings"])
    for name, value in unprimed.state_dict().items():  # priming the optimizer moved no weight
        assert torch.equal(value, r.model.state_dict()[name]), name
    fresh = r.get_tensors(with_opt_vars=True)
    before = {k: v for k, v in fresh.items() if k.startswith("optimizer/")}
    assert before  # primed: the state exists before the first round
    r.train_task(0, epochs=1, batch_size=BATCH)
    trained = r.get_tensors(with_opt_vars=True)
    assert any(not np.array_equal(trained[k], v) for k, v in before.items())  # training moved the state
    pointers = {id(p): {k: v.data_ptr() for k, v in s.items() if torch.is_tensor(v)} for p, s in r.optimizer.state.items()}
    r.reset_optimizer()
    after = r.get_tensors(with_opt_vars=True)
    for name, value in before.items():
        np.testing.assert_array_equal(after[name], value, err_msg=name)
    assert {id(p): {k: v.data_ptr() for k, v in s.items() if torch.is_tensor(v)}
            for p, s in r.optimizer.state.items()} == pointers  # zeroed or copied where they lie
    held = sum(v.numel() * v.element_size() for per in r._fresh.values.values() for v in per.values()
               if torch.is_tensor(v))
    moments = sum(v.nbytes for k, v in before.items() if not k.endswith("/step"))
    if settings.get("weight_decay"):
        assert 0 < held <= moments  # a primed step with weight decay leaves moments that are not zero: kept
    else:
        assert held == 0  # all zeros: remembered by shape, not copied


def test_training_after_a_reset_matches_training_a_fresh_runner(ws):
    a, b = variant(ws, weight_decay=0.01), variant(ws, weight_decay=0.01)
    start = a.get_tensors()
    a.train_task(0, epochs=1, batch_size=BATCH)
    a.set_tensors(start)
    a.reset_optimizer()
    out_a = a.train_task(0, epochs=1, batch_size=BATCH).tensors
    out_b = b.train_task(0, epochs=1, batch_size=BATCH).tensors
    for name in start:
        np.testing.assert_array_equal(out_a[name], out_b[name], err_msg=name)
    assert all(p.grad is None for p in a.model.parameters())  # gradients are let go after training


def test_priming_puts_back_the_weights_an_optimizer_moves_on_a_zero_gradient():
    import torch

    from fx_cli.runners import torch_state as ts

    for make in (lambda ps: torch.optim.ASGD(ps, lr=0.1), lambda ps: torch.optim.AdamW(ps, lr=0.1)):
        torch.manual_seed(0)
        module = torch.nn.Linear(4, 3)
        weights = {k: v.clone() for k, v in module.state_dict().items()}
        ts.prime_optimizer(module, make(module.parameters()))  # ASGD decays weights, AdamW decays by default
        for name, value in module.state_dict().items():
            assert torch.equal(value, weights[name]), name


def test_continue_global_training_leaves_the_global_models_optimizer_arrays_as_they_were(ws):
    ex = executor(ws, "CONTINUE_GLOBAL")
    model = ex.runner.get_tensors(with_opt_vars=True)
    kept = {k: v.copy() for k, v in model.items()}
    ex.run("train", 0, model)
    for name, value in model.items():  # deltas, local privacy and fx simulate's next collaborator read them
        np.testing.assert_array_equal(value, kept[name], err_msg=name)
