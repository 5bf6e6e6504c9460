"""Floats to integers mod 2^k and back: clip to [-r, r], scale to [0, 2^b - 1], weight, wrap.

Sums of ``n`` such vectors, each weighted by at most ``max_weight``, stay below ``2^k`` when
``n · max_weight · (2^b - 1) < 2^k``; ``fx_cli.secagg.settings.overflow_problem`` says when they would not.
"""
from __future__ import annotations

import numpy as np


def dtype_of(modulus_bits: int) -> type[np.unsignedinteger]:
    """numpy wraps unsigned integers mod 2^32 or 2^64 by itself."""
    if modulus_bits == 32:
        return np.uint32
    if modulus_bits == 64:
        return np.uint64
    raise ValueError(f"modulus_bits must be 32 or 64, got {modulus_bits}")


def quantize(values: np.ndarray, clipping_range: float, quantization_bits: int, weight: int,
             modulus_bits: int) -> np.ndarray:
    """``weight · round((clip(x) + r) / 2r · (2^b - 1))`` as unsigned integers of the modulus."""
    levels = (1 << quantization_bits) - 1
    clipped = np.clip(np.asarray(values, np.float64), -clipping_range, clipping_range)
    q = np.rint((clipped + clipping_range) / (2 * clipping_range) * levels).astype(np.uint64)
    out: np.ndarray = (q * np.uint64(weight)).astype(dtype_of(modulus_bits))
    return out


def dequantize_mean(total: np.ndarray, total_weight: int, clipping_range: float, quantization_bits: int) -> np.ndarray:
    """The weighted mean of the quantized vectors whose (unmasked) sum is ``total``."""
    levels = (1 << quantization_bits) - 1
    mean_q = total.astype(np.float64) / total_weight
    mean: np.ndarray = mean_q / levels * (2 * clipping_range) - clipping_range
    return mean


def quantization_bound(clipping_range: float, quantization_bits: int) -> float:
    """Largest error of one coordinate of the mean from rounding (inputs within the clipping range)."""
    return float(clipping_range) / ((1 << quantization_bits) - 1)
