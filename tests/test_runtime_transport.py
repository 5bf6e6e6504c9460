"""Transport: serde round trips, chunked tensor streams, codecs, the server lifecycle, retries and error mapping."""
from __future__ import annotations

import socket
import zlib
from pathlib import Path
from typing import Any, Iterator

import grpc
import numpy as np
import pytest

from fx_cli.aggregator.modelstore import write_round_model
from fx_cli.errors import FxError
from fx_cli.transport import codec, serde
from fx_cli.transport.chunks import (StreamError, chunk_bytes, raw_array, read_tensors, tensor_frames, trailer_of)
from fx_cli.transport.client import RetryPolicy, Retrier, open_channel, rpc_failure
from fx_cli.transport.frames import (download_frame_from_bytes, download_frame_to_bytes, upload_frame_from_bytes,
                                     upload_frame_to_bytes)
from fx_cli.transport.methods import FederationStub, generic_handler
from fx_cli.transport.serde import Caller, DownloadRequest, Frame, ModelMeta, TensorMeta
from fx_cli.transport.server import serve

CHUNK = 4096


def frames_of(arrays: dict[str, np.ndarray], chunk: int = CHUNK) -> list[Frame]:
    out: list[Frame] = []
    metas = []
    for name, array in arrays.items():
        meta, payload = codec.encode(name, array)
        metas.append(meta)
        out.extend(tensor_frames(meta, payload, chunk))
    out.append(trailer_of(metas))
    return out


def rebuild(frames: list[Frame], max_bytes: int = 1 << 30) -> dict[str, np.ndarray]:
    return {m.name: codec.decode(m, p) for m, p in read_tensors(iter(frames), max_bytes)}


def test_tensors_of_every_shape_and_dtype_survive_a_chunked_stream() -> None:
    rng = np.random.default_rng(0)
    arrays = {"scalar": np.array(3.5, np.float32), "empty": np.zeros((0, 3), np.float32),
              "big": rng.standard_normal((70, 50)).astype(np.float32), "ints": np.arange(10, dtype=np.int64),
              "half": rng.standard_normal(33).astype(np.float16), "flags": np.array([True, False])}
    frames = frames_of(arrays)
    assert sum(serde.is_data(f) for f in frames) > 4  # 'big' alone is 14000 bytes: 4 chunks
    assert all(memoryview(f).nbytes <= CHUNK for f in frames if serde.is_data(f))  # type: ignore[arg-type]
    back = rebuild(frames)
    for name, array in arrays.items():
        assert back[name].dtype == array.dtype and back[name].shape == array.shape
        np.testing.assert_array_equal(back[name], array)


def test_rebuilt_arrays_are_views_of_the_one_preallocated_buffer() -> None:
    meta, payload = codec.encode("w", np.arange(5000, dtype=np.float32))
    (got_meta, buffer), = read_tensors(iter(list(tensor_frames(meta, payload, CHUNK)) + [trailer_of([meta])]), 1 << 20)
    array = raw_array(got_meta, buffer)
    assert np.shares_memory(array, buffer) and array[-1] == 4999


def test_big_endian_and_strided_arrays_are_sent_little_endian_and_contiguous() -> None:
    source = np.arange(12, dtype=">f4").reshape(3, 4)[:, ::2]
    back = rebuild(frames_of({"x": source}))
    assert back["x"].dtype == np.dtype("<f4")
    np.testing.assert_array_equal(back["x"], source)


@pytest.mark.parametrize("damage,message", [
    (lambda fs: fs[:-2] + fs[-1:], "truncated"),
    (lambda fs: fs[:-1], "without its trailer"),
    (lambda fs: fs[:2] + [bytes([fs[2][0] ^ 0xFF]) + fs[2][1:]] + fs[3:], "CRC32 mismatch"),
    (lambda fs: fs[:-1] + [b"extra"] + fs[-1:], "more payload"),
    (lambda fs: [b"x"] + fs, "before any tensor header"),
    (lambda fs: fs[:-1] + [serde.Trailer(5, 1)], "trailer announces"),
    (lambda fs: fs[:-1] + fs[:-1] + fs[-1:], "appears twice"),
])
def test_damaged_streams_are_refused_with_the_reason(damage: Any, message: str) -> None:
    frames = frames_of({"w": np.arange(3000, dtype=np.float32)})
    with pytest.raises(StreamError, match=message):
        rebuild(damage(frames))


