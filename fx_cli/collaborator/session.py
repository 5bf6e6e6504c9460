"""The collaborator's connection to the aggregator: one channel for every RPC (a large upload gets a connection of
its own), retries and readable errors."""
from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import threading
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

import grpc
import numpy as np

from fx_cli.errors import FxError
from fx_cli.plan import Plan
from fx_cli.plan.identity import canonical_bytes
from fx_cli.transport.chunks import StreamError, chunk_bytes, read_tensors, tensor_frames, trailer_of
from fx_cli.transport.client import RetryPolicy, Retrier, code_of, open_channel, rpc_failure
from fx_cli.transport.codec import decode
from fx_cli.transport.methods import FederationStub
from fx_cli.transport.serde import (BATCHES, RESULTS_WITH_REQUEST, Batch, Capabilities, Caller, DownloadRequest,
                                    Frame, HeartbeatReply, HeartbeatRequest, JoinReply, JoinRequest, MetricsResult,
                                    ModelMeta, Outcome, PingReply, PingRequest, TaskReply, TasksRequest, TensorMeta,
                                    UploadMeta, UploadReply)
from fx_cli.transport.batches import batched, gathered, unbatched
from fx_cli.transport.server import stream_window

log = logging.getLogger("fx.collaborator")
Encoded = tuple[TensorMeta, memoryview]  # a tensor's wire header and payload
T = TypeVar("T")
# The server answers a long-poll within ~30 s; allow for a slow network on top.
POLL_TIMEOUT = 75.0
SHORT_TIMEOUT = 20.0


def _local_rejection(target: str, workspace: Path, name: str, cert_folder: str, err: grpc.RpcError) -> FxError | None:
    from fx_cli.pki.diagnose import local_rejection

    return local_rejection(target, workspace, name, cert_folder)


def _tls_expected(target: str, err: grpc.RpcError) -> FxError | None:
    from fx_cli.pki.tlsprobe import mismatch

    return mismatch(target, ours=False)


class RoundGone(Exception):
    """The round whose model was asked for has ended (the aggregator moved on)."""


class RunEnded(FxError):
    """The aggregator ended the run before it was complete."""


