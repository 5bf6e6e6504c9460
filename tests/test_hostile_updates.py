"""Hostile updates against a real aggregator process: each refused with a status and a reason, the sender named
in the aggregator's log, the round carrying on with the honest collaborators, the aggregator never crashing.

The hostile side is a small raw client built on ``fx_cli.transport`` (a real mutual-TLS channel with
collaborator 'one''s own certificate): it writes frames by hand, so it can break every rule.
"""
from __future__ import annotations

import re
import threading
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import grpc
import numpy as np
import pytest

from fx_cli.pki.tls import client_credentials
from fx_cli.plan import load_plan
from fx_cli.tensors.pbuf import read_model
from fx_cli.transport import codec
from fx_cli.transport.chunks import chunk_bytes, tensor_frames, trailer_of
from fx_cli.transport.client import open_channel
from fx_cli.proto import federation_pb2 as pb
from fx_cli.transport.frames import upload_frame_to_bytes
from fx_cli.transport.methods import FederationStub, path
from fx_cli.transport.serde import (Action, Batch, Caller, DownloadRequest, Frame, HeartbeatRequest, JoinRequest,
                                    TaskReply, TasksRequest, TensorMeta, Trailer, UploadMeta, is_data)
from fx_cli.transport.batches import unbatched
from tests.fault_helpers import files, flat, in_log, processes, wait_until
from tests.runtime_helpers import Proc, final_model, make_workspace, reference_fedavg

pytestmark = pytest.mark.slow
TIMEOUT = 60.0
CODE = grpc.StatusCode


class RawClient:
    """Collaborator 'one' speaking the protocol frame by frame."""

    def __init__(self, ws: Path) -> None:
        plan = load_plan(ws / "plan" / "plan.yaml")
        net = plan.network
        self.chunk = chunk_bytes(net.chunk_size_mib)
        self.channel = open_channel(f"{net.agg_addr}:{net.agg_port}", client_credentials(ws, "one"), self.chunk)
        self.stub = FederationStub(self.channel)
        self.me = Caller("one", plan.hash)
        self.model = read_model(ws / "save" / "init.pbuf").tensors

    def join_and_get_tasks(self) -> TaskReply:
        self.stub.join(JoinRequest(self.me, b""), timeout=30, wait_for_ready=True)
        return self.stub.get_tasks(TasksRequest(self.me), timeout=30)

    def frames(self, tensors: dict[str, np.ndarray], *, trailer: bool = True) -> list[Frame]:
        out: list[Frame] = []
        metas = []
        for name, array in tensors.items():
            meta, payload = codec.encode(name, array, None)
            metas.append(meta)
            out.extend(tensor_frames(meta, payload, self.chunk))
        return out + ([trailer_of(metas)] if trailer else [])

    def header(self, task: str = "train", round_num: int = 0, count: int | None = None) -> UploadMeta:
        return UploadMeta(self.me, round_num, task, 100, {"loss": 0.5}, len(self.model) if count is None else count)

    def beat_until(self, stop: threading.Event, round_num: int = 0, task: str = "train") -> None:
        """Heartbeat as 'one' (well inside heartbeat_timeout) until ``stop`` is set or the run ends."""
        while not stop.wait(0.2):
            try:
                self.stub.heartbeat(HeartbeatRequest(self.me, round_num, task), timeout=10)
            except grpc.RpcError:
                return

    def take_leave(self) -> None:
        """Ask for tasks until told the run is over, then close: the aggregator need not wait for a goodbye."""
        try:
            over = (Action.FINISHED, Action.ABORTED)
            while self.stub.get_tasks(TasksRequest(self.me), timeout=60).action not in over:
                pass
        except grpc.RpcError:
            pass
        self.channel.close()

    def send(self, frames: list[Frame]) -> tuple[grpc.StatusCode, str]:
        try:
            reply = self.stub.upload_results(iter(frames), timeout=20)
            return CODE.OK, reply.message
        except grpc.RpcError as err:
            return err.code(), err.details() or ""

    def send_raw(self, messages: list[bytes]) -> tuple[grpc.StatusCode, str]:
        """Messages as they are: what no fx serializer would write."""
        call = self.channel.stream_unary(path("UploadResults"), request_serializer=lambda b: b,
                                         response_deserializer=lambda b: b)
        try:
            call(iter(messages), timeout=20)
            return CODE.OK, ""
        except grpc.RpcError as err:
            return err.code(), err.details() or ""

    def download(self, protocol: int) -> list[object]:
        """The round 1 model's messages, asked for as a collaborator of ``protocol`` would."""
        return [bytes(m) if is_data(m) else m  # type: ignore[arg-type]
                for m in self.stub.download_model(DownloadRequest(self.me, 0, protocol), timeout=30)]

    def cut_off(self, frames: list[Frame]) -> grpc.StatusCode:
        """Send part of an upload, then drop the call as a dying client would."""
        more = threading.Event()

        def stream() -> Iterator[Frame]:
            yield from frames
            more.wait(20)

        call = self.stub.upload_results.future(stream())
        call.initial_metadata()  # the aggregator has started receiving
        call.cancel()
        more.set()
        return call.code()


