"""The Keras task runner: stable names, tensor fit checks, opt_treatment, tasks and a small federation."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fx_cli.errors import FxError
from fx_cli.plan import Plan, load_plan
from fx_cli.runners.build import build_runner
from fx_cli.runners.keras_runner import KerasRunner
from tests.keras_helpers import create_workspace

pytestmark = pytest.mark.tensorflow  # Keras/TensorFlow or scikit-learn: the tensorflow extra

MODEL_NAMES = ["conv1/kernel", "conv1/bias", "dense1/kernel", "dense1/bias", "output/kernel", "output/bias"]

NAMES_SCRIPT = r"""
import json, os
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import keras
# Models built earlier in a process shift Keras' automatic names (dense -> dense_1, adam -> adam_1).
keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).compile(optimizer="adam", loss="mse")
from fx_cli.runners.keras_data import DigitsData
from fx_cli.runners.keras_runner import KerasRunner
first = KerasRunner(DigitsData())
second = KerasRunner(DigitsData())
print(json.dumps([list(first.get_tensors(with_opt_vars=True)), list(second.get_tensors(with_opt_vars=True))]))
"""


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    ws = create_workspace(tmp_path_factory.mktemp("keras") / "ws", "keras/digits", initialize=False)
    return load_plan(ws / "plan" / "plan.yaml")


@pytest.fixture(scope="module")
def shard_runners(plan: Plan) -> list[KerasRunner]:
    return [build_runner(plan, data_path=str(k)) for k in (1, 2)]  # type: ignore[misc]


@pytest.fixture(scope="module")
def fresh(plan: Plan) -> KerasRunner:
    return build_runner(plan)  # type: ignore[return-value]


def opt_state(runner: KerasRunner) -> dict[str, np.ndarray]:
    return {k: v for k, v in runner.get_tensors(with_opt_vars=True).items() if k.startswith("optimizer/")}


def test_tensor_names_are_explicit_and_independent_of_keras_auto_naming(fresh: KerasRunner) -> None:
    assert list(fresh.get_tensors()) == MODEL_NAMES
    assert fresh.optimizer_tensor_names()[:2] == ["optimizer/iteration", "optimizer/learning_rate"]
    assert "optimizer/conv1_kernel_momentum" in fresh.optimizer_tensor_names()
    proc = subprocess.run([sys.executable, "-c", NAMES_SCRIPT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json

    first, second = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = MODEL_NAMES + fresh.optimizer_tensor_names()
    assert first == expected and second == expected


def test_same_seed_builds_identical_initial_weights(plan: Plan, fresh: KerasRunner) -> None:
    again = build_runner(plan)
    for name, array in fresh.get_tensors().items():
        np.testing.assert_array_equal(array, again.get_tensors()[name])
    other = KerasRunner(fresh.data_loader, seed=7)
    assert not np.array_equal(other.get_tensors()["conv1/kernel"], fresh.get_tensors()["conv1/kernel"])


def test_set_tensors_round_trips_and_copies(plan: Plan, fresh: KerasRunner) -> None:
    runner = build_runner(plan)
    tensors = {k: v + 0.5 for k, v in fresh.get_tensors().items()}
    runner.set_tensors(tensors)
    for name, array in runner.get_tensors().items():
        np.testing.assert_array_equal(array, tensors[name])
    assert all(a.dtype == np.float32 for a in runner.get_tensors(with_opt_vars=True).values())


def test_set_tensors_with_wrong_shape_names_tensor_and_both_shapes(fresh: KerasRunner) -> None:
    tensors = fresh.get_tensors()
    tensors["dense1/kernel"] = np.zeros((128, 64), np.float32)
    with pytest.raises(FxError) as err:
        fresh.set_tensors(tensors)
    assert "tensor 'dense1/kernel': the model expects shape (256, 64), found (128, 64)" in err.value.message
    assert err.value.hint and "task_runner.settings" in err.value.hint


def test_set_tensors_lists_every_missing_and_unknown_tensor(fresh: KerasRunner) -> None:
    tensors = fresh.get_tensors()
    del tensors["output/bias"], tensors["conv1/kernel"]
    tensors["dense_7/kernel"] = np.zeros(3, np.float32)
    with pytest.raises(FxError) as err:
        fresh.set_tensors(tensors)
    message = err.value.message
    assert "tensor 'output/bias': missing (the model expects shape (10,))" in message
    assert "tensor 'conv1/kernel': missing (the model expects shape (3, 3, 1, 16))" in message
    assert "tensor 'dense_7/kernel': unknown to the model (found shape (3,))" in message


def test_tensors_assigned_in_row_steps_land_exactly(plan: Plan, monkeypatch: pytest.MonkeyPatch) -> None:
    from fx_cli.runners import keras_runner

    runner: KerasRunner = build_runner(plan, data_path="1")  # type: ignore[assignment]
    rng = np.random.default_rng(7)
    tensors = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in runner.get_tensors(True).items()}
    tensors["optimizer/iteration"] = np.asarray(41.0, dtype=np.float32)
    steps: list[int] = []
    real = keras_runner.assign_in_steps
    monkeypatch.setattr(keras_runner, "ASSIGN_STEP_BYTES", 96)  # a few rows per step: every 2-D weight in steps
    monkeypatch.setattr(keras_runner, "assign_in_steps", lambda v, a: (steps.append(a.nbytes), real(v, a))[1])
    runner.set_tensors(tensors, with_opt_vars=True)
    assert any(n > 96 for n in steps)
    for name, value in runner.get_tensors(True).items():
        np.testing.assert_array_equal(value, tensors[name], err_msg=name)


def test_a_tensor_of_the_wrong_shape_is_refused_whole_even_where_it_would_go_in_steps(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from fx_cli.runners import keras_runner

    keras = keras_runner.import_keras()
    monkeypatch.setattr(keras_runner, "ASSIGN_STEP_BYTES", 16)
    variable = keras.Variable(np.zeros((6, 2), np.float32))
    with pytest.raises(ValueError):
        keras_runner.assign_in_steps(variable, np.ones((4, 2), np.float32))  # whole blocks, but rows missing
    assert not np.asarray(variable.numpy()).any()  # nothing was written


def test_reset_puts_back_every_start_value_and_holds_no_copy_of_zeros(plan: Plan) -> None:
    runner: KerasRunner = build_runner(plan, data_path="1")  # type: ignore[assignment]
    start = opt_state(runner)
    runner.train_task(0, epochs=1, batch_size=32)
    assert any(not np.array_equal(opt_state(runner)[k], v) for k, v in start.items())
    runner.reset_optimizer()
    after = opt_state(runner)
    for name, value in start.items():
        np.testing.assert_array_equal(after[name], value, err_msg=name)
    kept = {name: v for name, v in runner._opt_initial.items() if v is not None}
    assert all(np.any(v) for v in kept.values())  # only start values that are not all zeros are copied
    moments = [name for name in start if name.endswith(("_momentum", "_velocity"))]
    assert moments and not any(name in kept for name in moments)


def test_reset_optimizer_really_forgets_the_optimizer_state(plan: Plan, shard_runners: list[KerasRunner]) -> None:
    runner = shard_runners[0]
    start = runner.get_tensors()
    runner.train_task(0, epochs=1, batch_size=32)
    trained_state = opt_state(runner)
    assert trained_state["optimizer/iteration"] > 0
    assert np.abs(trained_state["optimizer/conv1_kernel_momentum"]).sum() > 0
    runner.reset_optimizer()
    assert opt_state(runner)["optimizer/iteration"] == 0
    assert all(not np.any(v) for k, v in opt_state(runner).items() if k.endswith(("_momentum", "_velocity")))
    # After a reset, training from the same weights equals training with a never-used optimizer.
    runner.set_tensors(start)
    again = runner.train_task(1, epochs=1, batch_size=32).tensors
    fresh = build_runner(plan, data_path="1")
    fresh.set_tensors(start)
    expected = fresh.train_task(1, epochs=1, batch_size=32).tensors
    for name in MODEL_NAMES:
        np.testing.assert_allclose(again[name], expected[name], atol=1e-6)


def test_continue_local_keeps_the_optimizer_state_across_new_weights(fresh: KerasRunner,
                                                                     shard_runners: list[KerasRunner]) -> None:
    runner = shard_runners[1]
    runner.train_task(0, epochs=1, batch_size=64)
    before = opt_state(runner)
    runner.set_tensors(fresh.get_tensors(), with_opt_vars=False)
    after = opt_state(runner)
    assert before["optimizer/iteration"] > 0
    for name in before:
        np.testing.assert_array_equal(before[name], after[name])


def test_continue_global_exports_and_imports_the_optimizer_state(plan: Plan,
                                                                 shard_runners: list[KerasRunner]) -> None:
    source = shard_runners[0]
    source.train_task(2, epochs=1, batch_size=32)
    exported = source.get_tensors(with_opt_vars=True)
    assert set(exported) == set(MODEL_NAMES) | set(source.optimizer_tensor_names())
    target = build_runner(plan, data_path="1")
    target.set_tensors(exported, with_opt_vars=True)
    for name, array in exported.items():
        np.testing.assert_array_equal(target.get_tensors(with_opt_vars=True)[name], array)
    # Identical weights and optimizer state give identical training.
    a = source.train_task(3, epochs=1, batch_size=32, with_opt_vars=True).tensors
    b = target.train_task(3, epochs=1, batch_size=32, with_opt_vars=True).tensors
    assert set(a) == set(exported)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], atol=1e-6)


def test_optimizer_tensors_are_loaded_all_or_nothing(plan: Plan, fresh: KerasRunner) -> None:
    runner = build_runner(plan, data_path="2")
    runner.train_task(0, epochs=1, batch_size=32)
    kept = opt_state(runner)
    runner.set_tensors(fresh.get_tensors(), with_opt_vars=True)  # a model-only file (init.pbuf): keep the state
    np.testing.assert_array_equal(opt_state(runner)["optimizer/iteration"], kept["optimizer/iteration"])
    partial = {**fresh.get_tensors(), "optimizer/iteration": np.float32(3)}
    with pytest.raises(FxError, match="tensor 'optimizer/conv1_kernel_momentum': missing"):
        runner.set_tensors(partial, with_opt_vars=True)


@pytest.mark.parametrize("epochs,batch_size", [(1, 64), (2, 100)])
def test_training_honours_epochs_and_batch_size(plan: Plan, fresh: KerasRunner, epochs: int,
                                                batch_size: int) -> None:
    runner = build_runner(plan, data_path="1")
    result = runner.train_task(0, epochs=epochs, batch_size=batch_size, metrics=["loss"])
    steps = epochs * math.ceil(runner.train_data_size() / batch_size)
    assert runner.get_tensors(with_opt_vars=True)["optimizer/iteration"] == steps
    assert set(result.metrics) == {"loss"} and result.metrics["loss"] > 0
    assert set(result.tensors) == set(MODEL_NAMES)


def test_metrics_are_named_by_the_task_kwargs(shard_runners: list[KerasRunner]) -> None:
    runner = shard_runners[1]
    both = runner.validate_task(0, batch_size=50, metrics=["accuracy", "loss"]).metrics
    assert set(both) == {"accuracy", "loss"} and 0.0 <= both["accuracy"] <= 1.0
    assert runner.validate_task(0, metrics=["acc"]).metrics == {"acc": both["accuracy"]}
    with pytest.raises(FxError, match=r"validation metric\(s\) \['f1'\]"):
        runner.validate_task(0, metrics=["f1"])


def test_tasks_without_data_say_how_to_give_it(fresh: KerasRunner) -> None:
    with pytest.raises(FxError, match="built without data") as err:
        fresh.train_task(0)
    assert err.value.hint and "plan/data.yaml" in err.value.hint
    assert fresh.train_data_size() == 0 and fresh.valid_data_size() == 0


def test_two_collaborators_three_rounds_reach_ninety_percent(plan: Plan) -> None:
    """FedAvg in-process with the template's own settings (tasks.train.kwargs, opt_treatment RESET)."""
    runners = [build_runner(plan, data_path=str(k)) for k in (1, 2)]
    train_kwargs = {k: v for k, v in plan.tasks["train"].kwargs.items() if k != "apply"}
    valid_kwargs = {k: v for k, v in plan.tasks["aggregated_model_validation"].kwargs.items() if k != "apply"}
    model = runners[0].get_tensors()
    history = []
    for round_num in range(plan.aggregator.rounds_to_train):
        updates = []
        for runner in runners:
            runner.set_tensors(model)
            runner.reset_optimizer()
            updates.append((runner.train_data_size(), runner.train_task(round_num, **train_kwargs).tensors))
        total = sum(n for n, _ in updates)
        model = {name: sum(n * t[name] for n, t in updates) / total for name in model}
        scores = []
        for runner in runners:
            runner.set_tensors(model)
            scores.append((runner.valid_data_size(), runner.validate_task(round_num, **valid_kwargs).metrics))
        history.append(sum(n * m["accuracy"] for n, m in scores) / sum(n for n, _ in scores))
    assert plan.aggregator.rounds_to_train == 3
    assert history[-1] >= 0.90, history
    assert history[1] >= 0.90, history  # also the model a federation validates at the start of its last round


def test_a_loader_without_arrays_is_refused_with_what_it_needs() -> None:
    with pytest.raises(FxError, match="has no arrays\\(\\) method") as err:
        KerasRunner(object())
    assert err.value.hint and "ArrayData" in err.value.hint
