"""Chunked tensor streams: a header per tensor, payload chunks of a few MiB, CRC32 per tensor.

Sending slices a memoryview of the array (one copy per chunk, into the
message); receiving copies each chunk straight into a buffer preallocated from
the header's size, checks size and CRC, and views it as the declared dtype and
shape. Nothing is pickled and no tensor-sized temporary is made.
"""
from __future__ import annotations

import math
from typing import Iterable, Iterator, Mapping

import numpy as np

from fx_cli.checksum import crc32
from fx_cli.transport.serde import Frame, TensorMeta, Trailer, is_data

MIN_CHUNK = 4096
MAX_DIMS = 32
# Little-endian numeric dtypes allowed on the wire (never object, void or structured).
WIRE_DTYPES = frozenset(np.dtype(t).str for t in (
    "<f2", "<f4", "<f8", "<i1", "<i2", "<i4", "<i8", "<u1", "<u2", "<u4", "<u8", "|b1"))


class StreamError(Exception):
    """A stream that breaks the protocol (sizes, checksums, order); the message says how."""


def chunk_bytes(chunk_size_mib: float) -> int:
    """The chunk size in bytes from ``network.settings.chunk_size_mib`` (a multiple of 8, at least 4 KiB)."""
    return max(MIN_CHUNK, int(float(chunk_size_mib) * 2**20)) // 8 * 8


def as_payload(array: np.ndarray) -> memoryview:
    """A byte view of ``array`` in C order and little-endian, copying only when it is not already so."""
    a = np.asarray(array)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return np.ascontiguousarray(a).reshape(-1).data.cast("B")


def raw_meta(name: str, array: np.ndarray, payload: memoryview) -> TensorMeta:
    """Header of a tensor sent as raw bytes."""
    return TensorMeta(name=name, dtype=np.dtype(array.dtype).newbyteorder("<").str, shape=tuple(array.shape),
                      nbytes=payload.nbytes, crc32=crc32(payload))


def tensor_frames(meta: TensorMeta, payload: memoryview, chunk: int) -> Iterator[Frame]:
    """The header, then ``payload`` in chunks of at most ``chunk`` bytes."""
    yield meta
    for start in range(0, payload.nbytes, chunk):
        yield payload[start:start + chunk]  # a view: the message serializer copies it once


def trailer_of(metas: Iterable[TensorMeta]) -> Trailer:
    metas = list(metas)
    return Trailer(len(metas), sum(m.nbytes for m in metas))


def check_meta(meta: TensorMeta, max_bytes: int) -> np.dtype:
    """The header's dtype, after checking name, dtype, shape and payload size; raises ``StreamError``."""
    if not meta.name or len(meta.name) > 512:
        raise StreamError(f"tensor name {meta.name[:60]!r} is empty or longer than 512 characters")
    if meta.dtype not in WIRE_DTYPES:
        raise StreamError(f"tensor '{meta.name}': dtype {meta.dtype!r} is not a little-endian numeric dtype")
    if len(meta.shape) > MAX_DIMS or any(d < 0 for d in meta.shape):
        raise StreamError(f"tensor '{meta.name}': invalid shape {meta.shape}")
    if meta.nbytes > max_bytes:
        raise StreamError(f"tensor '{meta.name}': {meta.nbytes:,} payload bytes exceed the limit of {max_bytes:,}")
    dtype = np.dtype(meta.dtype)
    if meta.pipeline == "none" and meta.nbytes != math.prod(meta.shape) * dtype.itemsize:
        raise StreamError(f"tensor '{meta.name}': {meta.nbytes:,} bytes do not hold shape {meta.shape} of {meta.dtype}")
    return dtype


class PayloadCheck:
    """Counts one tensor's payload bytes and their CRC32 as chunks arrive."""

    def __init__(self, meta: TensorMeta) -> None:
        self.meta = meta
        self.received = 0
        self.crc = 0

    def add(self, data: bytes | memoryview) -> None:
        size = memoryview(data).nbytes
        if self.received + size > self.meta.nbytes:
            raise StreamError(f"tensor '{self.meta.name}': more payload than the {self.meta.nbytes:,} bytes announced")
        self.crc = crc32(data, self.crc)
        self.received += size

    def finish(self) -> None:
        if self.received != self.meta.nbytes:
            raise StreamError(f"tensor '{self.meta.name}': stream ended after {self.received:,} of "
                              f"{self.meta.nbytes:,} payload bytes (truncated)")
        if self.crc != self.meta.crc32:
            raise StreamError(f"tensor '{self.meta.name}': CRC32 mismatch (got {self.crc:08x}, "
                              f"header says {self.meta.crc32:08x}); the data was corrupted in transit")


class TensorAssembler(PayloadCheck):
    """Rebuilds one tensor's payload in a buffer allocated once from the header, or in ``into`` when it fits."""

    def __init__(self, meta: TensorMeta, into: np.ndarray | None = None) -> None:
        super().__init__(meta)
        fits = (into is not None and meta.pipeline == "none" and into.dtype.str == meta.dtype
                and tuple(into.shape) == tuple(meta.shape) and into.flags.c_contiguous and into.flags.writeable
                and into.nbytes == meta.nbytes)
        self.buffer = into.reshape(-1).view(np.uint8) if fits and into is not None else np.empty(meta.nbytes, np.uint8)

    def add(self, data: bytes | memoryview) -> None:
        start = self.received
        super().add(data)
        self.buffer[start:self.received] = np.frombuffer(data, dtype=np.uint8)

    def payload(self) -> np.ndarray:
        """The verified payload bytes."""
        self.finish()
        return self.buffer


def raw_array(meta: TensorMeta, payload: np.ndarray) -> np.ndarray:
    """The tensor of a raw payload: a dtype/shape view of the buffer, no copy."""
    return payload.view(np.dtype(meta.dtype)).reshape(meta.shape)


def read_tensors(frames: Iterator[Frame | None], max_bytes: int,
                 into: Mapping[str, np.ndarray] | None = None) -> Iterator[tuple[TensorMeta, np.ndarray]]:
    """``(header, payload bytes)`` per tensor of a frame stream, up to and including a checked trailer.

    A raw tensor whose name, dtype and shape match an array of ``into`` is assembled in that array.
    """
    into = into or {}
    current: TensorAssembler | None = None
    seen: list[TensorMeta] = []
    for frame in frames:
        if is_data(frame):
            assert isinstance(frame, (bytes, memoryview))
            if current is None:
                raise StreamError("payload bytes arrived before any tensor header")
            current.add(frame)
            continue
        if current is not None:
            yield current.meta, current.payload()
            current = None
        if isinstance(frame, TensorMeta):
            check_meta(frame, max_bytes)
            if any(m.name == frame.name for m in seen):
                raise StreamError(f"tensor '{frame.name}' appears twice in one stream")
            seen.append(frame)
            current = TensorAssembler(frame, into.get(frame.name))
        elif isinstance(frame, Trailer):
            expected = trailer_of(seen)
            if frame != expected:
                raise StreamError(f"trailer announces {frame.tensor_count} tensors / {frame.payload_bytes:,} bytes, "
                                  f"stream had {expected.tensor_count} / {expected.payload_bytes:,}")
            return
        else:
            raise StreamError(f"unexpected {type(frame).__name__} inside a tensor stream")
    raise StreamError("stream ended without its trailer (truncated)")
