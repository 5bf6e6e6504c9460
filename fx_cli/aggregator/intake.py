"""Receiving one collaborator's task results: every byte is checked while it streams, then spilled to disk.

Checks: header sanity (data size, finite metrics), each tensor's name, dtype,
shape, pipeline and size against the round's global model, CRC32, NaN/Inf,
duplicates, the trailer, and that an update carries either no tensors or all
of them. Tensors are written at fixed offsets of a ``.part`` file (the model's
own layout, float32), fsynced and renamed only when the whole stream is good,
so memory stays at one chunk (raw) or one tensor (compressed or delta).
"""
from __future__ import annotations

import io
import itertools
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Mapping, Sequence

import blake3
import numpy as np

from fx_cli.aggregator.claims import metric_problem
from fx_cli.aggregator.layout import SPARE_MIN_BYTES, take_spare_spill
from fx_cli.aggregator.modelstore import RoundModel, TensorEntry
from fx_cli.aggregator.outcomes import Refusal, Refused
from fx_cli.atomic import fsync_dir
from fx_cli.checksum import crc32
from fx_cli.faults import fault
from fx_cli.tensors.pbuf import DTYPE
from fx_cli.transport import codec
from fx_cli.transport.chunks import PayloadCheck, StreamError, TensorAssembler, check_meta, trailer_of
from fx_cli.transport.serde import Frame, MetricsResult, TensorMeta, Trailer
from fx_cli.writeback import Writeback

MAX_METRICS = 256
MAX_RESULTS = 16  # metrics-only results one task request may carry
# A compressed payload may be a little larger than the raw tensor, never much larger.
COMPRESSED_SLACK = 2.0


def check_result(task: str, data_size: int, metrics: Mapping[str, float]) -> None:
    """Refuse (``Refusal.INVALID``) a result header with an unusable data size or metrics."""
    if not 1 <= data_size <= 2**53:
        raise Refused(Refusal.INVALID, f"data_size {data_size} of task '{task}' must be at least 1")
    if len(metrics) > MAX_METRICS:
        raise Refused(Refusal.INVALID, f"{len(metrics)} metrics exceed the limit of {MAX_METRICS}")
    for name, value in metrics.items():
        if not name or len(name) > 128:
            raise Refused(Refusal.INVALID, f"metric name {name[:40]!r} is empty or too long")
        problem = metric_problem(name, value, task)
        if problem:
            raise Refused(Refusal.INVALID, problem)


def check_results(results: Sequence[MetricsResult]) -> None:
    """Refuse (``Refusal.INVALID``) metrics-only results sent together (protocol 3) that are unusable."""
    if len(results) > MAX_RESULTS:
        raise Refused(Refusal.INVALID, f"{len(results)} results in one request exceed the limit of {MAX_RESULTS}")
    tasks = [r.task for r in results]
    if len(set(tasks)) != len(tasks):
        raise Refused(Refusal.INVALID, f"one request carries the result of a task twice ({', '.join(tasks)})")
    for result in results:
        check_result(result.task, result.data_size, result.metrics)


@dataclass(frozen=True)
class Spilled:
    path: Path | None  # None: the task returned metrics only
    nbytes: int  # bytes of the spilled float32 tensors
    crcs: tuple[int, ...]
    wire_bytes: int = 0  # payload bytes as received (after compression)
    # BLAKE3 over each tensor's name, a NUL and its payload bytes, in arrival order (the audit log's digest).
    blake3: str = ""


