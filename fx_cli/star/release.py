"""The released result: optional Laplace noise (ε, sensitivity) and the result file.

What the noise protects: with ``sensitivity`` a true bound on how much one record can change the final
result (L1 norm over all its numbers), the released result is ε-differentially private for that one
release. What it does not: the intermediate aggregates of an iterative analysis are sent to the sites
unnoised, each site's analysis result reaches the aggregator unnoised, and nothing checks that
``sensitivity`` is right or counts ε across runs. For noise applied at each site, with a budget kept
there, use the built-in estimators (``fx_cli.analytics``).
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from fx_cli.atomic import atomic_write
from fx_cli.errors import FxError
from fx_cli.privacy.noise import laplace, laplace_scale, noise_generator

OUTPUT_TYPES = ("str", "bytes", "pickle")


def check_privacy(epsilon: float | None, sensitivity: float | None) -> None:
    """Both or neither; both positive."""
    if (epsilon is None) != (sensitivity is None):
        raise FxError("epsilon and sensitivity go together: one was given without the other",
                      "pass both (e.g. epsilon=1.0, sensitivity=1.0) or neither")
    if epsilon is not None and sensitivity is not None and not (epsilon > 0 and sensitivity > 0):
        raise FxError(f"epsilon and sensitivity must be > 0, got epsilon={epsilon}, sensitivity={sensitivity}")


def add_laplace(result: Any, epsilon: float, sensitivity: float, rng: np.random.Generator | None = None) -> Any:
    """``result`` with Laplace(Δ/ε) noise on every number (a number, an array, or lists/tuples/dicts of them)."""
    scale = laplace_scale(sensitivity, epsilon)
    return _noised(result, scale, rng or noise_generator())


def _noised(value: Any, scale: float, rng: np.random.Generator) -> Any:
    if isinstance(value, (bool, np.bool_)):
        raise FxError("a boolean result cannot carry Laplace noise", "release numbers, or drop epsilon")
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value) + float(laplace(1, scale, rng)[0])
    if isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.number):
        return value.astype(np.float64) + laplace(value.shape, scale, rng)
    if isinstance(value, (list, tuple)):
        items = [_noised(v, scale, rng) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        return {k: _noised(v, scale, rng) for k, v in value.items()}
    raise FxError(f"a result of type {type(value).__name__} cannot carry Laplace noise",
                  "release numbers (or lists, dicts or arrays of numbers), or drop epsilon/sensitivity")


def result_bytes(result: Any, output_type: str) -> bytes:
    """The result file's content: str(result), raw bytes, or a pickle (a local file, never sent anywhere)."""
    if output_type == "str":
        return str(result).encode("utf-8")
    if output_type == "bytes":
        if isinstance(result, (bytes, bytearray)):
            return bytes(result)
        if isinstance(result, np.ndarray):
            return result.tobytes()
        return str(result).encode("utf-8")
    if output_type == "pickle":
        return pickle.dumps(result)
    raise FxError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")


def write_result(path: str | Path, result: Any, output_type: str) -> Path:
    """Write the result file atomically."""
    data = result_bytes(result, output_type)
    with atomic_write(path) as fh:
        fh.write(data)
    return Path(path)