def with_tensor(model: dict[str, np.ndarray], name: str, value: np.ndarray) -> dict[str, np.ndarray]:
    return {**model, name: value}


def cut_noticed(agg: Proc) -> bool:
    """The aggregator saw the cancelled upload end and kept nothing.

    gRPC reports a client's cancel to the server's request iterator as an error, or, when the read in flight
    completes first, as the end of the stream; the aggregator then refuses it as truncated. Either way nothing
    is kept (the test checks that no spill file is left).
    """
    text = flat(agg.output())
    return ("round 1: the upload of 'train' from 'one' was cut off; nothing kept" in text
            or re.search(r"rejected: tensor 'w0': stream ended after [1-9][0-9,]* of", text) is not None)


def test_hostile_updates_are_refused_the_sender_is_named_and_the_round_goes_on(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, ["one", "two"], rounds=2, num_params=40000)
    with processes(ws) as procs:
        agg = procs.aggregator()
        raw = RawClient(ws)
        assert raw.join_and_get_tasks().tasks[:2] == ("aggregated_model_validation", "train")
        m, h = raw.model, raw.header()
        w0 = m["w0"]
        nan, inf = w0.copy(), w0.copy()
        nan[7], inf[-1] = np.nan, np.inf
        huge = TensorMeta("w0", "<f4", w0.shape, 10**12, 0)
        cases = {
            "NaN": ([h] + raw.frames(with_tensor(m, "w0", nan)), CODE.INVALID_ARGUMENT,
                    "tensor 'w0' contains NaN or Inf values"),
            "Inf": ([h] + raw.frames(with_tensor(m, "w0", inf)), CODE.INVALID_ARGUMENT, "contains NaN or Inf"),
            # Protocol 2's small upload: header and tensors in one message, no go awaited; checked the same way.
            "NaN, eager": ([Batch(tuple(bytes(f) if is_data(f) else f  # type: ignore[arg-type]
                                        for f in [replace(h, eager=True)] + raw.frames(with_tensor(m, "w0", nan))))],
                           CODE.INVALID_ARGUMENT, "tensor 'w0' contains NaN or Inf values"),
            "wrong shape": ([h] + raw.frames(with_tensor(m, "w0", w0.reshape(2, -1))), CODE.INVALID_ARGUMENT,
                            f"tensor 'w0': got <f4 (2, {w0.size // 2}), the global model has <f4 ({w0.size},)"),
            "wrong dtype": ([h] + raw.frames(with_tensor(m, "w0", w0.astype(np.float64))), CODE.INVALID_ARGUMENT,
                            "tensor 'w0': got <f8"),
            "unknown tensor": ([raw.header(count=len(m) + 1)] + raw.frames({**m, "evil": w0}), CODE.INVALID_ARGUMENT,
                               "tensor 'evil' is not in the global model"),
            "tensor twice": ([raw.header(count=len(m) + 1)] + raw.frames(m)[:-1] + raw.frames({"w0": w0}),
                             CODE.INVALID_ARGUMENT, "tensor 'w0' sent twice"),
            "future round": ([raw.header(round_num=7)] + raw.frames(m), CODE.FAILED_PRECONDITION,
                             "round 8 has not started (the federation is at round 1)"),
            "oversized header": ([h, huge], CODE.INVALID_ARGUMENT, "payload bytes exceed the limit"),
            "oversized payload": ([h] + raw.frames(m)[:2] + [b"\0" * len(w0.tobytes())], CODE.INVALID_ARGUMENT,
                                  "more payload than the"),
            "truncated": ([h] + raw.frames(m)[:-3], CODE.INVALID_ARGUMENT, "truncated"),
            "no trailer": ([h] + raw.frames(m, trailer=False), CODE.INVALID_ARGUMENT, "without its trailer"),
        }
        got = {case: raw.send(frames) for case, (frames, _, _) in cases.items()}
        too_big = raw.send([h, TensorMeta("w0", "<f4", w0.shape, w0.nbytes, 0), b"\0" * (8 << 20)])
        cut = raw.cut_off([h] + raw.frames(m)[:3])
        nested = pb.UploadChunk(batch=pb.UploadBatch(chunks=[pb.UploadChunk(batch=pb.UploadBatch())]))
        batch_in_batch = raw.send_raw([upload_frame_to_bytes(h), nested.SerializeToString()])
        # Protocol 1 (first wave) downloads one message per frame; protocol 2 gets small frames batched.
        old, new = raw.download(1), raw.download(2)
        validation = [UploadMeta(raw.me, 0, "aggregated_model_validation", 50, {"accuracy": 0.5}), Trailer(0, 0)]
        first, duplicate = raw.send([Batch(tuple(validation))]), raw.send(validation)
        raw.channel.close()
        wait_until(lambda: cut_noticed(agg), "the aggregator to notice the cut-off")
        assert agg.popen.poll() is None, "the aggregator must survive every hostile upload"
        assert not files(ws / "local_state" / "updates", "*"), "a refused upload must leave no file"
        honest = [procs.collaborator("one"), procs.collaborator("two")]
        assert agg.wait(TIMEOUT) == 0, agg.output()
        for col in honest:
            assert col.wait(TIMEOUT) == 0, col.output()
    log = flat(agg.output())
    for case, (_, code, reason) in cases.items():
        assert got[case][0] == code and reason in got[case][1], (case, got[case])
        assert f"rejected the '{'train'}' result of 'one' for round {8 if case == 'future round' else 1}:" in log, case
        assert reason in log, (case, "the aggregator's log must say why")
    assert too_big[0] == CODE.RESOURCE_EXHAUSTED, too_big  # over the message limit: refused by gRPC itself
    assert cut == CODE.CANCELLED and cut_noticed(agg)
    assert batch_in_batch == (CODE.INVALID_ARGUMENT, "malformed upload chunk message"), batch_in_batch
    assert not any(isinstance(f, Batch) for f in old) and any(isinstance(f, Batch) for f in new)
    assert len(new) < len(old) and [bytes(f) if is_data(f) else f for f in unbatched(new)] == old  # type: ignore[arg-type]
    assert first[0] == CODE.OK and duplicate[0] == CODE.ALREADY_EXISTS and "not counted twice" in duplicate[1]
    assert "Traceback" not in agg.output()
    expected = reference_fedavg(ws, {"one": 1, "two": 2}, 2)
    for name, array in final_model(ws).items():
        np.testing.assert_allclose(array, expected[name], rtol=2e-6, atol=1e-6)


