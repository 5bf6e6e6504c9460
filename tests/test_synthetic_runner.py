"""The synthetic runner's one-pass training and its remembered loss give exactly the numbers of the plain
formulas, and the remembered loss is forgotten whenever the weights may have changed."""
from __future__ import annotations

import numpy as np
import pytest

from fx_cli.runners.synthetic import SLICE, SyntheticData, SyntheticRunner


def plain_loss(runner: SyntheticRunner) -> float:
    """The loss as first written: a float64 square of each slice's float32 difference, summed slice by slice."""
    total = 0.0
    for i, w in enumerate(runner.weights.values()):
        for start in range(0, w.size, SLICE):
            total += float(np.square(w[start:start + SLICE] - runner._target(i), dtype=np.float64).sum())
    return total / sum(w.size for w in runner.weights.values())


def plain_step(weights: dict[str, np.ndarray], runner: SyntheticRunner, lr: float) -> dict[str, np.ndarray]:
    out = {}
    for i, (name, w) in enumerate(weights.items()):
        step = runner._target(i) - w
        step *= np.float32(lr)
        out[name] = w + step
    return out


@pytest.mark.parametrize("num_params", [10, 3 * SLICE + 17])
def test_training_and_its_loss_match_the_plain_formulas_bit_for_bit(num_params: int) -> None:
    runner = SyntheticRunner(SyntheticData("2"), num_params=num_params, num_tensors=3, learning_rate=0.3)
    before = {k: v.copy() for k, v in runner.weights.items()}
    assert runner.validate_task(1).metrics["loss"] == plain_loss(runner)
    result = runner.train_task(1, epochs=2)
    expected = plain_step(plain_step(before, runner, 0.3), runner, 0.3)
    for name, w in runner.weights.items():
        np.testing.assert_array_equal(w, expected[name])
    assert result.metrics["loss"] == plain_loss(runner)
    assert runner.validate_task(1).metrics["loss"] == result.metrics["loss"]


def test_the_remembered_loss_is_forgotten_when_the_weights_may_change() -> None:
    runner = SyntheticRunner(SyntheticData("1"), num_params=1000, num_tensors=2)
    trained = runner.train_task(1).metrics["loss"]
    # New weights set from outside.
    runner.set_tensors({k: np.zeros_like(v) for k, v in runner.weights.items()})
    assert runner.validate_task(1).metrics["loss"] == plain_loss(runner) != trained
    # Weights written in place through the download buffers.
    trained = runner.train_task(1).metrics["loss"]
    for buffer in runner.tensor_buffers().values():
        buffer[:] = 5.0
    assert runner.validate_task(1).metrics["loss"] == plain_loss(runner) != trained
    # Arrays handed out to a caller that could change them.
    trained = runner.train_task(1).metrics["loss"]
    for array in runner.get_tensors().values():
        array += 1.0
    assert runner.validate_task(1).metrics["loss"] == plain_loss(runner) != trained
