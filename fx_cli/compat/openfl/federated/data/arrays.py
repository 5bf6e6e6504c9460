"""Shared by ``KerasDataLoader`` and ``PyTorchDataLoader``: in-memory arrays served in shuffled batches."""
from __future__ import annotations

import math
from typing import Any, Iterator

import numpy as np

from .loader import DataLoader


class ArrayDataLoader(DataLoader):
    """``X_train``/``y_train``/``X_valid``/``y_valid`` arrays set by the subclass, batches of ``batch_size``."""

    def __init__(self, batch_size: int, random_seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batch_size = batch_size
        self.random_seed = random_seed
        self._rng = np.random.default_rng(random_seed)  # seeded: the same sequence of shuffles in every run
        self.X_train: Any = None
        self.y_train: Any = None
        self.X_valid: Any = None
        self.y_valid: Any = None

    def get_feature_shape(self) -> Any:
        return self.X_train[0].shape

    def get_train_loader(self, batch_size: int | None = None, num_batches: int | None = None,
                         **kwargs: Any) -> Iterator[tuple[Any, Any]]:
        return self._batches(self.X_train, self.y_train, batch_size, num_batches)

    def get_valid_loader(self, batch_size: int | None = None) -> Iterator[tuple[Any, Any]]:
        return self._batches(self.X_valid, self.y_valid, batch_size, None)

    def get_train_data_size(self) -> int:
        return int(self.X_train.shape[0])

    def get_valid_data_size(self) -> int:
        return int(self.X_valid.shape[0])

    def _batches(self, x: Any, y: Any, batch_size: int | None, num_batches: int | None) -> Iterator[tuple[Any, Any]]:
        size = int(batch_size or self.batch_size)
        order = self._rng.permutation(len(x))
        count = num_batches if num_batches is not None else math.ceil(len(x) / size)
        for i in range(count):
            chosen = order[i * size:(i + 1) * size]
            if len(chosen) == 0:
                return
            yield x[chosen], y[chosen]
