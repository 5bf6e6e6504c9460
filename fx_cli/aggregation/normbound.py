"""FedAvg with a bound on each update's norm: no collaborator can move the model further than the bound.

An update is ``tensor - base`` over the whole model. ``prepare`` measures each
collaborator's L2 norm (streaming, one tensor at a time); every update longer
than the bound is scaled down to it before the weighted average. The bound is
``max_norm``, or ``median_multiple`` times the round's median update norm
(the default), whichever is smaller when both are set.
"""
from __future__ import annotations

import logging
import math
import statistics
from typing import Sequence

import numpy as np

from fx_cli.aggregation.base import (AggregationFunction, Contribution, check_contributions, load_checked,
                                     normalised_weights, to_base_dtype, work_dtype)
from fx_cli.aggregation.krum import TensorUpdates
from fx_cli.errors import FxError
from fx_cli.plan.ranges import Range

log = logging.getLogger("fx.aggregator")


class NormBoundedAverage(AggregationFunction):
    """Weighted average of updates each clipped to an L2 norm bound."""

    SETTING_RANGES = {"max_norm": Range(0, 1e30, low_open=True, what="an L2 norm"),
                      "median_multiple": Range(1, 1e6, what="a factor")}

    def __init__(self, max_norm: float | None = None, median_multiple: float | None = 3.0) -> None:
        if max_norm is None and median_multiple is None:
            raise FxError("NormBoundedAverage needs max_norm, median_multiple or both",
                          "set tasks.<task>.aggregation_type.settings.median_multiple (e.g. 3)")
        self.max_norm = max_norm
        self.median_multiple = median_multiple
        self.scale: dict[str, float] = {}

    def prepare(self, tensors: TensorUpdates, round_num: int) -> None:
        """Each collaborator's update norm over the whole model, and the scale that bounds it."""
        squares: dict[str, float] = {}
        for tensor_name, base, contributions in tensors:
            for c in contributions:
                delta = load_checked(c, tensor_name, base.shape).astype(np.float64) - base
                squares[c.collaborator] = squares.get(c.collaborator, 0.0) + float(np.dot(delta.ravel(),
                                                                                          delta.ravel()))
        norms = {name: math.sqrt(sq) for name, sq in squares.items()}
        bound = self.bound(list(norms.values()))
        self.scale = {name: (bound / norm if norm > bound else 1.0) for name, norm in norms.items()}
        for name in sorted(n for n, s in self.scale.items() if s < 1.0):
            log.warning("round %d: the update of '%s' has norm %.4g, over the bound %.4g; scaled down to it",
                        round_num + 1, name, norms[name], bound)

    def bound(self, norms: list[float]) -> float:
        candidates = [self.max_norm] if self.max_norm is not None else []
        median = statistics.median_low(norms) if norms else 0.0
        if self.median_multiple is not None and median > 0:  # most updates empty: no relative bound to take
            candidates.append(self.median_multiple * median)
        return min(candidates) if candidates else math.inf

    def aggregate(self, tensor_name: str, base: np.ndarray, contributions: Sequence[Contribution],
                  round_num: int) -> np.ndarray:
        check_contributions(tensor_name, contributions, round_num)
        acc = np.zeros(base.shape, dtype=np.float64)
        for c, w in zip(contributions, normalised_weights(contributions)):
            delta = load_checked(c, tensor_name, base.shape).astype(np.float64) - base
            acc += w * self.scale.get(c.collaborator, 1.0) * delta
        return to_base_dtype((base + acc).astype(work_dtype(base)), base)

    def describe(self) -> str:
        return f"NormBoundedAverage(max_norm={self.max_norm}, median_multiple={self.median_multiple})"
