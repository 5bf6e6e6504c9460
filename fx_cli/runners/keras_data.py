"""Data loaders for the Keras runner: scikit-learn's digits (shipped) and a local MNIST file.

Each collaborator gets one shard of the training split and one shard of the
held-out validation split.  Validation shards partition the held-out set, so
the size-weighted average of the collaborators' validation accuracy equals the
accuracy on the whole held-out set: a saved model can be checked on its own.
With ``data_path=None`` (plan initialisation, model save) no data is loaded;
the loader then only describes the input shape and the number of classes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fx_cli.errors import FxError
from fx_cli.simulate.partition import Partition

MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
MNIST_KEYS = ("x_train", "y_train", "x_test", "y_test")


def parse_shard(value: str, count: int) -> int:
    """The 1-based shard number of a ``data.yaml`` value, checked against ``count``."""
    try:
        shard = int(value.strip())
    except ValueError:
        raise FxError(f"data path {value!r} is not a shard number",
                      "set the collaborator's line in plan/data.yaml to NAME,SHARD (1, 2, ...)") from None
    if not 1 <= shard <= count:
        raise FxError(f"shard {shard} is outside 1..{count} (data_loader.settings.collaborator_count)",
                      "use a shard number from 1 to collaborator_count in plan/data.yaml, "
                      "or raise collaborator_count in plan/plan.yaml")
    return shard


def take_shard(x: np.ndarray, y: np.ndarray, shard: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of shard ``shard`` (1-based) of ``count`` near-equal contiguous shards."""
    bounds = np.linspace(0, len(x), count + 1).astype(int)
    lo, hi = bounds[shard - 1], bounds[shard]
    return x[lo:hi], y[lo:hi]


class ArrayData:
    """One collaborator's train and validation arrays (images in [0, 1], integer labels)."""

    input_shape: tuple[int, ...] = (8, 8, 1)
    num_classes = 10

    def __init__(self, data_path: str | None, collaborator_count: int) -> None:
        if collaborator_count < 1:
            raise FxError(f"data_loader.settings.collaborator_count must be >= 1, got {collaborator_count}",
                          "set it to the number of collaborators in plan/plan.yaml")
        self.data_path = data_path
        self.collaborator_count = collaborator_count
        self.shard = 0
        self._arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    def _set_shard(self, shard: int, x_train: np.ndarray, y_train: np.ndarray,
                   x_valid: np.ndarray, y_valid: np.ndarray) -> None:
        self.shard = shard
        count = self.collaborator_count
        self._arrays = (*take_shard(x_train, y_train, shard, count), *take_shard(x_valid, y_valid, shard, count))

    def _set_partition(self, data_path: str, x_train: np.ndarray, y_train: np.ndarray,
                       x_valid: np.ndarray, y_valid: np.ndarray) -> None:
        """A simulated collaborator's rows: training rows by the partition, validation rows iid."""
        partition, index = Partition.from_data_path(data_path)
        self.shard = index + 1
        rows = partition.indices(y_train, index)
        held_out = Partition("iid", partition.count, partition.seed).indices(y_valid, index)
        self._arrays = (x_train[rows], y_train[rows], x_valid[held_out], y_valid[held_out])

    @classmethod
    def _split(cls, partition: Partition, y_train: np.ndarray, y_valid: np.ndarray, what: str) -> list[str]:
        partition.check(y_train, f"{what} training split")
        Partition("iid", partition.count, partition.seed).check(y_valid, f"{what} validation split")
        return [partition.data_path(i) for i in range(partition.count)]

    @classmethod
    def check_data_path(cls, data_path: str, workspace: Path, collaborator_count: int = 2, **_: Any) -> None:
        """Registration check (``fx_cli.runners.datapath``): a shard number in range, or a simulation path."""
        if Partition.is_data_path(data_path):
            Partition.from_data_path(data_path)
            return
        parse_shard(data_path.partition(",")[0], collaborator_count)

    @classmethod
    def suggest_data_path(cls, taken: list[str], collaborator_count: int = 2, **_: Any) -> str:
        """The first shard number no collaborator has yet."""
        from fx_cli.runners.datapath import next_free_number

        return next_free_number([t.partition(",")[0] for t in taken], collaborator_count)

    @property
    def has_data(self) -> bool:
        return self._arrays is not None

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(x_train, y_train, x_valid, y_valid)`` of this shard."""
        if self._arrays is None:
            raise FxError("this task runner was built without data (no data path)",
                          "give the collaborator a data path in plan/data.yaml, e.g. NAME,1")
        return self._arrays

    def train_size(self) -> int:
        return 0 if self._arrays is None else len(self._arrays[0])

    def valid_size(self) -> int:
        return 0 if self._arrays is None else len(self._arrays[2])


class DigitsData(ArrayData):
    """scikit-learn's 8x8 digits (1,797 images, shipped with the package; no download)."""

    input_shape = (8, 8, 1)

    def __init__(self, data_path: str | None = None, collaborator_count: int = 2,
                 valid_fraction: float = 0.2, seed: int = 0) -> None:
        super().__init__(data_path, collaborator_count)
        if not 0.0 < valid_fraction < 1.0:
            raise FxError(f"data_loader.settings.valid_fraction must be between 0 and 1, got {valid_fraction}",
                          "use e.g. 0.2 in plan/plan.yaml")
        if data_path is not None and Partition.is_data_path(data_path):
            self._set_partition(str(data_path), *digits_split(valid_fraction, seed))
        elif data_path is not None:
            shard = parse_shard(str(data_path), collaborator_count)
            self._set_shard(shard, *digits_split(valid_fraction, seed))

    @classmethod
    def simulation_split(cls, partition: Partition, valid_fraction: float = 0.2, seed: int = 0,
                         **settings: Any) -> list[str]:
        """The split hook of ``fx simulate`` (see ``fx_cli/simulate/partition.py``)."""
        _, y_train, _, y_valid = digits_split(valid_fraction, seed)
        return cls._split(partition, y_train, y_valid, "digits")


