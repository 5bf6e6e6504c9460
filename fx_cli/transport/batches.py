"""Protocol 2's batches: runs of small stream frames sent as one message (``serde.Batch``), and opened again.

A synchronous gRPC server hands every message of a stream between two of its threads, which for a small model
costs more than its bytes. ``batched`` is applied by a sender only for a peer that speaks protocol 2; receivers
always apply ``unbatched``, so a first-wave peer's one-frame messages pass through unchanged.
"""
from __future__ import annotations

from typing import Iterable, Iterator

from fx_cli.transport.serde import DATA, Batch, Frame

# Payload bytes gathered into one batch at most, and frames: a batch stays far inside the message limit whatever
# the chunk size. A chunk at least this large is sent on its own. 1 MiB: a model of a few hundred thousand
# parameters travels as one message each way; a large model's chunks (MiBs) are not copied into batches.
BATCH_BYTES = 1 << 20
BATCH_FRAMES = 64


def batched(frames: Iterable[Frame], limit: int = BATCH_BYTES) -> Iterator[Frame | Batch]:
    """``frames`` with runs of small ones gathered into batches of at most ``limit`` payload bytes.

    Small chunks are copied into the batch (the sender may reuse a buffer once it yields the next frame).
    """
    pending: list[Frame] = []
    size = 0
    for frame in frames:
        n = memoryview(frame).nbytes if isinstance(frame, DATA) else 0
        if pending and (size + n > limit or n >= limit or len(pending) >= BATCH_FRAMES):
            yield _one_or_batch(pending)
            pending, size = [], 0
        if n >= limit:
            yield frame
            continue
        pending.append(bytes(frame) if isinstance(frame, DATA) else frame)
        size += n
    if pending:
        yield _one_or_batch(pending)


def gathered(frames: Iterator[Frame], limit: int = BATCH_BYTES, most: int = BATCH_FRAMES) -> tuple[list[Frame], bool]:
    """The first frames of ``frames`` (data copied), and whether that was all of them and they fit one batch.

    An uploader looks ahead like this to send a small upload in one message without waiting for the server's
    go; otherwise it sends the frames taken, then the rest of ``frames``.
    """
    taken: list[Frame] = []
    size = 0
    for frame in frames:
        if isinstance(frame, DATA):
            size += memoryview(frame).nbytes
            frame = bytes(frame)
        taken.append(frame)
        if size > limit or len(taken) >= most:
            return taken, False
    return taken, True


def _one_or_batch(frames: list[Frame]) -> Frame | Batch:
    return frames[0] if len(frames) == 1 else Batch(tuple(frames))


def unbatched(items: Iterable[Frame | Batch | None]) -> Iterator[Frame | None]:
    """A received stream with its batches opened."""
    for item in items:
        if isinstance(item, Batch):
            yield from item.frames
        else:
            yield item