class _Finite:
    """NaN/Inf check over float32 bytes that may be split anywhere between chunks."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.carry = b""

    def feed(self, data: bytes | memoryview) -> None:
        buf = self.carry + data if self.carry else data
        usable = len(buf) - len(buf) % DTYPE.itemsize
        self.carry = bytes(buf[usable:])
        check_finite(self.name, np.frombuffer(buf, dtype=DTYPE, count=usable // DTYPE.itemsize))


def check_finite(name: str, array: np.ndarray) -> None:
    if array.size and not np.isfinite(array).all():
        raise StreamError(f"tensor '{name}' contains NaN or Inf values")


class UpdateIntake:
    """Streams one update's tensors into ``<spill_dir>/<name>.part`` against ``model``."""

    def __init__(self, model: RoundModel, target: Path, pipelines: set[str], announced: int | None = None,
                 power_safe: bool = True, digest: bool = True) -> None:
        self.model = model
        self.announced = announced  # tensor count from the header (None: not checked)
        self.target = target
        self.power_safe = power_safe  # False: the spill survives this process's death, not a power cut (no fsync)
        self.part = target.with_name(f"{target.name}.part-{os.getpid()}-{id(self):x}")
        self.pipelines = pipelines | {codec.RAW}
        self.offsets = spill_offsets(model)
        self.crcs: dict[str, int] = {}
        self.received = 0
        # False (the plan's audit_log is off): no digest pass, the one reader of this digest is the audit log.
        # BLAKE3, not SHA-256: as strong, and 3x faster here (SHA-256 was an eighth of the aggregator's CPU).
        self.digest = blake3.blake3() if digest else None
        self.writeback: Writeback | None = None  # the spill's write-out, started as it is written (power_safe)

    def receive(self, frames: Iterator[Frame | None]) -> Spilled:
        """Consume the stream after its header; raises ``StreamError`` on any problem (nothing is kept)."""
        first = next(frames, None)
        if isinstance(first, Trailer):  # metrics only (validation): no file is touched
            self._tensors(itertools.chain([first], frames), io.BytesIO())
            return Spilled(None, 0, (), 0, self._hex())
        frames = itertools.chain([first], frames)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._open_part() as fh:
                if self.power_safe:  # its fsync then waits for the last few MiB only
                    self.writeback = Writeback(fh.fileno())
                metas = self._tensors(frames, fh)
                if not metas:
                    self.part.unlink()
                    return Spilled(None, 0, (), 0, self._hex())
                self._check_complete(metas)
                fh.truncate(self.model.nbytes)  # a spare may have been longer
                fh.flush()
                if self.power_safe:
                    os.fsync(fh.fileno())
            os.replace(self.part, self.target)
            if self.power_safe:
                fsync_dir(self.target.parent)
        except BaseException:
            self.part.unlink(missing_ok=True)
            raise
        return Spilled(self.target, self.model.nbytes, tuple(self.crcs[e.name] for e in self.model.entries),
                       self.received, self._hex())

    def _open_part(self) -> BinaryIO:
        """The ``.part`` file: a spare spill renamed (its pages are overwritten in place) or else a new file."""
        if self.model.nbytes >= SPARE_MIN_BYTES and take_spare_spill(self.target, self.part):
            return open(self.part, "r+b")
        return open(self.part, "wb")

    def _hex(self) -> str:
        return self.digest.hexdigest() if self.digest is not None else ""

    def _tensors(self, frames: Iterator[Frame | None], fh: BinaryIO) -> list[TensorMeta]:
        metas: list[TensorMeta] = []
        frame = next(frames, None)
        while frame is not None:
            if isinstance(frame, Trailer):
                if frame != trailer_of(metas) or (self.announced is not None and len(metas) != self.announced):
                    raise StreamError(f"trailer announces {frame.tensor_count} tensors, stream had {len(metas)}")
                if next(frames, None) is not None:
                    raise StreamError("data after the trailer")
                return metas
            if not isinstance(frame, TensorMeta):
                raise StreamError(f"expected a tensor header, got {type(frame).__name__}")
            if self.announced is not None and len(metas) >= self.announced:
                raise StreamError(f"the upload header announced {self.announced} tensors; more arrived")
            metas.append(frame)
            frame = self._tensor(frame, frames, fh)
            if len(metas) == 1:
                fault("aggregator:mid_upload")  # one tensor is in the .part file, the others are not
        raise StreamError("stream ended without its trailer (truncated upload)")

    def _entry(self, meta: TensorMeta) -> TensorEntry:
        entry = self.model.by_name.get(meta.name)
        if entry is None:
            raise StreamError(f"tensor '{meta.name}' is not in the global model")
        if meta.name in self.crcs:
            raise StreamError(f"tensor '{meta.name}' sent twice")
        if meta.dtype != DTYPE.str or tuple(meta.shape) != entry.shape:
            raise StreamError(f"tensor '{meta.name}': got {meta.dtype} {tuple(meta.shape)}, "
                              f"the global model has {DTYPE.str} {entry.shape}")
        if meta.pipeline not in self.pipelines:
            raise StreamError(f"tensor '{meta.name}': compression pipeline {meta.pipeline!r} is not the plan's "
                              f"({', '.join(sorted(self.pipelines))})")
        check_meta(meta, int(entry.nbytes * COMPRESSED_SLACK) + 65536)
        return entry

    def _tensor(self, meta: TensorMeta, frames: Iterator[Frame | None], fh: BinaryIO) -> Frame | None:
        """Receive one tensor's payload; returns the first frame after it."""
        entry = self._entry(meta)
        at = self.offsets[meta.name]
        fh.seek(at)
        direct = meta.pipeline == codec.RAW and not meta.delta
        check = PayloadCheck(meta) if direct else TensorAssembler(meta)
        finite = _Finite(meta.name)
        digest = self.digest
        if digest is not None:
            digest.update(meta.name.encode() + b"\0")
        frame = next(frames, None)
        while isinstance(frame, (bytes, memoryview)):
            check.add(frame)
            if digest is not None:
                digest.update(frame)
            if direct:
                finite.feed(frame)
                fh.write(frame)
                self._written(at, len(frame))
                at += len(frame)
            frame = next(frames, None)
        check.finish()
        self.received += meta.nbytes
        if direct:
            self.crcs[meta.name] = meta.crc32
        else:
            self.crcs[meta.name] = self._write_decoded(meta, entry, check.buffer, fh)  # type: ignore[attr-defined]
        return frame

    def _write_decoded(self, meta: TensorMeta, entry: TensorEntry, payload: np.ndarray, fh: BinaryIO) -> int:
        array = codec.decode(meta, payload)
        if meta.delta:
            array = np.add(self.model.read(meta.name), array, dtype=DTYPE)
        array = np.ascontiguousarray(array, dtype=DTYPE)
        check_finite(meta.name, array)
        view = array.reshape(-1).data.cast("B")
        fh.write(view)
        self._written(self.offsets[meta.name], view.nbytes)
        return crc32(view)

    def _written(self, offset: int, nbytes: int) -> None:
        if self.writeback is not None:
            self.writeback.written(offset, nbytes)

    def _check_complete(self, metas: list[TensorMeta]) -> None:
        missing = [e.name for e in self.model.entries if e.name not in self.crcs]
        if missing:
            raise StreamError(f"update has {len(metas)} of the model's {len(self.model.entries)} tensors; "
                              f"missing {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")