def digits_split(valid_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The fixed (seeded) train / held-out split of the digits, images scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    n_valid = int(round(len(x) * valid_fraction))
    valid, train = order[:n_valid], order[n_valid:]
    return x[train], y[train], x[valid], y[valid]


class MnistData(ArrayData):
    """MNIST from a local ``mnist.npz`` (Keras' format); its test split is the held-out set.

    ``data.yaml`` value: ``SHARD`` (file from ``mnist_path``) or ``SHARD,PATH``.
    """

    input_shape = (28, 28, 1)

    def __init__(self, data_path: str | None = None, collaborator_count: int = 2,
                 mnist_path: str = "data/mnist.npz") -> None:
        super().__init__(data_path, collaborator_count)
        self.mnist_path = Path(mnist_path)
        if data_path is not None and Partition.is_data_path(data_path):
            self._set_partition(str(data_path), *read_mnist(self.mnist_path))
        elif data_path is not None:
            shard_text, _, path_text = str(data_path).partition(",")
            shard = parse_shard(shard_text, collaborator_count)
            self.mnist_path = Path(path_text.strip() or mnist_path)
            self._set_shard(shard, *read_mnist(self.mnist_path))

    @classmethod
    def check_data_path(cls, data_path: str, workspace: Path, collaborator_count: int = 2,
                        mnist_path: str = "data/mnist.npz", **settings: Any) -> None:
        """Registration check: ``SHARD`` or ``SHARD,PATH``, and the MNIST file must be there (nothing is read)."""
        from fx_cli.runners.datapath import resolve_in

        if Partition.is_data_path(data_path):
            Partition.from_data_path(data_path)
            return
        shard_text, _, path_text = data_path.partition(",")
        parse_shard(shard_text, collaborator_count)
        path = resolve_in(workspace, path_text.strip() or mnist_path)
        if not path.is_file():
            raise FxError(f"MNIST file not found: {path}",
                          "put Keras' mnist.npz there first (fx downloads nothing), or register SHARD,PATH with "
                          "the file's path")

    @classmethod
    def simulation_split(cls, partition: Partition, mnist_path: str = "data/mnist.npz",
                         **settings: Any) -> list[str]:
        """The split hook of ``fx simulate`` (see ``fx_cli/simulate/partition.py``)."""
        _, y_train, _, y_valid = read_mnist(Path(mnist_path))
        return cls._split(partition, y_train, y_valid, f"MNIST ({mnist_path})")


def read_mnist(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``x_train, y_train, x_test, y_test`` from an ``mnist.npz``, images scaled to [0, 1]."""
    if not path.is_file():
        raise FxError(f"MNIST file not found: {path}",
                      f"download {MNIST_URL} (or run `python -c \"import keras; keras.datasets.mnist.load_data()\"` "
                      f"and copy ~/.keras/datasets/mnist.npz) to {path}, or set data.yaml to NAME,SHARD,PATH")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in MNIST_KEYS if k not in npz.files]
            if missing:
                raise FxError(f"{path}: not an MNIST file, missing arrays {missing}",
                              f"use Keras' mnist.npz from {MNIST_URL}")
            arrays = [npz[k] for k in MNIST_KEYS]
    except (OSError, ValueError) as err:
        raise FxError(f"{path}: cannot read the MNIST file: {err}", f"download it again from {MNIST_URL}") from None
    for images, labels, split in ((arrays[0], arrays[1], "train"), (arrays[2], arrays[3], "test")):
        if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels):
            raise FxError(f"{path}: x_{split} has shape {images.shape} for {len(labels)} labels; "
                          "expected (N, 28, 28) images with N labels", f"use Keras' mnist.npz from {MNIST_URL}")
    scale = np.float32(1.0 / 255.0)
    return (arrays[0].astype(np.float32)[..., None] * scale, arrays[1].astype(np.int64),
            arrays[2].astype(np.float32)[..., None] * scale, arrays[3].astype(np.int64))
