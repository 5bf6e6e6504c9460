"""Coordinate-wise median of the collaborators' tensors (robust to a minority of outliers)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from fx_cli.aggregation.base import (AggregationFunction, Contribution, check_contributions, normalised_weights,
                                     to_base_dtype, work_dtype)
from fx_cli.aggregation.buffer import column_slices, stack_updates

# Cumulative weights within this of 1/2 count as exactly half (float rounding of normalised weights).
_HALF_TOL = 1e-9


class Median(AggregationFunction):
    """Element-wise median over collaborators.

    Unweighted by default, as a robust aggregator should be (data sizes are
    self-reported, so weighting would let one collaborator claim the median);
    ``weighted: true`` takes the weighted median instead: the value where the
    cumulative weight reaches 1/2, averaging the two neighbours on an exact tie,
    so equal weights give ``numpy.median``. A NaN in any update makes that
    element NaN. Needs every update of the tensor at once: they are buffered,
    in memory up to ``spill_mb`` MiB and in a temporary file beyond.
    """

    def __init__(self, weighted: bool = False, spill_mb: float = 256.0, spill_dir: str | None = None) -> None:
        self.weighted = weighted
        self.spill_mb = spill_mb
        self.spill_dir = spill_dir

    def aggregate(self, tensor_name: str, base: np.ndarray, contributions: Sequence[Contribution],
                  round_num: int) -> np.ndarray:
        check_contributions(tensor_name, contributions, round_num)
        dtype = work_dtype(base)
        stack = stack_updates(tensor_name, base.shape, dtype, contributions, self.spill_mb, self.spill_dir)
        weights = np.asarray(normalised_weights(contributions))
        out = np.empty(stack.shape[1], dtype=dtype)
        for cols in column_slices(stack):
            block = np.array(stack[:, cols])
            out[cols] = weighted_median(block, weights) if self.weighted else np.median(block, axis=0)
        del stack
        return to_base_dtype(out.reshape(base.shape), base)


def weighted_median(block: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per-column weighted median of ``block`` (rows: collaborators) with row ``weights`` summing to 1."""
    order = np.argsort(block, axis=0, kind="stable")
    ranked = np.take_along_axis(block, order, axis=0)
    cumulative = np.cumsum(weights[order], axis=0)
    # lower: first rank reaching half the weight; upper: first rank passing it. They differ only on
    # an exact tie, where the median is their midpoint (zero-weight ranks in between are skipped).
    lower = np.argmax(cumulative >= 0.5 - _HALF_TOL, axis=0)
    upper = np.argmax(cumulative > 0.5 + _HALF_TOL, axis=0)
    cols = np.arange(block.shape[1])
    result: np.ndarray = (ranked[lower, cols] + ranked[upper, cols]) / 2
    result[np.isnan(block).any(axis=0)] = np.nan
    return result
