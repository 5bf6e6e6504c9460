"""Running an OpenFL-style aggregation function (``call(local_tensors, db_iterator, ...)``) as fx's.

``OpenFLAggregation`` loads each collaborator's tensor (OpenFL's functions
take them all at once) with its normalised weight, and offers the tensor
database OpenFL would as ``db_iterator``: here the rows of the global model
the collaborators started from (tag ``model``, origin ``aggregator``).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from fx_cli.aggregation.base import AggregationFunction, Contribution, check_contributions, load_checked, \
    normalised_weights
from fx_cli.compat.openfl.utilities.types import LocalTensor
from fx_cli.errors import FxError


class OpenFLAggregation(AggregationFunction):
    """fx's aggregation interface over an OpenFL ``AggregationFunction`` instance."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def aggregate(self, tensor_name: str, base: np.ndarray, contributions: Sequence[Contribution],
                  round_num: int) -> np.ndarray:
        check_contributions(tensor_name, contributions, round_num)
        local = [LocalTensor(c.collaborator, load_checked(c, tensor_name, base.shape), w)
                 for c, w in zip(contributions, normalised_weights(contributions))]
        rows = [{"tensor_name": tensor_name, "origin": "aggregator", "round": round_num, "report": False,
                 "tags": ("model",), "nparray": base}]
        try:
            result = np.asarray(self.inner.call(local, iter(rows), tensor_name, round_num, ("trained",)))
        except Exception as err:  # the workspace's own code failed: say where
            raise FxError(f"aggregation function {type(self.inner).__name__} failed on tensor '{tensor_name}': "
                          f"{type(err).__name__}: {err}", "check its call() in the workspace's src/") from err
        if result.shape != base.shape:
            raise FxError(f"aggregation function {type(self.inner).__name__} returned shape {result.shape} for "
                          f"tensor '{tensor_name}' of shape {base.shape}", "return one tensor of the input shape")
        return result.astype(base.dtype, copy=False)

    def describe(self) -> str:
        return f"{type(self.inner).__name__} (OpenFL)"
