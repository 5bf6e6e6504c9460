"""A framework-free runner with a model of any size and deterministic "training".

Each collaborator's shard ``k`` (its ``data.yaml`` value) pulls the weights
towards a target that depends on ``k``; sample counts differ per shard, so
weighted averaging is visible in the result.  Everything is seeded and exact,
which makes it the runner for fast tests and benchmarks at any model size.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from fx_cli.errors import FxError
from fx_cli.plan.ranges import Range, count
from fx_cli.runners.base import TaskResult, TaskRunner
from fx_cli.simulate.partition import Partition


SLICE = 1 << 20  # elements per slice of the loss computation


class SyntheticData:
    """Shard ``k`` has ``samples_per_shard * k`` training and half as many validation samples.

    In a simulation with ``--partition``, collaborator ``i`` is shard ``i + 1`` and its training size is its
    share of ``samples_per_shard * N`` virtual samples (labels ``j % 10``) under the partition scheme.
    """

    SETTING_RANGES = {"samples_per_shard": count(10**9)}

    def __init__(self, data_path: str | None = None, samples_per_shard: int = 100) -> None:
        self.samples_per_shard = samples_per_shard
        self.size: int | None = None
        if data_path is not None and Partition.is_data_path(data_path):
            partition, index = Partition.from_data_path(str(data_path))
            self.shard = index + 1
            self.size = len(partition.indices(_virtual_labels(partition, samples_per_shard), index))
        else:
            self.shard = _shard_index(data_path)

    @classmethod
    def simulation_split(cls, partition: Partition, samples_per_shard: int = 100) -> list[str]:
        """The split hook of ``fx simulate`` (see ``fx_cli/simulate/partition.py``)."""
        partition.check(_virtual_labels(partition, samples_per_shard), "synthetic data")
        return [partition.data_path(i) for i in range(partition.count)]

    @classmethod
    def check_data_path(cls, data_path: str, workspace: Path, **_: Any) -> None:
        """Registration check (``fx_cli.runners.datapath``): a shard number, or a simulation path."""
        if Partition.is_data_path(data_path):
            Partition.from_data_path(data_path)
        else:
            _shard_index(data_path)

    @classmethod
    def suggest_data_path(cls, taken: list[str], **_: Any) -> str:
        """The first shard number no collaborator has yet."""
        from fx_cli.runners.datapath import next_free_number

        return next_free_number(taken)

    def train_size(self) -> int:
        if self.size is not None:
            return self.size
        return self.samples_per_shard * max(self.shard, 1)

    def valid_size(self) -> int:
        return max(self.train_size() // 2, 1)


@functools.lru_cache(maxsize=4)
def _virtual_labels(partition: Partition, samples_per_shard: int) -> np.ndarray:
    labels = np.arange(samples_per_shard * partition.count) % 10
    labels.flags.writeable = False
    return labels


def _shard_index(data_path: str | None) -> int:
    if data_path is None:
        return 0
    try:
        shard = int(str(data_path).strip())
    except ValueError:
        raise FxError(f"synthetic data path must be a shard number like 1, got {data_path!r}",
                      "set the collaborator's line in plan/data.yaml to NAME,SHARD_NUMBER") from None
    if shard < 1:
        raise FxError(f"synthetic shard number must be >= 1, got {shard}", "use 1, 2, 3, ... in plan/data.yaml")
    return shard


def tensor_sizes(num_params: int, num_tensors: int) -> list[int]:
    """Split ``num_params`` over ``num_tensors`` as evenly as possible."""
    base, extra = divmod(num_params, num_tensors)
    return [base + (1 if i < extra else 0) for i in range(num_tensors)]


class SyntheticRunner(TaskRunner):
    """``num_params`` float32 values over ``num_tensors`` tensors named ``w0``, ``w1``, ..."""

    SETTING_RANGES = {"num_params": count(2**34), "num_tensors": count(100_000),
                      "learning_rate": Range(0, 10, what="a step size"), "seed": count(2**63 - 1, low=0)}

    def __init__(self, data_loader: SyntheticData | None = None, num_params: int = 1000,
                 num_tensors: int = 4, learning_rate: float = 0.5, seed: int = 0) -> None:
        super().__init__(data_loader)
        if num_tensors < 1 or num_params < num_tensors:
            raise FxError(f"synthetic model needs num_params >= num_tensors >= 1 (got {num_params}, {num_tensors})",
                          "fix task_runner.settings in plan/plan.yaml")
        self.learning_rate = learning_rate
        rng = np.random.default_rng(seed)
        self.weights = {f"w{i}": rng.standard_normal(n, dtype=np.float32)
                        for i, n in enumerate(tensor_sizes(num_params, num_tensors))}
        # The loss of the weights as training left them: the locally tuned validation that follows reuses it.
        # Forgotten whenever the weights may change (set_tensors, tensor_buffers, get_tensors).
        self._trained_loss: float | None = None
        self._slice_buffers: tuple[np.ndarray, np.ndarray] | None = None

    def _target(self, index: int) -> np.float32:
        shard = self.data_loader.shard if self.data_loader else 0
        target: np.float32 = np.float32((shard + 1) * 0.1 + index * 0.01)
        return target

    def get_tensors(self, with_opt_vars: bool = False) -> dict[str, np.ndarray]:
        self._trained_loss = None  # the caller holds the arrays themselves
        return dict(self.weights)

    def set_tensors(self, tensors: Mapping[str, np.ndarray], with_opt_vars: bool = False) -> None:
        missing = set(self.weights) - set(tensors)
        unknown = set(tensors) - set(self.weights)
        if missing or unknown:
            raise FxError(f"synthetic model tensors do not match: missing {sorted(missing)}, unknown {sorted(unknown)}",
                          "the model file was made for another plan; check task_runner.settings")
        for name, array in tensors.items():
            if array.shape != self.weights[name].shape:
                raise FxError(f"tensor '{name}': shape {array.shape} does not fit the model's {self.weights[name].shape}",
                              "the model file was made for another plan; check num_params/num_tensors")
        self._trained_loss = None
        for name, array in tensors.items():
            own = self.weights[name]
            if not (isinstance(array, np.ndarray) and array.ctypes.data == own.ctypes.data):
                np.copyto(own, array, casting="unsafe")  # into the model's own arrays: no second model in memory

    def tensor_buffers(self) -> dict[str, np.ndarray]:
        self._trained_loss = None  # the next model is written into them
        return dict(self.weights)

    def _buffers(self) -> tuple[np.ndarray, np.ndarray]:
        """Scratch for one slice: float32 and float64, allocated once (no new pages per pass)."""
        if self._slice_buffers is None:
            size = min(SLICE, max(w.size for w in self.weights.values()))
            self._slice_buffers = (np.empty(size, np.float32), np.empty(size, np.float64))
        return self._slice_buffers

    def _slice_loss(self, w: np.ndarray, target: np.float32) -> float:
        """Sum of squared differences of one slice, in float64 (the float32 difference, widened)."""
        b32, b64 = self._buffers()
        diff, wide = b32[:w.size], b64[:w.size]
        np.subtract(w, target, out=diff)
        np.square(diff, out=wide, dtype=np.float64)
        return float(wide.sum())

    def _loss(self) -> float:
        total = 0.0
        for i, w in enumerate(self.weights.values()):
            for start in range(0, w.size, SLICE):  # float64 a slice at a time, not a float64 copy of the model
                total += self._slice_loss(w[start:start + SLICE], self._target(i))
        return total / sum(w.size for w in self.weights.values())

    def train_task(self, round_num: int, epochs: int = 1, **kwargs: Any) -> TaskResult:
        """Each epoch moves every weight ``learning_rate`` of the way to its target, in float32:
        ``w += lr * (target - w)``, a slice at a time; the last epoch also sums the loss of each slice it
        leaves (one pass over the model, not two; the same slices and sums as ``_loss``)."""
        lr = np.float32(self.learning_rate)
        step = self._buffers()[0]
        total = 0.0
        epochs = int(epochs)
        for epoch in range(epochs):
            last = epoch == epochs - 1
            for i, w in enumerate(self.weights.values()):
                target = self._target(i)
                for start in range(0, w.size, SLICE):
                    part = w[start:start + SLICE]
                    np.subtract(target, part, out=step[:part.size])
                    step[:part.size] *= lr
                    part += step[:part.size]
                    if last:
                        total += self._slice_loss(part, target)
        loss = total / sum(w.size for w in self.weights.values()) if epochs > 0 else self._loss()
        self._trained_loss = loss
        return TaskResult({"loss": loss}, dict(self.weights))

    def validate_task(self, round_num: int, **kwargs: Any) -> TaskResult:
        loss = self._trained_loss if self._trained_loss is not None else self._loss()
        return TaskResult({"accuracy": 1.0 / (1.0 + loss), "loss": loss})
