"""Byte shuffling: store byte 0 of every element, then byte 1, ... so zlib sees long runs of similar bytes.

Float weights share sign and exponent bytes, which become highly repetitive
once grouped; the mantissa bytes stay noise. Done block by block, so the
sender never holds a shuffled copy of the whole tensor.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

BLOCK = 1 << 18  # elements per shuffled block (1 MiB of float32)


def shuffled_blocks(raw: memoryview, itemsize: int, block: int = BLOCK) -> Iterator[memoryview]:
    """The raw bytes of ``itemsize``-byte elements, shuffled within consecutive blocks of ``block`` elements."""
    elements = np.frombuffer(raw, dtype=np.uint8).reshape(-1, itemsize)
    for start in range(0, len(elements), block):
        yield np.ascontiguousarray(elements[start:start + block].T).data.cast("B")


def unshuffle(raw: bytes, dtype: np.dtype, shape: tuple[int, ...], block: int = BLOCK) -> np.ndarray:
    """The array whose bytes :func:`shuffled_blocks` produced (``raw`` has the exact length)."""
    itemsize = dtype.itemsize
    source = np.frombuffer(raw, dtype=np.uint8)
    count = len(source) // itemsize
    out = np.empty((count, itemsize), dtype=np.uint8)
    for start in range(0, count, block):
        stop = min(start + block, count)
        out[start:stop] = source[start * itemsize:stop * itemsize].reshape(itemsize, stop - start).T
    return out.view(dtype).reshape(shape)
