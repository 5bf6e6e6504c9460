"""Noise for differential privacy: one small module every fx feature draws from.

API (everything else in fx that adds DP noise calls these; see ARCHITECTURE.md):

- ``noise_generator(seed=None)``: a ``numpy.random.Generator``; ``seed`` (bytes) makes it reproducible,
  ``None`` seeds it from the operating system's CSPRNG.
- ``gaussian(shape, std, rng)``, ``laplace(shape, scale, rng)``: float64 noise arrays.
- ``gaussian_std(sensitivity, noise_multiplier)``: σ = z · Δ₂ (the form the RDP accountant composes).
- ``laplace_scale(sensitivity, epsilon)``: b = Δ₁ / ε, the pure ε-DP Laplace mechanism.
- ``gaussian_std_for(epsilon, delta, sensitivity)``: the smallest σ giving (ε, δ)-DP in one release
  (analytic Gaussian mechanism of Balle and Wang 2018, valid for any ε > 0, unlike √(2 ln(1.25/δ))·Δ/ε).

Noise is drawn with numpy's PCG64 generator. It is not a cryptographic generator; the seed is.
"""
from __future__ import annotations

import hashlib
import math
import secrets
from typing import Sequence

import numpy as np


def noise_generator(seed: bytes | None = None) -> np.random.Generator:
    """A generator seeded from ``seed`` (hashed to 256 bits), or from the OS when ``seed`` is None."""
    material = hashlib.sha256(seed).digest() if seed is not None else secrets.token_bytes(32)
    return np.random.Generator(np.random.PCG64(int.from_bytes(material, "little")))


def _check(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")


def gaussian(shape: int | Sequence[int], std: float, rng: np.random.Generator) -> np.ndarray:
    """N(0, std²) noise of ``shape``."""
    _check("std", std)
    return rng.normal(0.0, std, size=shape) if std > 0 else np.zeros(shape)


def laplace(shape: int | Sequence[int], scale: float, rng: np.random.Generator) -> np.ndarray:
    """Laplace(0, scale) noise of ``shape``."""
    _check("scale", scale)
    return rng.laplace(0.0, scale, size=shape) if scale > 0 else np.zeros(shape)


def gaussian_std(sensitivity: float, noise_multiplier: float) -> float:
    """σ = z · Δ₂."""
    _check("sensitivity", sensitivity)
    _check("noise_multiplier", noise_multiplier)
    return sensitivity * noise_multiplier


def laplace_scale(sensitivity: float, epsilon: float) -> float:
    """b = Δ₁ / ε."""
    _check("sensitivity", sensitivity)
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    return sensitivity / epsilon


def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2))


def gaussian_delta(std: float, epsilon: float, sensitivity: float = 1.0) -> float:
    """The exact δ of one Gaussian release with ``std`` at ``epsilon`` (Balle and Wang 2018, Theorem 8)."""
    a, b = sensitivity / (2 * std), epsilon * std / sensitivity
    return _phi(a - b) - math.exp(epsilon) * _phi(-a - b)


def gaussian_std_for(epsilon: float, delta: float, sensitivity: float = 1.0) -> float:
    """Smallest σ with ``gaussian_delta(σ, ε) ≤ δ`` (bisection to a relative 1e-9)."""
    if not (epsilon > 0 and 0 < delta < 1):
        raise ValueError(f"need epsilon > 0 and 0 < delta < 1, got {epsilon}, {delta}")
    lo, hi = 1e-6 * sensitivity, sensitivity
    while gaussian_delta(hi, epsilon, sensitivity) > delta:
        lo, hi = hi, hi * 2
    while hi - lo > 1e-9 * hi:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if gaussian_delta(mid, epsilon, sensitivity) > delta else (lo, mid)
    return hi