def spill_offsets(model: RoundModel) -> dict[str, int]:
    """Where each tensor starts in a spilled update: the model's tensors back to back, in model order."""
    offsets, at = {}, 0
    for e in model.entries:
        offsets[e.name] = at
        at += e.nbytes
    return offsets


def load_spilled(path: Path, model: RoundModel, name: str, crc: int) -> np.ndarray:
    """One tensor of a spilled update, verified against the CRC recorded when it arrived."""
    entry = model.by_name[name]
    array = np.empty(entry.shape, dtype=DTYPE)
    with open(path, "rb") as fh:
        fh.seek(spill_offsets(model)[name])
        if fh.readinto(array.reshape(-1).data.cast("B")) != entry.nbytes:
            raise OSError(f"{path}: truncated at tensor '{name}'")
    if crc32(array.reshape(-1).data.cast("B")) != crc:
        raise OSError(f"{path}: tensor '{name}' does not match its checksum (the file was damaged on disk)")
    return array


def spilled_slices(path: Path, model: RoundModel, name: str, crc: int) -> Callable[[int, int], np.ndarray]:
    """``read_slice(start, stop)`` over one spilled tensor; reading it front to back also verifies its CRC."""
    from fx_cli.aggregation.base import file_slice_reader

    read = file_slice_reader(path, DTYPE, spill_offsets(model)[name])
    size = model.by_name[name].nbytes // DTYPE.itemsize
    progress = {"next": 0, "crc": 0}

    def read_slice(start: int, stop: int) -> np.ndarray:
        part = read(start, stop)
        if start == progress["next"]:
            progress["crc"] = crc32(part.data.cast("B"), progress["crc"])
            progress["next"] = stop
            if stop == size and progress["crc"] != crc:
                raise OSError(f"{path}: tensor '{name}' does not match its checksum (the file was damaged on disk)")
        else:
            progress["next"] = -1  # read out of order: only the whole-tensor load() can verify it
        return part

    return read_slice
