"""Buffering every update of one tensor, for functions that need them all at once (median, geometric median).

The updates are stacked as rows of an ``(n_collaborators, tensor_size)``
matrix. Small matrices live in memory; above ``spill_mb`` the matrix is a
memory map of an anonymous temporary file, so the OS can page it out and
only column slices are brought in while computing.
"""
from __future__ import annotations

import math
import tempfile
from typing import Iterator, Sequence

import numpy as np

from fx_cli.aggregation.base import Contribution, update_reader
from fx_cli.errors import FxError

# Elements per column slice worked on at once (rows x columns), ~16-32 MiB of scratch.
SLICE_ELEMENTS = 1 << 22


def stack_updates(tensor_name: str, shape: tuple[int, ...], dtype: np.dtype, contributions: Sequence[Contribution],
                  spill_mb: float, spill_dir: str | None) -> np.ndarray:
    """An (n, size) matrix of the updates, loaded one at a time; on disk when larger than ``spill_mb``."""
    size = math.prod(shape)
    rows = len(contributions)
    nbytes = rows * size * dtype.itemsize
    stack = _disk_matrix(rows, size, dtype, spill_dir) if nbytes > spill_mb * 2**20 else np.empty((rows, size), dtype)
    for i, c in enumerate(contributions):
        read = update_reader(c, tensor_name, shape)
        for cols in column_slices(stack[:1]):
            stack[i, cols] = read(cols.start, cols.stop)
        del read  # frees a loaded update before the next one is read
    return stack


def _disk_matrix(rows: int, size: int, dtype: np.dtype, spill_dir: str | None) -> np.ndarray:
    try:
        # The file is unlinked at once (TemporaryFile); the mapping keeps it alive until dropped.
        with tempfile.TemporaryFile(dir=spill_dir) as fh:
            fh.truncate(max(1, rows * size * dtype.itemsize))
            return np.memmap(fh, dtype=dtype, mode="r+", shape=(rows, size))
    except OSError as err:
        raise FxError(f"cannot create a spill file for aggregation in {spill_dir or tempfile.gettempdir()}: {err}",
                      "free disk space there, or set the aggregation function's spill_dir setting") from None


def column_slices(stack: np.ndarray) -> Iterator[slice]:
    """Column ranges of ``stack`` small enough to copy into memory."""
    rows, size = stack.shape
    step = max(1, SLICE_ELEMENTS // max(rows, 1))
    for start in range(0, size, step):
        yield slice(start, min(start + step, size))
