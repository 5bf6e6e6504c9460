"""The compression interface for tensors on the wire, and the raw little-endian layout they share.

A pipeline turns an array into ``(payload, metadata)`` and back. The
receiver knows the dtype and shape from the message (they travel next to the
payload), and the pipeline from its wire ``name``. Metadata values are
strings, so nothing on the wire is ever unpickled or evaluated.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import ClassVar, Mapping

import numpy as np

from fx_cli.errors import FxError

Payload = bytes | bytearray | memoryview

# numpy kinds that travel as plain bytes: bool, signed/unsigned ints, floats, complex.
WIRE_KINDS = "biufc"


class Pipeline(ABC):
    """Encodes one tensor for the wire and decodes it on the other side."""

    name: ClassVar[str]  # stable id sent on the wire
    lossless: ClassVar[bool]

    @abstractmethod
    def encode(self, array: np.ndarray) -> tuple[Payload, dict[str, str]]:
        """The payload and string metadata for ``array``."""

    @abstractmethod
    def decode(self, payload: Payload, metadata: Mapping[str, str], dtype: np.dtype | str,
               shape: tuple[int, ...]) -> np.ndarray:
        """The array of ``dtype`` and ``shape`` from what :meth:`encode` produced (may be read-only)."""


def wire_dtype(dtype: np.dtype | str) -> np.dtype:
    """The little-endian form of a numeric dtype; other dtypes (objects, strings) are refused."""
    dt = np.dtype(dtype)
    if dt.kind not in WIRE_KINDS or dt.fields is not None or dt.subdtype is not None:
        raise FxError(f"tensors of dtype {dt} cannot travel on the wire",
                      "task runners must return numeric numpy arrays (bool, int, float or complex)")
    return dt.newbyteorder("<") if dt.itemsize > 1 else dt


def raw_bytes(array: np.ndarray) -> memoryview:
    """A zero-copy byte view of ``array`` in C order, little-endian (copied only when it is not already)."""
    arr = np.asarray(array)
    arr = np.ascontiguousarray(arr, dtype=wire_dtype(arr.dtype))
    return arr.reshape(-1).view(np.uint8).data


def element_count(shape: tuple[int, ...]) -> int:
    """Number of elements of ``shape``; refuses negative dimensions."""
    if any(int(d) < 0 for d in shape):
        raise FxError(f"tensor shape {tuple(shape)} has a negative dimension",
                      "the sender's message is corrupt; check both sides run the same fx version")
    return math.prod(int(d) for d in shape)


def from_raw(payload: Payload, dtype: np.dtype | str, shape: tuple[int, ...], pipeline: str) -> np.ndarray:
    """The array stored as raw little-endian bytes in ``payload`` (zero-copy, read-only for bytes)."""
    dt = wire_dtype(dtype)
    expected = element_count(shape) * dt.itemsize
    check_length(payload, expected, f"{dt}{list(shape)}", pipeline)
    array = np.frombuffer(payload, dtype=dt) if expected else np.empty(0, dtype=dt)
    return array.reshape(shape)


def check_length(payload: Payload, expected: int, what: str, pipeline: str) -> None:
    """Refuse a payload whose byte length is not the one the dtype and shape imply."""
    got = memoryview(payload).nbytes
    if got != expected:
        raise FxError(f"'{pipeline}' payload for a {what} tensor has {got} bytes, expected {expected}",
                      "the tensor was truncated or corrupted in transit, or sender and receiver disagree "
                      "on the compression pipeline; check both use the same plan")


def meta_value(metadata: Mapping[str, str], key: str, pipeline: str) -> str:
    """A required metadata entry, or a clear error naming it."""
    value = metadata.get(key)
    if not isinstance(value, str):
        raise FxError(f"'{pipeline}' tensor metadata lacks '{key}' (got keys {sorted(metadata)})",
                      "the sender's message is corrupt or from an incompatible fx version")
    return value