@pytest.mark.parametrize("meta,message", [
    (TensorMeta("w", "|O", (1,), 8, 0), "not a little-endian numeric dtype"),
    (TensorMeta("w", "<f4", (-1,), 4, 0), "invalid shape"),
    (TensorMeta("w", "<f4", (10,), 12, 0), "do not hold shape"),
    (TensorMeta("w", "<f4", (10**6,), 4 * 10**6, 0), "exceed the limit"),
    (TensorMeta("", "<f4", (1,), 4, 0), "empty"),
])
def test_hostile_tensor_headers_are_refused_before_any_allocation(meta: TensorMeta, message: str) -> None:
    with pytest.raises(StreamError, match=message):
        rebuild([meta, serde.Trailer(1, meta.nbytes)], max_bytes=1 << 20)


def test_every_message_survives_serialization() -> None:
    caller = Caller("one", "ab" * 48)
    cases = [
        (serde.join_request_to_bytes, serde.join_request_from_bytes, serde.JoinRequest(caller, b'{"a": 1}')),
        (serde.join_reply_to_bytes, serde.join_reply_from_bytes, serde.JoinReply("plan_x", 2, 5, False)),
        (serde.task_reply_to_bytes, serde.task_reply_from_bytes,
         serde.TaskReply(serde.Action.RUN, 3, ("a", "b"), ("a",), 5, "hi")),
        (serde.download_request_to_bytes, serde.download_request_from_bytes, DownloadRequest(caller, 4)),
        (serde.heartbeat_request_to_bytes, serde.heartbeat_request_from_bytes, serde.HeartbeatRequest(caller, 1, "t")),
        (serde.heartbeat_reply_to_bytes, serde.heartbeat_reply_from_bytes, serde.HeartbeatReply(True, 2)),
        (serde.ping_request_to_bytes, serde.ping_request_from_bytes, serde.PingRequest(caller, b"{}")),
        (serde.ping_reply_to_bytes, serde.ping_reply_from_bytes,
         serde.PingReply("plan_x", "h", False, ("k.a",), 1, 3, False)),
        (serde.upload_reply_to_bytes, serde.upload_reply_from_bytes, serde.UploadReply(serde.Outcome.LATE, 7, "m")),
        (upload_frame_to_bytes, upload_frame_from_bytes,
         serde.UploadMeta(caller, 2, "train", 100, {"loss": 0.5})),
        (upload_frame_to_bytes, upload_frame_from_bytes,
         TensorMeta("w", "<f4", (2, 3), 24, 9, "fp16", {"scale": "1.5"}, True)),
        (download_frame_to_bytes, download_frame_from_bytes, ModelMeta(3, 4, 100)),
        (download_frame_to_bytes, download_frame_from_bytes, serde.Trailer(4, 100)),
        (download_frame_to_bytes, download_frame_from_bytes, b"\x00\x01payload"),
    ]
    for to_bytes, from_bytes, value in cases:
        assert from_bytes(to_bytes(value)) == value


def test_compression_pipelines_round_trip_through_the_codec() -> None:
    from fx_cli.compression import pipeline_by_name

    array = np.linspace(-1, 1, 5000, dtype=np.float32).reshape(50, 100)
    for name, tolerance in (("zlib", 0.0), ("fp16", 1e-3), ("int8", 1e-2)):
        meta, payload = codec.encode("w", array, pipeline_by_name(name), delta=True)
        assert meta.pipeline == name and meta.delta and meta.crc32 == zlib.crc32(payload)
        back = rebuild(list(tensor_frames(meta, payload, CHUNK)) + [trailer_of([meta])])["w"]
        assert back.dtype == np.float32
        np.testing.assert_allclose(back, array, atol=tolerance)


