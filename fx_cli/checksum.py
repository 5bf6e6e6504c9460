"""CRC32 of payload bytes: every tensor is checked with it on arrival and again when its spill is read back.

The checksum is zlib's CRC-32 (the same values on both ends of the wire,
whatever either side runs). Where the ``isal`` package is installed, its
implementation computes it: about 20 GB/s with the carry-less multiply
instructions of current x86 and ARM processors, against about 4 GB/s for
zlib's, which made the CRC passes about a tenth of the aggregator's CPU at
1e7 parameters (``benchmarks/bench_wire.py``). Without ``isal`` zlib computes
the same values.
"""
from __future__ import annotations

import zlib
from typing import Callable, Union

Bytes = Union[bytes, bytearray, memoryview]

_impl: Callable[..., int]
try:
    from isal.isal_zlib import crc32 as _impl
    IMPLEMENTATION = "isal"
except ImportError:  # a platform without an isal wheel: zlib gives the same values, slower
    _impl = zlib.crc32
    IMPLEMENTATION = "zlib"


def crc32(data: Bytes, value: int = 0) -> int:
    """zlib's CRC-32 of ``data``, continuing from ``value`` (the CRC of the bytes before it)."""
    return int(_impl(data, value))