class AggregatorClient:
    """Every call of the federation protocol, as this collaborator."""

    def __init__(self, plan: Plan, name: str, credentials: grpc.ChannelCredentials | None) -> None:
        net = plan.network
        self.target = f"{net.agg_addr}:{int(net.agg_port)}"
        self.name = name
        self.workspace = plan.workspace
        self.chunk = chunk_bytes(net.chunk_size_mib)
        self.caller = Caller(name, plan.hash)
        self.plan_json = canonical_bytes(plan.config)
        suspect = None
        if credentials is not None and net.require_client_auth:
            suspect = functools.partial(_local_rejection, self.target, plan.workspace, name, net.cert_folder)
        elif credentials is None:  # connections closed during set-up: does the aggregator expect TLS?
            suspect = functools.partial(_tls_expected, self.target)
        self.retrier = Retrier(RetryPolicy(net.client_reconnect_interval, net.reconnect_deadline), self.target,
                               suspect=suspect)
        self.window = stream_window(net.stream_window_mib, self.chunk)  # bytes in flight per stream; None: gRPC's
        self.credentials = credentials
        self.channel = open_channel(self.target, credentials, self.chunk, self.window)
        self.upload_connection = int(net.upload_connection_mib * 2**20)  # 0: every upload on self.channel
        self.stub = FederationStub(self.channel)
        self.batches = False  # whether the aggregator takes batched upload frames (it said so when we joined)
        self.results_with_requests = False  # whether a task request may carry metrics-only results (protocol 3)

    def __enter__(self) -> "AggregatorClient":
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def _call(self, what: str, fn: Callable[[], T], retry: bool = True) -> T:
        try:
            return self.retrier.call(what, fn) if retry else fn()
        except grpc.RpcError as err:
            if code_of(err) == grpc.StatusCode.ABORTED:
                raise RunEnded(str(err.details()),
                               "see the aggregator's log for the cause; restart this collaborator when the "
                               "aggregator runs again") from None
            raise rpc_failure(err, self.target, self.name, what, self.workspace) from None

    def join(self, capabilities: Capabilities | None = None) -> JoinReply:
        request = JoinRequest(self.caller, self.plan_json, capabilities=capabilities)
        reply = self._call("join", lambda: self.stub.join(request, timeout=SHORT_TIMEOUT))
        self.batches = reply.protocol >= BATCHES
        self.results_with_requests = reply.protocol >= RESULTS_WITH_REQUEST
        return reply

    def get_tasks(self, results_round: int = 0, results: tuple[MetricsResult, ...] = ()) -> TaskReply:
        """The next instruction; ``results`` (protocol 3) are delivered with the request, and a retry resends
        them (the aggregator counts each once)."""
        request = TasksRequest(self.caller, results_round, results)
        return self._call("a task request", lambda: self.stub.get_tasks(request, timeout=POLL_TIMEOUT))

    def heartbeat(self, round_num: int, task: str) -> HeartbeatReply:
        request = HeartbeatRequest(self.caller, round_num, task)
        return self._call("a heartbeat", lambda: self.stub.heartbeat(request, timeout=SHORT_TIMEOUT), retry=False)

    def ping(self) -> PingReply:
        request = PingRequest(self.caller, self.plan_json)
        return self._call("a ping", lambda: self.stub.ping(request, timeout=SHORT_TIMEOUT), retry=False)

    def download(self, round_num: int, into: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """The global model that is the input of ``round_num``; ``RoundGone`` when that round is over.

        A tensor whose name, dtype and shape match an array of ``into`` is written straight into that array
        (see ``TaskRunner.tensor_buffers``); the others get new arrays.
        """
        request = DownloadRequest(self.caller, round_num)
        try:
            return self._call(f"the round {round_num + 1} model", lambda: self._download(request, into or {}))
        except StreamError as err:
            raise FxError(f"the model of round {round_num + 1} from {self.target} is damaged: {err}",
                          "restart the collaborator; if it persists, check the network path to the aggregator") from None

    def _download(self, request: DownloadRequest, into: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            frames: Iterator[Frame | None] = unbatched(self.stub.download_model(request))
            head = next(frames, None)
            if not isinstance(head, ModelMeta) or head.round != request.round:
                raise StreamError(f"expected the model header of round {request.round + 1}, got {head!r:.80}")
            limit = max(head.payload_bytes, 1)
            return {meta.name: decode(meta, payload) for meta, payload in read_tensors(frames, limit, into)}
        except grpc.RpcError as err:
            if code_of(err) == grpc.StatusCode.OUT_OF_RANGE:
                raise RoundGone(str(err.details())) from None
            raise

    def upload(self, meta: UploadMeta, tensors: Sequence[Encoded] | Callable[[], Iterable[Encoded]],
               nbytes: int | None = None) -> UploadReply:
        """Stream a task result; a result the server already holds counts as delivered.

        ``tensors``: each tensor's header and payload, or a function yielding them one at a time as they
        are sent (called again on a retry), so that only one encoded tensor exists at a time.
        With tensors, only the header goes out until the server's initial metadata says a transfer
        slot is ours, so an upload waiting in the aggregator's queue holds no buffers there. A small one
        (protocol 2, within one batch) goes whole in one message, marked ``eager``: there is no go to wait for.
        ``nbytes``: the tensors' size (counted from ``tensors`` when it is a sequence). An upload of at least
        ``network.settings.upload_connection_mib`` streams over a connection of its own, closed when it is done:
        the aggregator's gRPC keeps part of what a connection has received buffered for as long as the
        connection lives, so uploads over the long-lived connections would leave it a few MiB per collaborator.
        """
        source = tensors if callable(tensors) else (lambda: tensors)
        if nbytes is None:
            nbytes = 0 if callable(tensors) else sum(payload.nbytes for _, payload in tensors)
        own_connection = bool(meta.tensor_count) and 0 < self.upload_connection <= nbytes

        def attempt() -> UploadReply:
            if not own_connection:
                return stream(self.stub)
            with contextlib.closing(open_channel(self.target, self.credentials, self.chunk, self.window,
                                                 own_connection=True)) as channel:
                return stream(FederationStub(channel))

        def stream(stub: FederationStub) -> UploadReply:
            go = threading.Event()
            failed: list[BaseException] = []

            def body() -> Iterator[Frame]:
                sent: list[TensorMeta] = []
                try:
                    for tmeta, payload in source():
                        sent.append(tmeta)
                        yield from tensor_frames(tmeta, payload, self.chunk)
                except Exception as err:  # encoding failed: end the stream without a trailer, raise it here
                    failed.append(err)
                    return
                yield trailer_of(sent)

            def frames() -> Iterator[Frame | Batch]:
                if not meta.tensor_count:
                    yield from batched(itertools.chain([meta], body())) if self.batches else itertools.chain(
                        [meta], body())
                    return
                if not self.batches:  # the header goes alone: the tensors wait for the server's go
                    yield meta
                    go.wait()
                    yield from body()
                    return
                rest = body()
                first, whole = gathered(rest)
                if whole:  # small: header and tensors in one message, no go to wait for
                    yield from batched([replace(meta, eager=True), *first])
                    return
                yield meta
                go.wait()
                yield from batched(itertools.chain(first, rest))

            call = stub.upload_results.future(frames())
            try:
                if meta.tensor_count:
                    call.initial_metadata()  # returns when the server says go, or the call ended
            finally:
                go.set()
            try:
                reply = call.result()
            except grpc.RpcError as err:
                if failed:
                    raise failed[0] from None
                if code_of(err) == grpc.StatusCode.ALREADY_EXISTS:
                    log.info("the aggregator already had the '%s' result of round %d", meta.task, meta.round + 1)
                    return UploadReply(Outcome.ACCEPTED, 0, "already received")
                raise
            if failed:
                raise failed[0]
            return reply
        return self._call(f"the '{meta.task}' result", attempt)
