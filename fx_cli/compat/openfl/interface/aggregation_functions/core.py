"""OpenFL 1.9's aggregation-function base class (and its weighted average, as an example of ``call``)."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Iterable, Sequence

import numpy as np

from ...utilities.types import LocalTensor


class AggregationFunction(ABC):
    """Subclass it and implement ``call``; ``local_tensors`` carry normalised weights."""

    def __init__(self) -> None:
        self._privileged = False

    @abstractmethod
    def call(self, local_tensors: Sequence[LocalTensor], db_iterator: Iterable[dict[str, Any]], tensor_name: str,
             fl_round: int, tags: tuple[str, ...]) -> Any:
        """The aggregated tensor of ``tensor_name`` for round ``fl_round``."""

    def __call__(self, local_tensors: Sequence[LocalTensor], db_iterator: Iterable[dict[str, Any]],
                 tensor_name: str, fl_round: int, tags: tuple[str, ...]) -> Any:
        return self.call(local_tensors, db_iterator, tensor_name, fl_round, tags)


class WeightedAverage(AggregationFunction):
    """Sum of weight * tensor."""

    def call(self, local_tensors: Sequence[LocalTensor], db_iterator: Iterable[dict[str, Any]], tensor_name: str,
             fl_round: int, tags: tuple[str, ...]) -> Any:
        tensors = [np.asarray(t.tensor) for t in local_tensors]
        return np.average(tensors, weights=[t.weight for t in local_tensors], axis=0)
