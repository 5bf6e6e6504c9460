"""The Python API: ``fx_cli.get_model``, ``load_tensors`` and ``save_tensors``, used in-process."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import fx_cli
from fx_cli.errors import FxError
from tests.keras_helpers import create_workspace, held_out_set

pytestmark = pytest.mark.tensorflow  # Keras/TensorFlow or scikit-learn: the tensorflow extra


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A digits workspace whose save/last.pbuf is the init model shifted, so it differs from a fresh build."""
    ws = create_workspace(tmp_path_factory.mktemp("api") / "ws", "keras/digits")
    init = fx_cli.load_tensors(str(ws / "save" / "init.pbuf"))
    fx_cli.save_tensors(str(ws / "save" / "last.pbuf"), {k: v * 0.5 + 0.01 for k, v in init.items()}, round_number=3)
    return ws


def test_get_model_returns_the_runner_with_the_files_weights(workspace: Path) -> None:
    runner = fx_cli.get_model(plan=str(workspace / "plan" / "plan.yaml"), model=str(workspace / "save" / "last.pbuf"))
    expected = fx_cli.load_tensors(str(workspace / "save" / "last.pbuf"))
    got = runner.get_tensors()
    assert list(got) == list(expected)
    for name, array in expected.items():
        np.testing.assert_array_equal(got[name], array)
    native = dict(zip([f"{layer.name}/{w.name}" for layer in runner.model.layers for w in layer.weights],
                      runner.model.get_weights()))
    np.testing.assert_array_equal(native["dense1/kernel"], expected["dense1/kernel"])


def test_get_model_gives_a_native_keras_model_ready_to_predict_and_evaluate(workspace: Path) -> None:
    import keras

    runner = fx_cli.get_model(plan=str(workspace / "plan" / "plan.yaml"), model="save/last.pbuf")
    assert isinstance(runner.model, keras.Model)
    x, y = held_out_set(workspace)
    probabilities = runner.model.predict(x, verbose=0)
    assert probabilities.shape == (len(x), 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    scores = runner.model.evaluate(x, y, verbose=0, return_dict=True)
    assert scores["accuracy"] == pytest.approx(float(np.mean(probabilities.argmax(axis=1) == y)), abs=1e-6)


def test_get_model_with_a_file_for_another_model_names_the_tensor(workspace: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.pbuf"
    fx_cli.save_tensors(str(other), {"w0": np.zeros(3, np.float32)})
    with pytest.raises(FxError) as err:
        fx_cli.get_model(plan=str(workspace / "plan" / "plan.yaml"), model=str(other))
    assert "tensor 'conv1/kernel': missing" in err.value.message
    assert "tensor 'w0': unknown to the model" in err.value.message


def test_save_and_load_tensors_round_trip(tmp_path: Path) -> None:
    tensors = {"a/kernel": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.float32(2.5)}
    fx_cli.save_tensors(str(tmp_path / "m.pbuf"), tensors, round_number=4)
    back = fx_cli.load_tensors(str(tmp_path / "m.pbuf"))
    assert list(back) == list(tensors)
    np.testing.assert_array_equal(back["a/kernel"], tensors["a/kernel"])
    assert back["b"].shape == () and float(back["b"]) == 2.5
