"""Stream frames to and from their protobuf messages (``DownloadChunk``, ``UploadChunk``).

A payload chunk is encoded and decoded by hand, byte-identical to protobuf's own encoding: the payload is
copied once on the way out and not at all on the way in (a view of the received message). Headers,
trailers and batches go through the generated classes.
"""
from __future__ import annotations

from typing import Any, Callable, TypeVar

from fx_cli.proto import federation_pb2 as pb
from fx_cli.tensors import varint
from fx_cli.transport.serde import (DATA, Batch, Frame, ModelMeta, TensorMeta, Trailer, UploadMeta, caller_from_pb,
                                    caller_to_pb)

# ``DownloadChunk.data`` and ``UploadChunk.data`` are both field 3, wire type 2 (length-delimited).
_DATA_TAG = b"\x1a"


def _data_message(data: bytes | bytearray | memoryview) -> bytes:
    """A chunk message holding only ``data``: built by hand, so the payload is copied once, not three times.

    Byte-identical to protobuf's own serialisation of ``DownloadChunk(data=...)`` / ``UploadChunk(data=...)``.
    """
    return b"".join((_DATA_TAG, varint.encode(memoryview(data).nbytes), data))


def _data_view(b: bytes) -> memoryview | None:
    """The payload of a message that is exactly one ``data`` field, as a view of ``b``; None for anything else."""
    if b[:1] != _DATA_TAG:
        return None
    size, start = varint.decode_at(b, 1)
    if size < 0 or start + size != len(b):
        return None
    return memoryview(b)[start:]


_Chunk = TypeVar("_Chunk", pb.DownloadChunk, pb.UploadChunk)
# ``DownloadChunk.batch`` / ``UploadChunk.batch`` (field 5) and ``*Batch.chunks`` (field 1), length-delimited.
_BATCH_TAG = b"\x2a"
_CHUNK_TAG = b"\x0a"


def _batch_message(batch: Batch, one: Callable[[Frame], bytes]) -> bytes:
    """Byte-identical to protobuf's serialisation of ``DownloadChunk(batch=...)`` / ``UploadChunk(batch=...)``."""
    parts: list[bytes] = []
    for frame in batch.frames:
        if isinstance(frame, Batch):
            raise TypeError("a batch cannot hold a batch")
        encoded = one(frame)
        parts += (_CHUNK_TAG, varint.encode(len(encoded)), encoded)
    body = b"".join(parts)
    return b"".join((_BATCH_TAG, varint.encode(len(body)), body))


def _tensor_pb(t: TensorMeta) -> pb.TensorHeader:
    return pb.TensorHeader(name=t.name, dtype=t.dtype, shape=list(t.shape), pipeline=t.pipeline,
                           metadata=dict(t.metadata), nbytes=t.nbytes, crc32=t.crc32, delta=t.delta)


def _tensor(m: pb.TensorHeader) -> TensorMeta:
    return TensorMeta(m.name, m.dtype, tuple(int(d) for d in m.shape), m.nbytes, m.crc32,
                      m.pipeline or "none", dict(m.metadata), m.delta)


def _frame_to_bytes(f: Frame | Batch, chunk: type[_Chunk], own: Callable[[Frame], dict[str, Any] | None],
                    what: str) -> bytes:
    """One frame as a ``chunk`` message; ``own`` gives the fields of the stream's own header (None: not one)."""
    if isinstance(f, DATA):
        return _data_message(f)
    if isinstance(f, Batch):
        return _batch_message(f, lambda g: _frame_to_bytes(g, chunk, own, what))
    if isinstance(f, TensorMeta):
        fields: dict[str, Any] | None = {"tensor": _tensor_pb(f)}
    elif isinstance(f, Trailer):
        fields = {"trailer": pb.StreamTrailer(tensor_count=f.tensor_count, payload_bytes=f.payload_bytes)}
    else:
        fields = own(f)
    if fields is None:
        raise TypeError(f"not {what} frame: {type(f).__name__}")
    return chunk(**fields).SerializeToString()


def _frame_from_bytes(b: bytes, chunk: type[_Chunk], one: Callable[[_Chunk], Frame | None]) -> Frame | Batch | None:
    """The frame in a ``chunk`` message (None for an empty or unknown one); payload chunks are views of ``b``."""
    data = _data_view(b)
    if data is not None:
        return data
    m = chunk.FromString(b)
    if m.WhichOneof("kind") == "batch":
        return Batch(tuple(_known(one(_flat(c))) for c in m.batch.chunks))
    return one(m)


def _model_header(f: Frame) -> dict[str, Any] | None:
    if not isinstance(f, ModelMeta):
        return None
    return {"model": pb.ModelHeader(round=f.round, tensor_count=f.tensor_count, payload_bytes=f.payload_bytes)}


def download_frame_to_bytes(f: Frame | Batch) -> bytes:
    return _frame_to_bytes(f, pb.DownloadChunk, _model_header, "a download")


def download_frame_from_bytes(b: bytes) -> Frame | Batch | None:
    """The frame in a download chunk (None for an empty or unknown one); payload chunks are views of ``b``."""
    return _frame_from_bytes(b, pb.DownloadChunk, _download_frame)


def _flat(chunk: _Chunk) -> _Chunk:
    """A chunk of a batch: refused (ValueError) when it is itself a batch."""
    if chunk.WhichOneof("kind") == "batch":
        raise ValueError("a batch inside a batch")
    return chunk


def _known(frame: Frame | None) -> Frame:
    if frame is None:
        raise ValueError("an empty or unknown chunk inside a batch")
    return frame


def _download_frame(m: pb.DownloadChunk) -> Frame | None:
    kind = m.WhichOneof("kind")
    if kind == "data":
        return m.data
    if kind == "tensor":
        return _tensor(m.tensor)
    if kind == "model":
        return ModelMeta(m.model.round, m.model.tensor_count, m.model.payload_bytes)
    if kind == "trailer":
        return Trailer(m.trailer.tensor_count, m.trailer.payload_bytes)
    return None


def _upload_header(f: Frame) -> dict[str, Any] | None:
    if not isinstance(f, UploadMeta):
        return None
    return {"header": pb.UploadHeader(caller=caller_to_pb(f.caller), round=f.round, task=f.task,
                                      data_size=f.data_size, metrics=dict(f.metrics), tensor_count=f.tensor_count,
                                      eager=f.eager)}


def upload_frame_to_bytes(f: Frame | Batch) -> bytes:
    return _frame_to_bytes(f, pb.UploadChunk, _upload_header, "an upload")


def upload_frame_from_bytes(b: bytes) -> Frame | Batch | None:
    """The frame in an upload chunk (None for an empty or unknown one); payload chunks are views of ``b``."""
    return _frame_from_bytes(b, pb.UploadChunk, _upload_frame)


def _upload_frame(m: pb.UploadChunk) -> Frame | None:
    kind = m.WhichOneof("kind")
    if kind == "data":
        return m.data
    if kind == "tensor":
        return _tensor(m.tensor)
    if kind == "header":
        h = m.header
        return UploadMeta(caller_from_pb(h.caller), h.round, h.task, h.data_size, dict(h.metrics), h.tensor_count,
                          h.eager)
    if kind == "trailer":
        return Trailer(m.trailer.tensor_count, m.trailer.payload_bytes)
    return None
