"""Coordinate-wise trimmed mean: drop the largest and smallest values of each element, average the rest."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from fx_cli.aggregation.base import AggregationFunction, Contribution, check_contributions, to_base_dtype, work_dtype
from fx_cli.aggregation.buffer import column_slices, stack_updates
from fx_cli.errors import FxError
from fx_cli.plan.ranges import Range, count


class TrimmedMean(AggregationFunction):
    """Per element, sort the collaborators' values, drop ``trim`` of them at each end and average the rest.

    ``trim`` is ``floor(trim_ratio * n)`` for ``n`` updates (at least ``min_trim``), so up to that many
    collaborators per side can send anything without moving the result beyond the honest values.
    Unweighted: data sizes are self-reported. With too few updates to trim (``n <= 2 * trim``), the
    round's result is the coordinate-wise median. Buffers every update of one tensor (see ``Median``).
    """

    SETTING_RANGES = {"trim_ratio": Range(0, 0.5, what="a fraction below"), "min_trim": count(1_000, low=0),
                      "spill_mb": Range(0, 1e7, low_open=True, what="MiB")}

    def __init__(self, trim_ratio: float = 0.1, min_trim: int = 1, spill_mb: float = 256.0,
                 spill_dir: str | None = None) -> None:
        if not 0 <= trim_ratio < 0.5:
            raise FxError(f"TrimmedMean: trim_ratio must be in [0, 0.5), got {trim_ratio}",
                          "set tasks.<task>.aggregation_type.settings.trim_ratio to e.g. 0.1")
        self.trim_ratio = trim_ratio
        self.min_trim = min_trim
        self.spill_mb = spill_mb
        self.spill_dir = spill_dir

    def trim_for(self, n: int) -> int:
        return max(self.min_trim, math.floor(self.trim_ratio * n))

    def aggregate(self, tensor_name: str, base: np.ndarray, contributions: Sequence[Contribution],
                  round_num: int) -> np.ndarray:
        check_contributions(tensor_name, contributions, round_num)
        dtype = work_dtype(base)
        stack = stack_updates(tensor_name, base.shape, dtype, contributions, self.spill_mb, self.spill_dir)
        n, trim = len(contributions), self.trim_for(len(contributions))
        out = np.empty(stack.shape[1], dtype=dtype)
        for cols in column_slices(stack):
            block = np.sort(np.array(stack[:, cols]), axis=0)
            out[cols] = np.median(block, axis=0) if n <= 2 * trim else block[trim:n - trim].mean(axis=0)
        del stack
        return to_base_dtype(out.reshape(base.shape), base)

    def describe(self) -> str:
        return f"TrimmedMean(trim_ratio={self.trim_ratio:g}, min_trim={self.min_trim})"