class ModelOnly:
    """A servicer that only serves a model file (the other RPCs are never called here)."""

    def __init__(self, model: Any, chunk: int) -> None:
        self.model, self.chunk = model, chunk

    def download_model(self, request: DownloadRequest, context: Any) -> Iterator[Frame]:
        if request.caller.name != "one":
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"collaborator {request.caller.name!r} is not allowed")
        yield from self.model.frames(self.chunk)

    def upload_results(self, frames: Iterator[Frame], context: Any) -> Any:
        for _ in frames:  # consumed like the real servicer does, so malformed chunks surface
            pass
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "upload_results")

    def __getattr__(self, name: str) -> Any:
        return lambda request, context: context.abort(grpc.StatusCode.UNIMPLEMENTED, name)


def test_a_model_larger_than_any_message_streams_from_disk_in_chunks(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    tensors = {"big": rng.standard_normal(3_000_000).astype(np.float32), "small": np.ones(3, np.float32)}
    model = write_round_model(tmp_path / "m.pbuf", tensors.items(), 0)  # 12 MB > the 5 MiB message limit
    chunk = chunk_bytes(0.25)
    with serve(generic_handler(ModelOnly(model, chunk)), "localhost:0", None, chunk=chunk) as port:
        channel = open_channel(f"localhost:{port}", None, chunk)
        frames = iter(FederationStub(channel).download_model(DownloadRequest(Caller("one", "h"), 0)))
        assert next(frames) == ModelMeta(0, 2, model.nbytes)
        back = rebuild(list(frames), model.nbytes)
        channel.close()
    for name, array in tensors.items():
        np.testing.assert_array_equal(back[name], array)


def test_serving_on_a_taken_port_fails_with_a_hint(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(FxError, match=f"cannot listen on 127.0.0.1:{port}") as err:
            with serve(generic_handler(ModelOnly(None, CHUNK)), f"127.0.0.1:{port}", None, chunk=CHUNK):
                pass
    assert "agg_port" in (err.value.hint or "")


def test_unavailable_is_retried_with_growing_jittered_delays_until_the_deadline() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    delays: list[float] = []
    retrier = Retrier(RetryPolicy(initial=0.05, deadline=0.6), f"127.0.0.1:{port}", seed=3, sleep=lambda d: (
        delays.append(d), __import__("time").sleep(d)))
    channel = open_channel(f"127.0.0.1:{port}", None, CHUNK)
    stub = FederationStub(channel)
    with pytest.raises(FxError, match=f"cannot reach the aggregator at 127.0.0.1:{port}: gave up after") as err:
        retrier.call("a ping", lambda: stub.ping(serde.PingRequest(Caller("one", "h"), b""), timeout=2))
    channel.close()
    assert len(delays) >= 3 and delays[1] > delays[0] * 0.6 and sum(delays) <= 0.6 + 1e-6
    assert "reconnect_deadline" in (err.value.hint or "")


def test_refusals_fail_at_once_with_a_readable_message(tmp_path: Path) -> None:
    model = write_round_model(tmp_path / "m.pbuf", [("w", np.ones(3, np.float32))], 0)
    calls = []
    with serve(generic_handler(ModelOnly(model, CHUNK)), "localhost:0", None, chunk=CHUNK) as port:
        channel = open_channel(f"localhost:{port}", None, CHUNK)
        stub = FederationStub(channel)
        retrier = Retrier(RetryPolicy(0.01, 30), f"localhost:{port}", sleep=lambda d: calls.append(d))
        with pytest.raises(grpc.RpcError) as raised:
            retrier.call("download", lambda: list(stub.download_model(DownloadRequest(Caller("eve", "h"), 0))))
        channel.close()
    assert calls == []  # not retried
    error = rpc_failure(raised.value, f"localhost:{port}", "eve", "the model")
    assert "does not authorize" in error.message and "'eve' is not allowed" in error.message


def test_garbage_messages_are_invalid_argument_not_internal_errors(tmp_path: Path) -> None:
    from fx_cli.transport.methods import path

    with serve(generic_handler(ModelOnly(None, CHUNK)), "localhost:0", None, chunk=CHUNK) as port:
        channel = open_channel(f"localhost:{port}", None, CHUNK)
        join = channel.unary_unary(path("Join"))  # raw bytes in and out
        upload = channel.stream_unary(path("UploadResults"))
        for call, request, what in ((join, b"\xff\xff\xff", "Join"),
                                    (upload, iter([b"\x0a\xff"]), "upload chunk")):
            with pytest.raises(grpc.RpcError) as err:
                call(request, timeout=5)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert err.value.details() == f"malformed {what} message"
        channel.close()


@pytest.mark.parametrize("size", [0, 1, 127, 128, 16383, 16384, 70000])
def test_hand_built_chunk_messages_equal_protobufs_own_and_parse_without_copying(size: int) -> None:
    from fx_cli.proto import federation_pb2 as pb

    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    for to_bytes, from_bytes, message in ((download_frame_to_bytes, download_frame_from_bytes,
                                           pb.DownloadChunk),
                                          (upload_frame_to_bytes, upload_frame_from_bytes,
                                           pb.UploadChunk)):
        wire = to_bytes(memoryview(data))
        assert wire == message(data=data).SerializeToString()
        back = from_bytes(wire)
        assert isinstance(back, memoryview) and back == data and back.obj is wire


def test_a_chunk_message_with_more_than_its_data_is_parsed_by_protobuf() -> None:
    from fx_cli.proto import federation_pb2 as pb

    # data, then a tensor header: protobuf's oneof keeps the last field, and so must we
    wire = pb.DownloadChunk(data=b"abc").SerializeToString() + pb.DownloadChunk(
        tensor=pb.TensorHeader(name="w", dtype="<f4", nbytes=4)).SerializeToString()
    frame = download_frame_from_bytes(wire)
    assert isinstance(frame, TensorMeta) and frame.name == "w"
    # a length that runs past the end is not taken as a payload: protobuf refuses the message
    from google.protobuf.message import DecodeError

    with pytest.raises(DecodeError):
        upload_frame_from_bytes(b"\x1a\x05abc")


def test_a_download_is_written_straight_into_the_arrays_offered_when_they_fit(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    tensors = {"big": rng.standard_normal(700_000).astype(np.float32), "odd": np.ones(5, np.float32),
               "other": np.arange(6, dtype=np.float32).reshape(2, 3)}
    model = write_round_model(tmp_path / "m.pbuf", tensors.items(), 0)
    chunk = chunk_bytes(0.25)
    offered = {"big": np.zeros(700_000, np.float32),  # fits: filled in place
               "odd": np.zeros(4, np.float32),  # wrong shape: a new array
               "other": np.zeros((2, 3), np.float32)[:, ::-1]}  # not contiguous: a new array
    with serve(generic_handler(ModelOnly(model, chunk)), "localhost:0", None, chunk=chunk) as port:
        channel = open_channel(f"localhost:{port}", None, chunk)
        frames = iter(FederationStub(channel).download_model(DownloadRequest(Caller("one", "h"), 0)))
        assert isinstance(next(frames), ModelMeta)
        back = {m.name: codec.decode(m, p) for m, p in read_tensors(frames, model.nbytes, offered)}
        channel.close()
    assert np.shares_memory(back["big"], offered["big"])
    assert not np.shares_memory(back["odd"], offered["odd"]) and not offered["odd"].any()
    assert not np.shares_memory(back["other"], offered["other"])
    for name, array in tensors.items():
        np.testing.assert_array_equal(back[name], array)


def test_a_damaged_chunk_is_caught_even_when_assembled_in_an_offered_array() -> None:
    array = np.arange(5000, dtype=np.float32)
    meta, payload = codec.encode("w", array)
    frames = list(tensor_frames(meta, payload, CHUNK)) + [trailer_of([meta])]
    damaged = bytearray(frames[2])  # type: ignore[arg-type]
    damaged[7] ^= 1
    frames[2] = bytes(damaged)
    with pytest.raises(StreamError, match="CRC32 mismatch"):
        list(read_tensors(iter(frames), 1 << 20, {"w": np.empty(5000, np.float32)}))
