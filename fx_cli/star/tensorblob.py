"""Analytics payloads inside fx's model tensors: the ``wire`` bytes packed 3 per float32.

The round engine moves float32 tensors of a fixed shape (checked, spilled, saved with each round). A STAR
result or aggregate is ``wire``-encoded (JSON + raw arrays, never pickle) and packed into one tensor,
``star/payload``, of ``capacity`` elements: element 0 holds the byte length, then each element holds three
bytes as an integer below 2**24 (exact in float32), zero-padded. Nothing here can execute code.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from fx_cli.errors import FxError
from fx_cli.star import wire

TENSOR = "star/payload"


def capacity_for(max_kib: int) -> int:
    """Elements needed for payloads up to ``max_kib`` KiB."""
    return 1 + -(-max_kib * 1024 // 3)


def pack(value: Any, capacity: int) -> np.ndarray:
    """``value`` wire-encoded into a float32 tensor of ``capacity`` elements (None: an empty payload)."""
    blob = b"" if value is None else wire.encode(value)
    need = 1 + -(-len(blob) // 3)
    if need > capacity or len(blob) >= 2 ** 24:
        raise wire.WireError(f"result of {len(blob)} bytes is larger than this plan allows "
                             f"({(capacity - 1) * 3} bytes)", "raise max_result_kib in the plan (both the task "
                             "runner's and the aggregation function's settings), or return less")
    padded = np.frombuffer(blob + b"\0" * (-len(blob) % 3), dtype=np.uint8).astype(np.uint32)
    triples = padded[0::3] | (padded[1::3] << 8) | (padded[2::3] << 16)
    out = np.zeros(capacity, dtype=np.float32)
    out[0] = len(blob)
    out[1:1 + triples.size] = triples
    return out


def unpack(tensor: np.ndarray) -> Any:
    """The value packed by ``pack`` (None for an empty payload); malformed tensors raise ``WireError``."""
    flat = np.asarray(tensor, dtype=np.float64).ravel()
    if flat.size < 1 or not np.all(np.isfinite(flat)):
        raise wire.WireError(f"{TENSOR}: not a packed payload")
    length = flat[0]
    if length != int(length) or not 0 <= length <= (flat.size - 1) * 3:
        raise wire.WireError(f"{TENSOR}: payload length {length} does not fit the tensor")
    if length == 0:
        return None
    count = -(-int(length) // 3)
    ints = flat[1:1 + count]
    if np.any(ints != np.floor(ints)) or np.any(ints < 0) or np.any(ints >= 2 ** 24):
        raise wire.WireError(f"{TENSOR}: elements are not 24-bit integers")
    v = ints.astype(np.uint32)
    raw = np.stack([v & 0xFF, (v >> 8) & 0xFF, (v >> 16) & 0xFF], axis=1).astype(np.uint8).tobytes()
    return wire.decode(raw[:int(length)])


def check_payload(tensors: dict[str, np.ndarray], where: str) -> np.ndarray:
    """The payload tensor of a set of tensors, or an error naming what is there."""
    if set(tensors) != {TENSOR}:
        raise FxError(f"{where}: expected exactly the tensor {TENSOR!r}, got {sorted(tensors)}",
                      "a STAR plan's model holds only the analytics payload")
    return tensors[TENSOR]