def test_peers_that_stop_sending_or_reading_lose_their_transfer_slots_and_the_run_completes(tmp_path: Path) -> None:
    """Every transfer slot taken by an upload that stops moving: the others still get through."""
    ws = make_workspace(tmp_path, ["one", "two"], rounds=1, num_params=2_000_000,
                        aggregator={"heartbeat_timeout": 2}, network={"chunk_size_mib": 1})
    release = threading.Event()
    with processes(ws) as procs:
        agg = procs.aggregator()
        raw = RawClient(ws)
        raw.join_and_get_tasks()

        def stalled() -> Iterator[Frame]:
            yield raw.header()
            yield from raw.frames(raw.model)[:2]
            release.wait(60)

        uploads = [raw.stub.upload_results.future(stalled()) for _ in range(2)]
        for call in uploads:
            call.initial_metadata()  # both hold a slot now: without the stall limit nobody else could move a model
        # 'one' stays alive through heartbeats, however long the honest processes take to start on a busy
        # machine: only the stalled transfers are under test, not heartbeat_timeout.
        beating = threading.Thread(target=raw.beat_until, args=(release,), daemon=True)
        beating.start()
        honest = [procs.collaborator("one"), procs.collaborator("two")]
        assert agg.wait(TIMEOUT) == 0, agg.output()
        for col in honest:
            assert col.wait(TIMEOUT) == 0, col.output()
        release.set()
        beating.join()
        for call in uploads:
            call.cancel()
        raw.channel.close()
    log = flat(agg.output())
    assert log.count("'train' upload of 'one' made no progress for") == 2, log
    assert "its transfer slot goes to the others" in log
