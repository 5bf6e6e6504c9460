"""The one module that converts between protobuf messages and fx's dataclasses.

Every RPC is registered with (de)serializers from here, so servicers and
clients only ever see the frozen dataclasses below; tensor payloads travel as
plain ``bytes`` chunks and are rebuilt into numpy arrays by ``chunks``.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Callable, TypeVar, Union

from fx_cli.proto import federation_pb2 as pb
from fx_cli.tensors import varint

# 1: first wave. 2: small stream frames may travel together in one message (``Batch``), each side only
# to a peer that said it speaks 2 (``DownloadRequest.protocol``, ``JoinReply.protocol``).
PROTOCOL = 2
BATCHES = 2


@dataclass(frozen=True)
class Caller:
    name: str
    plan_hash: str


class Action(enum.Enum):
    RUN = pb.GetTasksResponse.RUN
    WAIT = pb.GetTasksResponse.WAIT
    MISSED = pb.GetTasksResponse.MISSED
    FINISHED = pb.GetTasksResponse.FINISHED
    ABORTED = pb.GetTasksResponse.ABORTED


class Outcome(enum.Enum):
    ACCEPTED = pb.UploadResponse.ACCEPTED
    LATE = pb.UploadResponse.LATE


@dataclass(frozen=True)
class Capabilities:
    """What a collaborator reports about itself at join (unverified: the aggregator treats it as a claim)."""

    train_samples: int
    valid_samples: int
    cpu_count: int
    memory_bytes: int
    gpu: bool
    fx_version: str


@dataclass(frozen=True)
class JoinRequest:
    caller: Caller
    plan_json: bytes
    protocol: int = PROTOCOL
    capabilities: Capabilities | None = None


@dataclass(frozen=True)
class JoinReply:
    federation_id: str
    round: int
    rounds_to_train: int
    finished: bool
    protocol: int = PROTOCOL


@dataclass(frozen=True)
class TasksRequest:
    caller: Caller


@dataclass(frozen=True)
class TaskReply:
    action: Action
    round: int
    tasks: tuple[str, ...] = ()
    already_received: tuple[str, ...] = ()
    rounds_to_train: int = 0
    message: str = ""


@dataclass(frozen=True)
class DownloadRequest:
    caller: Caller
    round: int
    protocol: int = PROTOCOL


@dataclass(frozen=True)
class HeartbeatRequest:
    caller: Caller
    round: int
    task: str


@dataclass(frozen=True)
class HeartbeatReply:
    round_open: bool
    round: int


@dataclass(frozen=True)
class PingRequest:
    caller: Caller
    plan_json: bytes


@dataclass(frozen=True)
class PingReply:
    federation_id: str
    plan_hash: str
    plan_matches: bool
    differing_keys: tuple[str, ...]
    round: int
    rounds_to_train: int
    finished: bool


@dataclass(frozen=True)
class UploadReply:
    outcome: Outcome
    bytes_received: int
    message: str = ""


@dataclass(frozen=True)
class TensorMeta:
    """One tensor of a stream: how to rebuild it and how many payload bytes follow."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    crc32: int
    pipeline: str = "none"
    metadata: dict[str, str] = field(default_factory=dict)
    delta: bool = False


@dataclass(frozen=True)
class ModelMeta:
    round: int
    tensor_count: int
    payload_bytes: int


@dataclass(frozen=True)
class UploadMeta:
    caller: Caller
    round: int
    task: str
    data_size: int
    metrics: dict[str, float]
    tensor_count: int = 0
    eager: bool = False  # protocol 2: the tensors follow without waiting for the server's go (a small upload)


@dataclass(frozen=True)
class Trailer:
    tensor_count: int
    payload_bytes: int


# A stream element: a header, a tensor header, a payload chunk or the trailer. Payload chunks arrive as
# memoryviews of the received message (no copy) and may be sent as any bytes-like object.
Frame = Union[ModelMeta, UploadMeta, TensorMeta, bytes, memoryview, Trailer]
DATA = (bytes, bytearray, memoryview)
# ``DownloadChunk.data`` and ``UploadChunk.data`` are both field 3, wire type 2 (length-delimited).
_DATA_TAG = b"\x1a"


@dataclass(frozen=True)
class Batch:
    """Consecutive frames of one stream sent as one message (protocol 2).

    A synchronous gRPC server hands every message between two threads, which for a small model costs more
    than its bytes; so runs of headers and small chunks travel together, and large chunks alone.
    """
    frames: tuple[Frame, ...]


def is_data(frame: object) -> bool:
    """Whether a stream frame is a payload chunk."""
    return isinstance(frame, DATA)


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


