"""Data loaders of the Keras runner: digits shards and the local MNIST file. No TensorFlow needed."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fx_cli.errors import FxError
from fx_cli.runners.keras_data import MNIST_URL, DigitsData, MnistData, digits_split
from tests.keras_helpers import write_tiny_mnist

pytestmark = pytest.mark.tensorflow  # Keras/TensorFlow or scikit-learn: the tensorflow extra


def rows(x: np.ndarray) -> set[bytes]:
    return {r.tobytes() for r in x}


def test_digits_shards_partition_the_fixed_train_and_held_out_splits() -> None:
    x_train, _, x_valid, _ = digits_split(0.2, 0)
    shards = [DigitsData(str(k), collaborator_count=3).arrays() for k in (1, 2, 3)]
    assert sum(len(s[0]) for s in shards) == len(x_train) == 1797 - 359
    assert sum(len(s[2]) for s in shards) == len(x_valid) == 359
    assert set().union(*(rows(s[2]) for s in shards)) == rows(x_valid)
    assert not rows(shards[0][0]) & rows(shards[1][0])
    assert not rows(x_train) & rows(x_valid)  # held-out images never reach training
    x, y = shards[0][0], shards[0][1]
    assert x.shape[1:] == (8, 8, 1) and x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    assert len(set(y.tolist())) == 10


def test_digits_split_is_the_same_every_time() -> None:
    a, b = DigitsData("2"), DigitsData("2")
    for left, right in zip(a.arrays(), b.arrays()):
        np.testing.assert_array_equal(left, right)
    assert a.train_size() == len(a.arrays()[0]) and a.valid_size() == len(a.arrays()[2])


def test_loader_without_data_path_loads_nothing_and_describes_the_input() -> None:
    loader = DigitsData(None)
    assert loader.train_size() == 0 and loader.valid_size() == 0 and not loader.has_data
    assert loader.input_shape == (8, 8, 1) and loader.num_classes == 10
    assert MnistData(None, mnist_path="/nonexistent/mnist.npz").input_shape == (28, 28, 1)


@pytest.mark.parametrize("value,pattern", [("3", r"shard 3 is outside 1\.\.2"), ("0", "outside"),
                                           ("first", "not a shard number")])
def test_bad_shard_values_are_refused_with_a_data_yaml_hint(value: str, pattern: str) -> None:
    with pytest.raises(FxError, match=pattern) as err:
        DigitsData(value, collaborator_count=2)
    assert err.value.hint and "data.yaml" in err.value.hint


def test_bad_loader_settings_are_refused() -> None:
    with pytest.raises(FxError, match="valid_fraction"):
        DigitsData("1", valid_fraction=1.5)
    with pytest.raises(FxError, match="collaborator_count"):
        DigitsData("1", collaborator_count=0)


def test_mnist_loader_reads_scales_and_shards_a_local_file(tmp_path: Path) -> None:
    path = tmp_path / "mnist.npz"
    write_tiny_mnist(path)
    first = MnistData("1", collaborator_count=2, mnist_path=str(path))
    second = MnistData(f"2,{path}", collaborator_count=2, mnist_path="/not/used.npz")
    assert (first.train_size(), first.valid_size(), second.train_size(), second.valid_size()) == (20, 5, 20, 5)
    x, y, xv, _ = first.arrays()
    raw = np.load(path)
    assert x.shape == (20, 28, 28, 1) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_allclose(x[..., 0], raw["x_train"][:20] / 255.0, rtol=1e-6)
    np.testing.assert_allclose(second.arrays()[2][..., 0], raw["x_test"][5:] / 255.0, rtol=1e-6)


def test_missing_mnist_file_says_where_to_get_it(tmp_path: Path) -> None:
    missing = tmp_path / "data" / "mnist.npz"
    with pytest.raises(FxError) as err:
        MnistData("1", mnist_path=str(missing))
    assert str(missing) in err.value.message
    assert err.value.hint and MNIST_URL in err.value.hint and "keras.datasets.mnist" in err.value.hint


def test_npz_that_is_not_mnist_is_refused_naming_the_problem(tmp_path: Path) -> None:
    wrong_keys = tmp_path / "other.npz"
    np.savez(wrong_keys, x=np.zeros(3))
    with pytest.raises(FxError, match=r"missing arrays \['x_train'"):
        MnistData(f"1,{wrong_keys}")
    wrong_shape = tmp_path / "shape.npz"
    np.savez(wrong_shape, x_train=np.zeros((4, 8, 8)), y_train=np.zeros(4), x_test=np.zeros((2, 28, 28)),
             y_test=np.zeros(2))
    with pytest.raises(FxError, match=r"x_train has shape \(4, 8, 8\)"):
        MnistData(f"1,{wrong_shape}")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(FxError, match="cannot read the MNIST file"):
        MnistData(f"1,{garbage}")


def test_validating_a_keras_plan_imports_no_tensorflow(tmp_path: Path) -> None:
    """Plan validation resolves the runner classes; their modules must not pull TensorFlow in."""
    script = ("import sys, os; os.environ['FQDN']='localhost'\n"
              "from fx_cli.workspace.create import create_workspace\n"
              "from fx_cli.plan import load_plan\n"
              f"ws = create_workspace(__import__('pathlib').Path({str(tmp_path / 'ws')!r}), 'keras/digits')\n"
              "plan = load_plan(ws.path / 'plan' / 'plan.yaml')\n"
              "import fx_cli.runners.keras_runner, fx_cli.runners.keras_data, fx_cli.runners.export\n"
              "bad = [m for m in ('tensorflow', 'keras', 'sklearn') if m in sys.modules]\n"
              "assert not bad, bad\nprint('clean')\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "clean" in proc.stdout, proc.stderr[-2000:]
