"""The one module that converts between protobuf messages and fx's dataclasses.

Every RPC is registered with (de)serializers from here, so servicers and
clients only ever see the frozen dataclasses below; tensor payloads travel as
plain ``bytes`` chunks and are rebuilt into numpy arrays by ``chunks``. The stream frames' own
encoding (by hand where protobuf would copy a payload) is in ``frames``.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Union

from fx_cli.proto import federation_pb2 as pb

# 1: first wave. 2: small stream frames may travel together in one message (``Batch``), each side only
# to a peer that said it speaks 2 (``DownloadRequest.protocol``, ``JoinReply.protocol``). 3: a task request
# may carry the caller's metrics-only results (``TasksRequest.results``), sent only to an aggregator of 3.
PROTOCOL = 3
BATCHES = 2
RESULTS_WITH_REQUEST = 3


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
    results_round: int = 0
    results: tuple["MetricsResult", ...] = ()  # protocol 3


@dataclass(frozen=True)
class MetricsResult:
    """A task's result without tensors (a validation), as a task request carries it."""
    task: str
    data_size: int
    metrics: dict[str, float]


@dataclass(frozen=True)
class TaskReply:
    action: Action
    round: int
    tasks: tuple[str, ...] = ()
    already_received: tuple[str, ...] = ()
    rounds_to_train: int = 0
    message: str = ""
    not_counted: tuple[str, ...] = ()  # the request's results that arrived after their round ended


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


def caller_from_pb(msg: pb.Caller) -> Caller:
    return Caller(msg.name, msg.plan_hash)


def caller_to_pb(c: Caller) -> pb.Caller:
    return pb.Caller(name=c.name, plan_hash=c.plan_hash)


# --- unary requests -------------------------------------------------------------------------

def join_request_to_bytes(r: JoinRequest) -> bytes:
    m = pb.JoinRequest(caller=caller_to_pb(r.caller), plan_json=r.plan_json, protocol=r.protocol)
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
    return JoinRequest(caller_from_pb(m.caller), m.plan_json, m.protocol, caps)


def join_reply_to_bytes(r: JoinReply) -> bytes:
    return pb.JoinResponse(federation_id=r.federation_id, protocol=r.protocol, round=r.round,
                           rounds_to_train=r.rounds_to_train, finished=r.finished).SerializeToString()


def join_reply_from_bytes(b: bytes) -> JoinReply:
    m = pb.JoinResponse.FromString(b)
    return JoinReply(m.federation_id, m.round, m.rounds_to_train, m.finished, m.protocol)


def tasks_request_to_bytes(r: TasksRequest) -> bytes:
    return pb.GetTasksRequest(caller=caller_to_pb(r.caller), results_round=r.results_round,
                              results=[pb.TaskResult(task=x.task, data_size=x.data_size, metrics=dict(x.metrics))
                                       for x in r.results]).SerializeToString()


def tasks_request_from_bytes(b: bytes) -> TasksRequest:
    m = pb.GetTasksRequest.FromString(b)
    return TasksRequest(caller_from_pb(m.caller), m.results_round,
                        tuple(MetricsResult(x.task, x.data_size, dict(x.metrics)) for x in m.results))


def task_reply_to_bytes(r: TaskReply) -> bytes:
    return pb.GetTasksResponse(action=r.action.value, round=r.round, tasks=list(r.tasks),
                               already_received=list(r.already_received), rounds_to_train=r.rounds_to_train,
                               message=r.message, not_counted=list(r.not_counted)).SerializeToString()


def task_reply_from_bytes(b: bytes) -> TaskReply:
    m = pb.GetTasksResponse.FromString(b)
    try:
        action = Action(m.action)
    except ValueError:
        action = Action.WAIT  # an unknown action from a newer server: ask again
    return TaskReply(action, m.round, tuple(m.tasks), tuple(m.already_received), m.rounds_to_train, m.message,
                     tuple(m.not_counted))


def download_request_to_bytes(r: DownloadRequest) -> bytes:
    return pb.DownloadRequest(caller=caller_to_pb(r.caller), round=r.round, protocol=r.protocol).SerializeToString()


def download_request_from_bytes(b: bytes) -> DownloadRequest:
    m = pb.DownloadRequest.FromString(b)
    return DownloadRequest(caller_from_pb(m.caller), m.round, m.protocol)


def heartbeat_request_to_bytes(r: HeartbeatRequest) -> bytes:
    return pb.HeartbeatRequest(caller=caller_to_pb(r.caller), round=r.round, task=r.task).SerializeToString()


def heartbeat_request_from_bytes(b: bytes) -> HeartbeatRequest:
    m = pb.HeartbeatRequest.FromString(b)
    return HeartbeatRequest(caller_from_pb(m.caller), m.round, m.task)


def heartbeat_reply_to_bytes(r: HeartbeatReply) -> bytes:
    return pb.HeartbeatResponse(round_open=r.round_open, round=r.round).SerializeToString()


def heartbeat_reply_from_bytes(b: bytes) -> HeartbeatReply:
    m = pb.HeartbeatResponse.FromString(b)
    return HeartbeatReply(m.round_open, m.round)


def ping_request_to_bytes(r: PingRequest) -> bytes:
    return pb.PingRequest(caller=caller_to_pb(r.caller), plan_json=r.plan_json).SerializeToString()


def ping_request_from_bytes(b: bytes) -> PingRequest:
    m = pb.PingRequest.FromString(b)
    return PingRequest(caller_from_pb(m.caller), m.plan_json)


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