def _caller(msg: pb.Caller) -> Caller:
    return Caller(msg.name, msg.plan_hash)


def _caller_pb(c: Caller) -> pb.Caller:
    return pb.Caller(name=c.name, plan_hash=c.plan_hash)


# --- unary requests -------------------------------------------------------------------------

def join_request_to_bytes(r: JoinRequest) -> bytes:
    m = pb.JoinRequest(caller=_caller_pb(r.caller), plan_json=r.plan_json, protocol=r.protocol)
    c = r.capabilities
    if c is not None:
        m.has_capabilities = True
        m.train_samples, m.valid_samples, m.cpu_count = c.train_samples, c.valid_samples, c.cpu_count
        m.memory_bytes, m.gpu, m.fx_version = c.memory_bytes, c.gpu, c.fx_version
    return m.SerializeToString()


def join_request_from_bytes(b: bytes) -> JoinRequest:
    m = pb.JoinRequest.FromString(b)
    caps = Capabilities(m.train_samples, m.valid_samples, m.cpu_count, m.memory_bytes, m.gpu,
                        m.fx_version[:64]) if m.has_capabilities else None
    return JoinRequest(_caller(m.caller), m.plan_json, m.protocol, caps)


def join_reply_to_bytes(r: JoinReply) -> bytes:
    return pb.JoinResponse(federation_id=r.federation_id, protocol=r.protocol, round=r.round,
                           rounds_to_train=r.rounds_to_train, finished=r.finished).SerializeToString()


def join_reply_from_bytes(b: bytes) -> JoinReply:
    m = pb.JoinResponse.FromString(b)
    return JoinReply(m.federation_id, m.round, m.rounds_to_train, m.finished, m.protocol)


def tasks_request_to_bytes(r: TasksRequest) -> bytes:
    return pb.GetTasksRequest(caller=_caller_pb(r.caller)).SerializeToString()


def tasks_request_from_bytes(b: bytes) -> TasksRequest:
    return TasksRequest(_caller(pb.GetTasksRequest.FromString(b).caller))


def task_reply_to_bytes(r: TaskReply) -> bytes:
    return pb.GetTasksResponse(action=r.action.value, round=r.round, tasks=list(r.tasks),
                               already_received=list(r.already_received), rounds_to_train=r.rounds_to_train,
                               message=r.message).SerializeToString()


def task_reply_from_bytes(b: bytes) -> TaskReply:
    m = pb.GetTasksResponse.FromString(b)
    try:
        action = Action(m.action)
    except ValueError:
        action = Action.WAIT  # an unknown action from a newer server: ask again
    return TaskReply(action, m.round, tuple(m.tasks), tuple(m.already_received), m.rounds_to_train, m.message)


def download_request_to_bytes(r: DownloadRequest) -> bytes:
    return pb.DownloadRequest(caller=_caller_pb(r.caller), round=r.round, protocol=r.protocol).SerializeToString()


def download_request_from_bytes(b: bytes) -> DownloadRequest:
    m = pb.DownloadRequest.FromString(b)
    return DownloadRequest(_caller(m.caller), m.round, m.protocol)


def heartbeat_request_to_bytes(r: HeartbeatRequest) -> bytes:
    return pb.HeartbeatRequest(caller=_caller_pb(r.caller), round=r.round, task=r.task).SerializeToString()


def heartbeat_request_from_bytes(b: bytes) -> HeartbeatRequest:
    m = pb.HeartbeatRequest.FromString(b)
    return HeartbeatRequest(_caller(m.caller), m.round, m.task)


def heartbeat_reply_to_bytes(r: HeartbeatReply) -> bytes:
    return pb.HeartbeatResponse(round_open=r.round_open, round=r.round).SerializeToString()


def heartbeat_reply_from_bytes(b: bytes) -> HeartbeatReply:
    m = pb.HeartbeatResponse.FromString(b)
    return HeartbeatReply(m.round_open, m.round)


def ping_request_to_bytes(r: PingRequest) -> bytes:
    return pb.PingRequest(caller=_caller_pb(r.caller), plan_json=r.plan_json).SerializeToString()


def ping_request_from_bytes(b: bytes) -> PingRequest:
    m = pb.PingRequest.FromString(b)
    return PingRequest(_caller(m.caller), m.plan_json)


def ping_reply_to_bytes(r: PingReply) -> bytes:
    return pb.PingResponse(federation_id=r.federation_id, plan_hash=r.plan_hash, plan_matches=r.plan_matches,
                           differing_keys=list(r.differing_keys), round=r.round,
                           rounds_to_train=r.rounds_to_train, finished=r.finished).SerializeToString()


