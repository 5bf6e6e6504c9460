"""fx_cli.checksum: zlib's CRC-32 values, from isal's faster implementation where it is installed."""
from __future__ import annotations

import importlib.util
import zlib

import numpy as np
import pytest

from fx_cli import checksum


@pytest.mark.parametrize("size", [0, 1, 3, 4096, 65_537, 4 * 2**20 + 5])
def test_same_values_as_zlib(size: int) -> None:
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    assert checksum.crc32(data) == zlib.crc32(data)
    view = memoryview(data)[size // 3:]
    assert checksum.crc32(view) == zlib.crc32(view)


def test_continues_from_a_previous_value() -> None:
    """Chunks checked one after another give the CRC of the whole tensor, as the stream checks need."""
    data = np.random.default_rng(1).standard_normal(300_001).astype("<f4").reshape(-1).data.cast("B")
    crc = 0
    for start in range(0, data.nbytes, 65_536):
        crc = checksum.crc32(data[start:start + 65_536], crc)
    assert crc == zlib.crc32(data) == checksum.crc32(bytearray(data))


def test_isal_is_used_where_installed() -> None:
    expected = "isal" if importlib.util.find_spec("isal") is not None else "zlib"
    assert checksum.IMPLEMENTATION == expected
