"""Weighted geometric median of the collaborators' tensors (smoothed Weiszfeld iterations)."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from fx_cli.aggregation.base import (AggregationFunction, Contribution, check_contributions, normalised_weights,
                                     to_base_dtype, work_dtype)
from fx_cli.aggregation.buffer import column_slices, stack_updates


class GeometricMedian(AggregationFunction):
    """The point minimising sum_i w_i * ||x_i - z|| over the flattened tensors of one name.

    Each tensor name is aggregated on its own (the interface is per tensor).
    Weiszfeld's algorithm from the weighted average: z <- sum(b_i x_i) / sum(b_i)
    with b_i = w_i / max(eps, ||x_i - z||); ``eps`` keeps a step finite when z
    lands on an update. Stops after ``maxiter`` steps or when the objective
    improves by less than ``ftol`` times its value. Updates are buffered like
    :class:`~fx_cli.aggregation.median.Median` (``spill_mb``, ``spill_dir``);
    z and the arithmetic are float64.
    """

    def __init__(self, maxiter: int = 100, eps: float = 1e-5, ftol: float = 1e-6, spill_mb: float = 256.0,
                 spill_dir: str | None = None) -> None:
        if maxiter < 0 or eps <= 0 or ftol < 0:
            raise ValueError("GeometricMedian needs maxiter >= 0, eps > 0 and ftol >= 0")
        self.maxiter = maxiter
        self.eps = eps
        self.ftol = ftol
        self.spill_mb = spill_mb
        self.spill_dir = spill_dir
        self.last_iterations = 0  # steps taken by the latest call, for logs and tests

    def aggregate(self, tensor_name: str, base: np.ndarray, contributions: Sequence[Contribution],
                  round_num: int) -> np.ndarray:
        check_contributions(tensor_name, contributions, round_num)
        stack = stack_updates(tensor_name, base.shape, work_dtype(base), contributions, self.spill_mb,
                              self.spill_dir)
        weights = np.asarray(normalised_weights(contributions))
        z = self._weiszfeld(stack, weights)
        del stack
        return to_base_dtype(z.reshape(base.shape), base)

    def _weiszfeld(self, stack: np.ndarray, weights: np.ndarray) -> np.ndarray:
        z = combine(stack, weights)
        objective = float(weights @ distances(stack, z))
        self.last_iterations = 0
        for _ in range(self.maxiter):
            coef = weights / np.maximum(self.eps, distances(stack, z))
            z = combine(stack, coef / coef.sum())
            self.last_iterations += 1
            new_objective = float(weights @ distances(stack, z))
            done = abs(objective - new_objective) <= self.ftol * new_objective or not math.isfinite(new_objective)
            objective = new_objective
            if done:
                break
        return z


def combine(stack: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """sum_i coef_i * row_i in float64, a column slice at a time."""
    out = np.empty(stack.shape[1], dtype=np.float64)
    for cols in column_slices(stack):
        out[cols] = coef @ np.asarray(stack[:, cols], dtype=np.float64)
    return out


def distances(stack: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Euclidean distance from each row to ``z``, accumulated a column slice at a time."""
    squared = np.zeros(stack.shape[0], dtype=np.float64)
    for cols in column_slices(stack):
        diff = np.asarray(stack[:, cols], dtype=np.float64) - z[cols]
        squared += np.einsum("ij,ij->i", diff, diff)
    return np.sqrt(squared)
