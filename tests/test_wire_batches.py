"""Protocol 2: small stream frames travel together in one message (``serde.Batch``).

A synchronous gRPC server hands each message between two of its threads, so for a small model a stream of
one message per header and chunk costs the aggregator more than its bytes. These tests pin the encoding
(what protobuf itself would write), the batching rule, and what a receiver refuses.
"""
from __future__ import annotations

import numpy as np
import pytest

from fx_cli.proto import federation_pb2 as pb
from fx_cli.transport import codec, serde
from fx_cli.transport.chunks import read_tensors, tensor_frames, trailer_of
from fx_cli.transport.batches import BATCH_BYTES, BATCH_FRAMES, batched, gathered, unbatched
from fx_cli.transport.frames import (download_frame_from_bytes, download_frame_to_bytes, upload_frame_from_bytes,
                                     upload_frame_to_bytes)
from fx_cli.transport.serde import Batch, Caller, ModelMeta, TensorMeta, Trailer, UploadMeta


def stream(sizes: list[int], chunk: int) -> tuple[list[serde.Frame], dict[str, np.ndarray]]:
    arrays = {f"t{i}": np.arange(n, dtype=np.float32) for i, n in enumerate(sizes)}
    frames: list[serde.Frame] = [ModelMeta(0, len(arrays), sum(a.nbytes for a in arrays.values()))]
    metas = []
    for name, array in arrays.items():
        meta, payload = codec.encode(name, array)
        metas.append(meta)
        frames.extend(tensor_frames(meta, payload, chunk))
    return frames + [trailer_of(metas)], arrays


def as_bytes(frames: list[serde.Frame | None]) -> list[object]:
    return [bytes(f) if serde.is_data(f) else f for f in frames]  # type: ignore[arg-type]


def test_small_frames_go_together_large_chunks_alone_and_order_is_kept() -> None:
    frames, arrays = stream([10, 20_000, 300_000, 5], chunk=2 << 20)  # the 1.2 MB tensor is one large chunk
    messages = list(batched(frames))
    assert len(messages) < len(frames)
    assert any(isinstance(m, Batch) for m in messages)
    large = [m for m in messages if serde.is_data(m)]
    assert [memoryview(m).nbytes for m in large] == [1_200_000]  # type: ignore[arg-type]
    for m in messages:
        if isinstance(m, Batch):
            assert 1 < len(m.frames) <= BATCH_FRAMES
            assert sum(len(f) for f in m.frames if isinstance(f, bytes)) <= BATCH_BYTES
    opened = list(unbatched(messages))
    assert as_bytes(opened) == as_bytes(list(frames))
    head = opened[0]
    assert isinstance(head, ModelMeta)
    back = {m.name: codec.decode(m, p) for m, p in read_tensors(iter(opened[1:]), head.payload_bytes)}
    for name, array in arrays.items():
        np.testing.assert_array_equal(back[name], array)


def test_a_batch_never_passes_its_payload_or_frame_limit() -> None:
    frames, _ = stream([1000] * 200, chunk=1 << 20)  # 200 tensors of 4 kB: 401 small frames
    messages = list(batched(frames, limit=20_000))
    for m in messages:
        assert isinstance(m, Batch)
        assert len(m.frames) <= BATCH_FRAMES
        assert sum(len(f) for f in m.frames if isinstance(f, bytes)) <= 20_000
    assert as_bytes(list(unbatched(messages))) == as_bytes(list(frames))


