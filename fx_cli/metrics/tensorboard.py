"""TensorBoard scalar event files, written without TensorFlow or TensorBoard.

An event file is a sequence of TFRecords (uint64 length, masked CRC-32C of
the length, data, masked CRC-32C of the data, all little-endian), each
holding one serialised ``Event`` message. The first event carries
``file_version = "brain.Event:2"``; each later one a step's scalars as
``Summary.Value{tag, simple_value}``. The few protobuf fields needed are
encoded here by hand::

    Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
    Summary { repeated Value value = 1; }
    Value   { string tag = 1; float simple_value = 2; }
"""
from __future__ import annotations

import math
import os
import socket
import struct
import time
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Mapping

from fx_cli.errors import FxError
from fx_cli.metrics.crc32c import masked_crc32c
from fx_cli.tensors import varint

FILE_VERSION = "brain.Event:2"
_FLOAT32_MAX = 3.4028234663852886e38


def _field(number: int, wire_type: int) -> bytes:
    return varint.encode(number << 3 | wire_type)


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _field(number, 2) + varint.encode(len(payload)) + payload


def _float32(value: float) -> bytes:
    """``value`` as a little-endian float32; beyond float32's range it becomes +-inf, as a cast would."""
    if math.isfinite(value) and abs(value) > _FLOAT32_MAX:
        value = math.copysign(math.inf, value)
    return struct.pack("<f", value)


def encode_value(tag: str, value: float) -> bytes:
    """A ``Summary.Value`` with a scalar."""
    return _length_delimited(1, tag.encode("utf-8")) + _field(2, 5) + _float32(value)


def encode_event(wall_time: float, step: int | None = None, file_version: str | None = None,
                 values: Mapping[str, float] | None = None) -> bytes:
    """An ``Event`` message with the given fields."""
    out = _field(1, 1) + struct.pack("<d", wall_time)
    if step is not None:
        out += _field(2, 0) + varint.encode(step & 0xFFFFFFFFFFFFFFFF)  # int64: two's complement
    if file_version is not None:
        out += _length_delimited(3, file_version.encode("utf-8"))
    if values:
        summary = b"".join(_length_delimited(1, encode_value(t, v)) for t, v in values.items())
        out += _length_delimited(5, summary)
    return out


def frame_record(data: bytes) -> bytes:
    """``data`` framed as one TFRecord."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc32c(length)) + data + struct.pack("<I", masked_crc32c(data))


class ScalarWriter:
    """Appends scalar summaries to a new event file in ``logdir``; each call is flushed at once."""

    def __init__(self, logdir: str | Path) -> None:
        self.logdir = Path(logdir)
        try:
            self.logdir.mkdir(parents=True, exist_ok=True)
            self.path, fh = _create_event_file(self.logdir)
            self._fh: BinaryIO | None = fh
        except OSError as err:
            raise FxError(f"cannot create a TensorBoard event file in {self.logdir}: {err}",
                          "check the logs directory is writable, or set write_logs: false in the plan") from None
        self._write(encode_event(time.time(), file_version=FILE_VERSION))

    def add_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        """Record ``{tag: value}`` at ``step`` (one event for all of them)."""
        values = {str(tag): float(value) for tag, value in scalars.items()}
        self._write(encode_event(time.time(), step=int(step), values=values))

    def _write(self, event: bytes) -> None:
        if self._fh is None:
            raise ValueError(f"ScalarWriter for {self.path} is closed")
        self._fh.write(frame_record(event))
        self._fh.flush()  # TensorBoard tails the file; a round's scalars should show up now

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> "ScalarWriter":
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _create_event_file(logdir: Path) -> tuple[Path, BinaryIO]:
    """A new ``events.out.tfevents.*`` file (TensorBoard finds files by that prefix); never reuses one."""
    stem = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}"
    for n in range(1000):
        path = logdir / f"{stem}.{n}"
        try:
            return path, open(path, "xb")
        except FileExistsError:
            continue
    raise FileExistsError(f"too many event files named {stem}.* in {logdir}")
