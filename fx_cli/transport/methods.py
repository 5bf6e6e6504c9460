"""The ``fx.federation.v1.Federation`` service: method paths, the client stub and the server's handler table.

Written by hand (no ``_pb2_grpc``) so any grpcio release works; requests and
replies are (de)serialized by ``serde``, so both sides see dataclasses only.
"""
from __future__ import annotations

from typing import Any, Iterator, Protocol

import grpc

from fx_cli.transport import serde

SERVICE = "fx.federation.v1.Federation"


def path(method: str) -> str:
    """The full gRPC method path of ``method``."""
    return f"/{SERVICE}/{method}"


class FederationServicer(Protocol):
    """What the aggregator implements; ``context`` is the gRPC servicer context."""

    def join(self, request: serde.JoinRequest, context: Any) -> serde.JoinReply: ...
    def get_tasks(self, request: serde.TasksRequest, context: Any) -> serde.TaskReply: ...
    def download_model(self, request: serde.DownloadRequest, context: Any) -> Iterator[serde.Frame]: ...
    def upload_results(self, frames: Iterator[serde.Frame | None], context: Any) -> serde.UploadReply: ...
    def heartbeat(self, request: serde.HeartbeatRequest, context: Any) -> serde.HeartbeatReply: ...
    def ping(self, request: serde.PingRequest, context: Any) -> serde.PingReply: ...


def generic_handler(servicer: FederationServicer) -> grpc.GenericRpcHandler:
    """The server-side handler table for ``servicer``."""
    return grpc.method_handlers_generic_handler(SERVICE, {
        "Join": grpc.unary_unary_rpc_method_handler(
            servicer.join, request_deserializer=serde.join_request_from_bytes,
            response_serializer=serde.join_reply_to_bytes),
        "GetTasks": grpc.unary_unary_rpc_method_handler(
            servicer.get_tasks, request_deserializer=serde.tasks_request_from_bytes,
            response_serializer=serde.task_reply_to_bytes),
        "DownloadModel": grpc.unary_stream_rpc_method_handler(
            servicer.download_model, request_deserializer=serde.download_request_from_bytes,
            response_serializer=serde.download_frame_to_bytes),
        "UploadResults": grpc.stream_unary_rpc_method_handler(
            servicer.upload_results, request_deserializer=serde.upload_frame_from_bytes,
            response_serializer=serde.upload_reply_to_bytes),
        "Heartbeat": grpc.unary_unary_rpc_method_handler(
            servicer.heartbeat, request_deserializer=serde.heartbeat_request_from_bytes,
            response_serializer=serde.heartbeat_reply_to_bytes),
        "Ping": grpc.unary_unary_rpc_method_handler(
            servicer.ping, request_deserializer=serde.ping_request_from_bytes,
            response_serializer=serde.ping_reply_to_bytes),
    })


class FederationStub:
    """Client callables of every RPC on one channel."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.join = channel.unary_unary(path("Join"), request_serializer=serde.join_request_to_bytes,
                                        response_deserializer=serde.join_reply_from_bytes)
        self.get_tasks = channel.unary_unary(path("GetTasks"), request_serializer=serde.tasks_request_to_bytes,
                                             response_deserializer=serde.task_reply_from_bytes)
        self.download_model = channel.unary_stream(path("DownloadModel"),
                                                   request_serializer=serde.download_request_to_bytes,
                                                   response_deserializer=serde.download_frame_from_bytes)
        self.upload_results = channel.stream_unary(path("UploadResults"),
                                                   request_serializer=serde.upload_frame_to_bytes,
                                                   response_deserializer=serde.upload_reply_from_bytes)
        self.heartbeat = channel.unary_unary(path("Heartbeat"), request_serializer=serde.heartbeat_request_to_bytes,
                                             response_deserializer=serde.heartbeat_reply_from_bytes)
        self.ping = channel.unary_unary(path("Ping"), request_serializer=serde.ping_request_to_bytes,
                                        response_deserializer=serde.ping_reply_from_bytes)