def test_a_chunk_of_exactly_the_limit_goes_alone_after_the_frames_before_it() -> None:
    """A model whose chunk size equals the batch limit: headers first, then the chunk, never the other way."""
    frames, _ = stream([BATCH_BYTES // 4 * 2 + 3], chunk=BATCH_BYTES)  # two full chunks and a small one
    messages = list(batched(frames))
    assert isinstance(messages[0], Batch) and isinstance(messages[0].frames[0], ModelMeta)
    assert [memoryview(m).nbytes for m in messages[1:3]] == [BATCH_BYTES, BATCH_BYTES]  # type: ignore[arg-type]
    assert as_bytes(list(unbatched(messages))) == as_bytes(list(frames))


def test_gathered_tells_a_small_stream_from_a_large_one_and_loses_nothing() -> None:
    small, _ = stream([1000, 2000], chunk=1 << 20)
    taken, whole = gathered(iter(small))
    assert whole and as_bytes(taken) == as_bytes(small)
    large, _ = stream([10, BATCH_BYTES // 4 + 1, 10], chunk=1 << 20)
    rest = iter(large)
    taken, whole = gathered(rest)
    assert not whole and len(taken) < len(large)
    assert as_bytes(taken + list(rest)) == as_bytes(large)  # the sender goes on with what was not taken
    many, _ = stream([1] * BATCH_FRAMES, chunk=1 << 20)  # tiny, but more frames than one batch holds
    taken, whole = gathered(iter(many))
    assert not whole and len(taken) == BATCH_FRAMES


def test_small_chunks_are_copied_so_the_sender_may_reuse_its_buffer() -> None:
    buffer = bytearray(b"abcd")
    meta = TensorMeta("w", "<f4", (1,), 4, 0)
    messages = batched([meta, memoryview(buffer), Trailer(1, 4)])
    first = next(messages)
    buffer[:] = b"XXXX"
    rest = list(messages)
    assert isinstance(first, Batch) and not rest
    assert first.frames[1] == b"abcd"


@pytest.mark.parametrize("kind", ["download", "upload"])
def test_a_batch_is_encoded_as_protobuf_encodes_it_and_decodes_back(kind: str) -> None:
    meta = TensorMeta("w", "<f4", (2,), 8, 1234)
    head: serde.Frame = ModelMeta(4, 1, 8) if kind == "download" else UploadMeta(Caller("one", "h"), 4, "train", 10,
                                                                                    {"loss": 0.5}, 1)
    batch = Batch((head, meta, b"\x01" * 8, Trailer(1, 8)))
    to_bytes, from_bytes = ((download_frame_to_bytes, download_frame_from_bytes) if kind == "download"
                            else (upload_frame_to_bytes, upload_frame_from_bytes))
    wire = to_bytes(batch)
    outer, inner = (pb.DownloadChunk, pb.DownloadBatch) if kind == "download" else (pb.UploadChunk, pb.UploadBatch)
    expected = outer(batch=inner(chunks=[outer.FromString(to_bytes(f)) for f in batch.frames]))
    assert wire == expected.SerializeToString()
    assert from_bytes(wire) == batch


def test_a_batch_inside_a_batch_or_an_unknown_chunk_in_one_is_malformed() -> None:
    nested = pb.UploadChunk(batch=pb.UploadBatch(chunks=[pb.UploadChunk(batch=pb.UploadBatch())]))
    with pytest.raises(ValueError, match="a batch inside a batch"):
        upload_frame_from_bytes(nested.SerializeToString())
    empty = pb.DownloadChunk(batch=pb.DownloadBatch(chunks=[pb.DownloadChunk()]))
    with pytest.raises(ValueError, match="unknown chunk inside a batch"):
        download_frame_from_bytes(empty.SerializeToString())
    with pytest.raises(TypeError, match="a batch cannot hold a batch"):
        upload_frame_to_bytes(Batch((Batch(()),)))


def test_a_download_request_says_which_protocol_the_caller_speaks() -> None:
    caller = Caller("one", "h")
    assert serde.download_request_from_bytes(serde.download_request_to_bytes(
        serde.DownloadRequest(caller, 3))).protocol == serde.PROTOCOL >= serde.BATCHES
    # A first-wave collaborator sends no protocol field: it reads as 0 and gets one message per frame.
    old = pb.DownloadRequest(caller=pb.Caller(name="one", plan_hash="h"), round=3).SerializeToString()
    assert serde.download_request_from_bytes(old).protocol < serde.BATCHES
