"""Krum and multi-Krum (Blanchard et al., 2017): keep the updates closest to their neighbours.

Each update's score is the sum of squared distances to its ``n - f - 2`` nearest
other updates, over the whole model (all tensors). Krum keeps the one update
with the lowest score; multi-Krum keeps the ``m`` lowest and averages them.
Distances need every update of the whole model: ``prepare`` streams the model
once, one tensor at a time (all updates of that tensor in memory), and fills
the ``n x n`` distance matrix; ``aggregate`` then averages the kept updates.
Unweighted: data sizes are self-reported.
"""
from __future__ import annotations

import logging
from typing import Iterable, Sequence

import numpy as np

from fx_cli.aggregation.base import (AggregationFunction, Contribution, check_contributions, load_checked,
                                     to_base_dtype, work_dtype)
from fx_cli.errors import FxError
from fx_cli.plan.ranges import count

log = logging.getLogger("fx.aggregator")
TensorUpdates = Iterable[tuple[str, np.ndarray, Sequence[Contribution]]]


def pairwise_sq_distances(tensors: TensorUpdates) -> tuple[list[str], np.ndarray]:
    """Collaborator names and the matrix of squared L2 distances between their whole-model updates."""
    names: list[str] = []
    dist = np.zeros((0, 0))
    for tensor_name, base, contributions in tensors:
        if not names:
            names = [c.collaborator for c in contributions]
            dist = np.zeros((len(names), len(names)))
        rows = np.stack([load_checked(c, tensor_name, base.shape).reshape(-1).astype(np.float64)
                         for c in contributions])
        sq = np.einsum("ij,ij->i", rows, rows)
        dist += np.maximum(sq[:, None] + sq[None, :] - 2.0 * rows @ rows.T, 0.0)
    return names, dist


def krum_scores(dist: np.ndarray, byzantine: int) -> np.ndarray:
    """Each row's sum of distances to its ``n - f - 2`` nearest others (at least one)."""
    n = dist.shape[0]
    k = max(1, n - byzantine - 2)
    others = np.sort(dist + np.diag(np.full(n, np.inf)), axis=1)[:, :min(k, n - 1)]
    return np.asarray(others.sum(axis=1))


class Krum(AggregationFunction):
    """Krum (``keep: 1``, the default) or multi-Krum (``keep: m``) tolerating ``byzantine`` liars."""

    SETTING_RANGES = {"byzantine": count(10_000, low=0), "keep": count(10_000)}

    def __init__(self, byzantine: int = 1, keep: int = 1) -> None:
        self.byzantine = byzantine
        self.keep = keep
        self.selected: set[str] = set()

    def prepare(self, tensors: TensorUpdates, round_num: int) -> None:
        """Score every update over the whole model; keep the ``keep`` best."""
        names, dist = pairwise_sq_distances(tensors)
        n = len(names)
        if n < 2 * self.byzantine + 3:
            log.warning("round %d: Krum with %d updates cannot tolerate %d byzantine ones (needs n >= 2f + 3); "
                        "scores are computed anyway", round_num + 1, n, self.byzantine)
        order = np.argsort(krum_scores(dist, self.byzantine), kind="stable") if n > 1 else np.zeros(1, int)
        self.selected = {names[i] for i in order[:min(self.keep, n)]}
        dropped = sorted(set(names) - self.selected)
        if dropped:
            log.info("round %d: %s left out the updates of %s", round_num + 1, self.describe(), ", ".join(dropped))

    def aggregate(self, tensor_name: str, base: np.ndarray, contributions: Sequence[Contribution],
                  round_num: int) -> np.ndarray:
        check_contributions(tensor_name, contributions, round_num)
        kept = [c for c in contributions if c.collaborator in self.selected] if self.selected else list(contributions)
        if not kept:
            raise FxError(f"{self.describe()}: no update selected for tensor '{tensor_name}'",
                          "prepare() must run before aggregate(); use Krum through the aggregator")
        acc = np.zeros(base.shape, dtype=np.float64)
        for c in kept:
            acc += load_checked(c, tensor_name, base.shape)
        return to_base_dtype((acc / len(kept)).astype(work_dtype(base)), base)

    def describe(self) -> str:
        return f"Krum(byzantine={self.byzantine}, keep={self.keep})"
