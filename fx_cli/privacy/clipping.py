"""Clipping a model update (its delta from the global model) to an L2 norm, fixed or adaptive.

The norm is taken over all tensors of the update together (the update is one vector), in float64 so
that a million float32 values do not lose the bound to rounding.

Adaptive clipping follows Andrew, Thakkar, McMahan and Ramaswamy, "Differentially Private Learning
with Adaptive Clipping" (2021): each round the clip norm moves geometrically towards the
``target_quantile`` of the update norms, ``C ← C · exp(-η (b̄ - γ))``, where ``b̄`` is the (noised)
fraction of updates whose norm was at most ``C``. The count is noised with std ``count_std``; the
updates' noise multiplier is then raised so the pair costs what one Gaussian with the plan's
``noise_multiplier`` costs: ``z_Δ = (z⁻² - (2 σ_b)⁻²)^(-1/2)`` (their Theorem 1).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from fx_cli.privacy.noise import gaussian


def l2_norm(tensors: Mapping[str, np.ndarray]) -> float:
    """L2 norm of all tensors taken as one vector."""
    total = math.fsum(float(np.dot(t.ravel().astype(np.float64), t.ravel().astype(np.float64)))
                      for t in tensors.values())
    return math.sqrt(total)


def clip_factor(norm: float, clip_norm: float) -> float:
    """The scale that brings an update of ``norm`` within ``clip_norm`` (1 when it already is)."""
    return 1.0 if norm <= clip_norm else clip_norm / norm


def clip(delta: Mapping[str, np.ndarray], clip_norm: float) -> tuple[dict[str, np.ndarray], float]:
    """``delta`` scaled to norm at most ``clip_norm``, and its norm before clipping."""
    norm = l2_norm(delta)
    factor = clip_factor(norm, clip_norm)
    return {k: (v.astype(np.float64) * factor) for k, v in delta.items()}, norm


def delta_noise_multiplier(z: float, count_std: float) -> float:
    """Noise multiplier left for the updates when the clipped count is noised with ``count_std``."""
    rest = z ** -2 - (2 * count_std) ** -2
    if rest <= 0:
        raise ValueError(f"count_std {count_std} must exceed noise_multiplier/2 = {z / 2}")
    return float(rest ** -0.5)


@dataclass
class AdaptiveClipNorm:
    """The clip norm of the next round, moved towards a quantile of the update norms."""

    clip_norm: float
    target_quantile: float = 0.5
    learning_rate: float = 0.2
    count_std: float = 0.0

    def update(self, norms: list[float], rng: np.random.Generator) -> float:
        """Move the clip norm after a round whose updates had ``norms`` (before clipping); return it."""
        if not norms:
            return self.clip_norm
        below = sum(1.0 for n in norms if n <= self.clip_norm)
        noisy = below + float(gaussian(1, self.count_std, rng)[0])
        fraction = noisy / len(norms)
        self.clip_norm *= math.exp(-self.learning_rate * (fraction - self.target_quantile))
        return self.clip_norm