def ping_reply_from_bytes(b: bytes) -> PingReply:
    m = pb.PingResponse.FromString(b)
    return PingReply(m.federation_id, m.plan_hash, m.plan_matches, tuple(m.differing_keys), m.round,
                     m.rounds_to_train, m.finished)


def upload_reply_to_bytes(r: UploadReply) -> bytes:
    return pb.UploadResponse(outcome=r.outcome.value, bytes_received=r.bytes_received,
                             message=r.message).SerializeToString()


def upload_reply_from_bytes(b: bytes) -> UploadReply:
    m = pb.UploadResponse.FromString(b)
    return UploadReply(Outcome(m.outcome) if m.outcome else Outcome.LATE, m.bytes_received, m.message)


# --- stream frames --------------------------------------------------------------------------

def _tensor_pb(t: TensorMeta) -> pb.TensorHeader:
    return pb.TensorHeader(name=t.name, dtype=t.dtype, shape=list(t.shape), pipeline=t.pipeline,
                           metadata=dict(t.metadata), nbytes=t.nbytes, crc32=t.crc32, delta=t.delta)


def _tensor(m: pb.TensorHeader) -> TensorMeta:
    return TensorMeta(m.name, m.dtype, tuple(int(d) for d in m.shape), m.nbytes, m.crc32,
                      m.pipeline or "none", dict(m.metadata), m.delta)


def download_frame_to_bytes(f: Frame | Batch) -> bytes:
    if isinstance(f, DATA):
        return _data_message(f)
    if isinstance(f, Batch):
        return _batch_message(f, download_frame_to_bytes)
    if isinstance(f, TensorMeta):
        msg = pb.DownloadChunk(tensor=_tensor_pb(f))
    elif isinstance(f, ModelMeta):
        msg = pb.DownloadChunk(model=pb.ModelHeader(round=f.round, tensor_count=f.tensor_count,
                                                    payload_bytes=f.payload_bytes))
    elif isinstance(f, Trailer):
        msg = pb.DownloadChunk(trailer=pb.StreamTrailer(tensor_count=f.tensor_count, payload_bytes=f.payload_bytes))
    else:
        raise TypeError(f"not a download frame: {type(f).__name__}")
    return msg.SerializeToString()


def download_frame_from_bytes(b: bytes) -> Frame | Batch | None:
    """The frame in a chunk message (None for an empty or unknown one); payload chunks are views of ``b``."""
    data = _data_view(b)
    if data is not None:
        return data
    m = pb.DownloadChunk.FromString(b)
    if m.WhichOneof("kind") == "batch":
        return Batch(tuple(_known(_download_frame(_flat(c))) for c in m.batch.chunks))
    return _download_frame(m)


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


def upload_frame_to_bytes(f: Frame | Batch) -> bytes:
    if isinstance(f, DATA):
        return _data_message(f)
    if isinstance(f, Batch):
        return _batch_message(f, upload_frame_to_bytes)
    if isinstance(f, TensorMeta):
        msg = pb.UploadChunk(tensor=_tensor_pb(f))
    elif isinstance(f, UploadMeta):
        msg = pb.UploadChunk(header=pb.UploadHeader(caller=_caller_pb(f.caller), round=f.round, task=f.task,
                                                    data_size=f.data_size, metrics=dict(f.metrics),
                                                    tensor_count=f.tensor_count, eager=f.eager))
    elif isinstance(f, Trailer):
        msg = pb.UploadChunk(trailer=pb.StreamTrailer(tensor_count=f.tensor_count, payload_bytes=f.payload_bytes))
    else:
        raise TypeError(f"not an upload frame: {type(f).__name__}")
    return msg.SerializeToString()


def upload_frame_from_bytes(b: bytes) -> Frame | Batch | None:
    """The frame in an upload chunk (None for an empty or unknown one); payload chunks are views of ``b``."""
    data = _data_view(b)
    if data is not None:
        return data
    m = pb.UploadChunk.FromString(b)
    if m.WhichOneof("kind") == "batch":
        return Batch(tuple(_known(_upload_frame(_flat(c))) for c in m.batch.chunks))
    return _upload_frame(m)


def _upload_frame(m: pb.UploadChunk) -> Frame | None:
    kind = m.WhichOneof("kind")
    if kind == "data":
        return m.data
    if kind == "tensor":
        return _tensor(m.tensor)
    if kind == "header":
        h = m.header
        return UploadMeta(_caller(h.caller), h.round, h.task, h.data_size, dict(h.metrics), h.tensor_count,
                          h.eager)
    if kind == "trailer":
        return Trailer(m.trailer.tensor_count, m.trailer.payload_bytes)
    return None
