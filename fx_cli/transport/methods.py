"""The ``fx.federation.v1.Federation`` service: method paths, the client stub and the server's handler table.

Written by hand (no ``_pb2_grpc``) so any grpcio release works; requests and
replies are (de)serialized by ``serde`` and stream frames by ``frames``, so both sides see dataclasses only.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Protocol

import grpc
from google.protobuf.message import DecodeError

from fx_cli.transport import serde
from fx_cli.transport.batches import unbatched
from fx_cli.transport.frames import (download_frame_from_bytes, download_frame_to_bytes, upload_frame_from_bytes,
                                     upload_frame_to_bytes)

SERVICE = "fx.federation.v1.Federation"


def path(method: str) -> str:
    """The full gRPC method path of ``method``."""
    return f"/{SERVICE}/{method}"


class FederationServicer(Protocol):
    """What the aggregator implements; ``context`` is the gRPC servicer context."""

    def join(self, request: serde.JoinRequest, context: Any) -> serde.JoinReply: ...
    def get_tasks(self, request: serde.TasksRequest, context: Any) -> serde.TaskReply: ...
    def download_model(self, request: serde.DownloadRequest, context: Any) -> Iterator[serde.Frame | serde.Batch]: ...
    def upload_results(self, frames: Iterator[serde.Frame | None], context: Any) -> serde.UploadReply: ...
    def heartbeat(self, request: serde.HeartbeatRequest, context: Any) -> serde.HeartbeatReply: ...
    def ping(self, request: serde.PingRequest, context: Any) -> serde.PingReply: ...
    def secagg(self, stage: str, request: Any, context: Any) -> Any: ...


def _parsed(parse: Callable[[bytes], Any], raw: bytes, context: Any, what: str) -> Any:
    """``parse(raw)``, or the call is aborted INVALID_ARGUMENT (grpc would answer INTERNAL)."""
    try:
        return parse(raw)
    except (DecodeError, ValueError, TypeError):
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed {what} message")


def _unary(method: Callable[[Any, Any], Any], parse: Callable[[bytes], Any], what: str) -> Callable[[bytes, Any], Any]:
    return lambda raw, context: method(_parsed(parse, raw, context, what), context)


def _frames(method: Callable[[Any, Any], Any], parse: Callable[[bytes], Any]) -> Callable[[Iterator[bytes], Any], Any]:
    """A client-streaming handler: ``method`` gets the stream's frames, batches opened (protocol 2)."""
    return lambda raws, context: method(unbatched(_parsed(parse, raw, context, "upload chunk") for raw in raws),
                                        context)


def generic_handler(servicer: FederationServicer) -> grpc.GenericRpcHandler[Any, Any]:
    """The server-side handler table for ``servicer`` (requests parsed here, so garbage gets INVALID_ARGUMENT)."""
    s = servicer
    return grpc.method_handlers_generic_handler(SERVICE, {
        "Join": grpc.unary_unary_rpc_method_handler(
            _unary(s.join, serde.join_request_from_bytes, "Join"), response_serializer=serde.join_reply_to_bytes),
        "GetTasks": grpc.unary_unary_rpc_method_handler(
            _unary(s.get_tasks, serde.tasks_request_from_bytes, "GetTasks"),
            response_serializer=serde.task_reply_to_bytes),
        "DownloadModel": grpc.unary_stream_rpc_method_handler(
            _unary(s.download_model, serde.download_request_from_bytes, "DownloadModel"),
            response_serializer=download_frame_to_bytes),
        "UploadResults": grpc.stream_unary_rpc_method_handler(
            _frames(s.upload_results, upload_frame_from_bytes), response_serializer=serde.upload_reply_to_bytes),
        "Heartbeat": grpc.unary_unary_rpc_method_handler(
            _unary(s.heartbeat, serde.heartbeat_request_from_bytes, "Heartbeat"),
            response_serializer=serde.heartbeat_reply_to_bytes),
        "Ping": grpc.unary_unary_rpc_method_handler(
            _unary(s.ping, serde.ping_request_from_bytes, "Ping"), response_serializer=serde.ping_reply_to_bytes),
        **_secagg_handlers(s),
    })


SECAGG_UNARY = ("SecAggAdvertise", "SecAggShareKeys", "SecAggUnmask", "SecAggReveal")
SECAGG_STREAM = "SecAggUploadMasked"


def _secagg_handlers(s: FederationServicer) -> dict[str, Any]:
    """The secure-aggregation stages (``fx_cli/secagg``), all answered by ``s.secagg(stage, request, context)``."""
    from fx_cli.transport import secagg_serde as ss

    def stage_of(stage: str) -> Callable[[Any, Any], Any]:
        return lambda request, context: s.secagg(stage, request, context)

    handlers: dict[str, Any] = {
        stage: grpc.unary_unary_rpc_method_handler(
            _unary(stage_of(stage), ss.call_from_bytes, stage), response_serializer=ss.answer_to_bytes)
        for stage in SECAGG_UNARY}
    handlers[SECAGG_STREAM] = grpc.stream_unary_rpc_method_handler(
        lambda raws, ctx: s.secagg(SECAGG_STREAM, (_parsed(ss.call_from_bytes, raw, ctx, SECAGG_STREAM)
                                                   for raw in raws), ctx),
        response_serializer=ss.answer_to_bytes)
    return handlers


class FederationStub:
    """Client callables of every RPC on one channel."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.join: grpc.UnaryUnaryMultiCallable[serde.JoinRequest, serde.JoinReply] = channel.unary_unary(
            path("Join"), request_serializer=serde.join_request_to_bytes,
            response_deserializer=serde.join_reply_from_bytes)
        self.get_tasks: grpc.UnaryUnaryMultiCallable[serde.TasksRequest, serde.TaskReply] = channel.unary_unary(
            path("GetTasks"), request_serializer=serde.tasks_request_to_bytes,
            response_deserializer=serde.task_reply_from_bytes)
        self.download_model: grpc.UnaryStreamMultiCallable[serde.DownloadRequest, serde.Frame | serde.Batch | None] = (
            channel.unary_stream(path("DownloadModel"), request_serializer=serde.download_request_to_bytes,
                                 response_deserializer=download_frame_from_bytes))
        self.upload_results: grpc.StreamUnaryMultiCallable[serde.Frame | serde.Batch, serde.UploadReply] = (
            channel.stream_unary(path("UploadResults"), request_serializer=upload_frame_to_bytes,
                                 response_deserializer=serde.upload_reply_from_bytes))
        self.heartbeat: grpc.UnaryUnaryMultiCallable[serde.HeartbeatRequest, serde.HeartbeatReply] = (
            channel.unary_unary(path("Heartbeat"), request_serializer=serde.heartbeat_request_to_bytes,
                                response_deserializer=serde.heartbeat_reply_from_bytes))
        self.ping: grpc.UnaryUnaryMultiCallable[serde.PingRequest, serde.PingReply] = channel.unary_unary(
            path("Ping"), request_serializer=serde.ping_request_to_bytes,
            response_deserializer=serde.ping_reply_from_bytes)
        from fx_cli.transport import secagg_serde as ss

        self.secagg: dict[str, Any] = {stage: channel.unary_unary(
            path(stage), request_serializer=ss.call_to_bytes, response_deserializer=ss.answer_from_bytes)
            for stage in SECAGG_UNARY}
        self.secagg[SECAGG_STREAM] = channel.stream_unary(
            path(SECAGG_STREAM), request_serializer=ss.call_to_bytes, response_deserializer=ss.answer_from_bytes)
