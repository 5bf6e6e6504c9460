"""keras/digits and keras/mnist: create, initialise (also from a .keras file), and the MNIST data path."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fx_cli import load_tensors
from fx_cli.errors import FxError
from fx_cli.plan import load_plan
from fx_cli.runners.build import build_runner
from fx_cli.runners.keras_runner import KerasRunner
from tests.keras_helpers import create_workspace, fx_in_process, write_tiny_mnist

pytestmark = pytest.mark.tensorflow  # Keras/TensorFlow or scikit-learn: the tensorflow extra

SHAPES = {
    "keras/digits": {"conv1/kernel": (3, 3, 1, 16), "conv1/bias": (16,), "dense1/kernel": (256, 64),
                     "dense1/bias": (64,), "output/kernel": (64, 10), "output/bias": (10,)},
    "keras/mnist": {"conv1/kernel": (3, 3, 1, 16), "conv1/bias": (16,), "conv2/kernel": (3, 3, 16, 32),
                    "conv2/bias": (32,), "dense1/kernel": (1568, 128), "dense1/bias": (128,),
                    "output/kernel": (128, 10), "output/bias": (10,)},
}


def initialize(ws: Path, *extra: str) -> tuple[int, str]:
    plan = ws / "plan"
    return fx_in_process("plan", "initialize", "-p", str(plan / "plan.yaml"), "-c", str(plan / "cols.yaml"),
                         "-d", str(plan / "data.yaml"), "-a", "localhost", *extra)


@pytest.fixture(scope="module")
def digits_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return create_workspace(tmp_path_factory.mktemp("tpl") / "digits", "keras/digits")


@pytest.mark.parametrize("template", sorted(SHAPES))
def test_template_init_file_round_trips_to_a_fresh_runners_arrays(tmp_path: Path, template: str) -> None:
    ws = create_workspace(tmp_path / "ws", template)
    assert (ws / ".workspace").read_text().strip().endswith(template)
    init = load_tensors(str(ws / "save" / "init.pbuf"))
    fresh = build_runner(load_plan(ws / "plan" / "plan.yaml")).get_tensors()
    assert list(init) == list(fresh) == list(SHAPES[template])
    for name, array in fresh.items():
        assert init[name].shape == SHAPES[template][name]
        np.testing.assert_array_equal(init[name], array)


def test_keras_digits_is_the_default_template_with_three_rounds(tmp_path: Path) -> None:
    code, out = fx_in_process("workspace", "create", "--prefix", str(tmp_path / "ws"))
    assert code == 0, out
    plan = load_plan(tmp_path / "ws" / "plan" / "plan.yaml")
    assert plan.template("task_runner") == "fx_cli.runners.keras_runner.KerasRunner"
    assert plan.template("data_loader") == "fx_cli.runners.keras_data.DigitsData"
    assert plan.aggregator.rounds_to_train == 3
    assert plan.settings("data_loader")["collaborator_count"] == 2


def test_initialize_from_a_keras_file_takes_its_weights(digits_ws: Path, tmp_path: Path) -> None:
    runner = build_runner(load_plan(digits_ws / "plan" / "plan.yaml"))
    shifted = {k: v - 0.125 for k, v in runner.get_tensors().items()}
    runner.set_tensors(shifted)
    native = runner.save_native(str(tmp_path / "start"))
    assert native.endswith("start.keras")
    code, out = initialize(digits_ws, "-i", native)
    assert code == 0, out
    init = load_tensors(str(digits_ws / "save" / "init.pbuf"))
    for name, array in shifted.items():
        np.testing.assert_array_equal(init[name], array)


def test_initialize_from_a_keras_file_of_another_model_names_the_tensor(digits_ws: Path, tmp_path: Path) -> None:
    plan = load_plan(digits_ws / "plan" / "plan.yaml")
    other = KerasRunner(build_runner(plan).data_loader, conv_filters=[8])
    path = other.save_native(str(tmp_path / "other.keras"))
    code, out = initialize(digits_ws, "-i", path)
    assert code == 1
    assert "other.keras does not fit the plan's model" in out
    assert "tensor 'conv1/kernel': the model expects shape (3, 3, 1, 16), found (3, 3, 1, 8)" in out


def test_initialize_from_a_file_that_is_not_a_keras_model_is_refused(digits_ws: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"definitely not a zip")
    code, out = initialize(digits_ws, "-i", str(junk))
    assert code == 1 and "cannot read it as a Keras model" in out


def test_mnist_template_without_the_file_explains_how_to_get_it(tmp_path: Path) -> None:
    ws = create_workspace(tmp_path / "ws", "keras/mnist", initialize=False)
    plan = load_plan(ws / "plan" / "plan.yaml")
    with pytest.raises(FxError) as err:
        build_runner(plan, data_path="1")
    assert "MNIST file not found: data/mnist.npz" in err.value.message
    assert err.value.hint and "storage.googleapis.com" in err.value.hint


def test_mnist_template_trains_and_validates_on_a_local_file(tmp_path: Path) -> None:
    ws = create_workspace(tmp_path / "ws", "keras/mnist", initialize=False)
    write_tiny_mnist(tmp_path / "tiny.npz", n_train=64, n_test=16)
    runner = build_runner(load_plan(ws / "plan" / "plan.yaml"), data_path=f"2,{tmp_path / 'tiny.npz'}")
    assert (runner.train_data_size(), runner.valid_data_size()) == (32, 8)
    before = runner.get_tensors()["conv2/kernel"]
    result = runner.train_task(0, epochs=1, batch_size=16, metrics=["loss"])
    assert result.metrics["loss"] > 0 and not np.array_equal(result.tensors["conv2/kernel"], before)
    assert set(runner.validate_task(0, metrics=["accuracy"]).metrics) == {"accuracy"}
