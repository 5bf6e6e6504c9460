"""Protobuf base-128 varints, for streaming records without building whole messages."""
from __future__ import annotations

from typing import Protocol


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


def encode(value: int) -> bytes:
    """Encode a non-negative int as a varint."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read(fh: Readable) -> int | None:
    """Read one varint; None at a clean end of file. Raises EOFError mid-varint."""
    shift = 0
    result = 0
    first = True
    while True:
        b = fh.read(1)
        if not b:
            if first:
                return None
            raise EOFError("file ends inside a varint")
        first = False
        result |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return result
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def decode_at(data: bytes, pos: int) -> tuple[int, int]:
    """``(value, position after it)`` of the varint at ``data[pos]``; ``(-1, pos)`` when none is complete there."""
    shift = result = 0
    for i in range(pos, min(len(data), pos + 10)):
        result |= (data[i] & 0x7F) << shift
        if not data[i] & 0x80:
            return result, i + 1
        shift += 7
    return -1, pos
