"""Streaming reader and writer for ``.pbuf`` model files.

A ``.pbuf`` is one serialised ``ModelProto`` (field 1: repeated NamedTensor),
byte-compatible with OpenFL 1.9.  We write and read it one ``NamedTensor``
record at a time, copying tensor bytes straight between numpy buffers and the
file, so memory stays about one tensor whatever the file size (well past the
2 GiB protobuf message limit).  Tensors are float32 little-endian with one
``MetadataProto{int_list: shape}``: OpenFL's NoCompressionPipeline encoding.
"""
from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator, Mapping

import numpy as np

from fx_cli.atomic import atomic_write
from fx_cli.errors import ModelFileError
from fx_cli.tensors import varint

MODEL_TENSORS_KEY = (1 << 3) | 2  # ModelProto.tensors, length-delimited
DATA_BYTES_KEY = (7 << 3) | 2  # NamedTensor.data_bytes
DTYPE = np.dtype("<f4")


@dataclass
class TensorHeader:
    name: str
    round_number: int
    tags: list[str]
    shape: tuple[int, ...]
    nbytes: int


@dataclass
class ModelFile:
    tensors: dict[str, np.ndarray]
    round_number: int
    headers: list[TensorHeader] = field(default_factory=list)


def _named_tensor_head(name: str, shape: tuple[int, ...], round_number: int, tags: Iterable[str]) -> bytes:
    from fx_cli.proto import base_pb2

    msg = base_pb2.NamedTensor(name=name, round_number=round_number, lossless=True, report=False,
                               tags=sorted(set(tags)))
    msg.transformer_metadata.add().int_list.extend(int(d) for d in shape)
    return msg.SerializeToString()


def write_tensor(fh: BinaryIO, name: str, array: np.ndarray, round_number: int = 0,
                 tags: Iterable[str] = ("model",)) -> int:
    """Append one NamedTensor record; returns the bytes written."""
    data = np.asarray(array, dtype=DTYPE, order="C")  # keeps 0-d shapes
    head = _named_tensor_head(name, data.shape, round_number, tags)
    # proto3 omits an empty bytes field; do the same so output is byte-identical
    data_key = varint.encode(DATA_BYTES_KEY) + varint.encode(data.nbytes) if data.nbytes else b""
    body_len = len(head) + len(data_key) + data.nbytes
    prefix = varint.encode(MODEL_TENSORS_KEY) + varint.encode(body_len)
    fh.write(prefix + head + data_key)
    fh.write(data.reshape(-1).data.cast("B"))
    return len(prefix) + body_len


def write_model(path: str | os.PathLike[str], tensors: Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]],
                round_number: int = 0) -> int:
    """Write a model file atomically (temp file, fsync, rename); returns its size."""
    items = tensors.items() if isinstance(tensors, Mapping) else tensors
    total = 0
    with atomic_write(path) as fh:
        for name, array in items:
            total += write_tensor(fh, name, array, round_number)
    return total


def _skip_field(fh: BinaryIO, wire_type: int) -> bytes:
    """Read one non-data field value of the given wire type, returning its raw bytes."""
    if wire_type == 0:
        out = bytearray()
        while True:
            b = fh.read(1)
            if not b:
                raise EOFError
            out += b
            if not b[0] & 0x80:
                return bytes(out)
    if wire_type == 2:
        n = varint.read(fh)
        if n is None:
            raise EOFError
        data = fh.read(n)
        if len(data) != n:
            raise EOFError
        return varint.encode(n) + data
    if wire_type == 5:
        return _read_exact(fh, 4)
    if wire_type == 1:
        return _read_exact(fh, 8)
    raise ValueError(f"unsupported protobuf wire type {wire_type}")


def _read_exact(fh: BinaryIO, n: int) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise EOFError
    return data


class _Reader:
    """Iterates the NamedTensor records of one file, checking each."""

    def __init__(self, path: Path, load_data: bool) -> None:
        self.path = path
        self.load_data = load_data
        self.index = 0

    def fail(self, what: str, name: str | None = None) -> ModelFileError:
        which = f"tensor '{name}'" if name else f"tensor #{self.index}"
        return ModelFileError(f"{self.path}: {which}: {what}",
                              "the file is damaged or not an fx/OpenFL model file; restore it from a backup "
                              "or re-create it (fx plan initialize)")

    def records(self) -> Iterator[tuple[TensorHeader, np.ndarray | None]]:
        size = self.path.stat().st_size
        with open(self.path, "rb") as fh:
            while True:
                try:
                    key = varint.read(fh)
                except (EOFError, ValueError) as err:
                    raise self.fail(f"truncated record header ({err})") from None
                if key is None:
                    return
                if key != MODEL_TENSORS_KEY:
                    raise self.fail(f"unexpected field key {key} at byte {fh.tell()}; not a ModelProto")
                length = varint.read(fh)
                if length is None or fh.tell() + length > size:
                    raise self.fail(f"truncated: record needs {length} bytes, file ends at byte {size}")
                yield self._record(fh, fh.tell() + length)
                self.index += 1

    def _record(self, fh: io.BufferedReader, end: int) -> tuple[TensorHeader, np.ndarray | None]:
        from fx_cli.proto import base_pb2

        head = bytearray()
        data: np.ndarray | None = None
        nbytes = 0
        try:
            while fh.tell() < end:
                key = varint.read(fh)
                if key is None:
                    raise EOFError
                if key == DATA_BYTES_KEY:
                    nbytes = varint.read(fh) or 0
                    if fh.tell() + nbytes > end:
                        raise EOFError
                    data = self._data(fh, nbytes)
                else:
                    head += varint.encode(key) + _skip_field(fh, key & 7)
            msg = base_pb2.NamedTensor.FromString(bytes(head))
            if data is None and self.load_data:
                data = np.empty(0, dtype=np.uint8)
        except (EOFError, ValueError, Exception) as err:  # protobuf DecodeError included
            raise self.fail(f"corrupt record ({type(err).__name__}: {err})") from None
        if fh.tell() != end:
            raise self.fail("record length does not match its fields")
        return self._check(msg, nbytes, data)

    def _data(self, fh: io.BufferedReader, nbytes: int) -> np.ndarray | None:
        if not self.load_data:
            fh.seek(nbytes, os.SEEK_CUR)
            return None
        buf = np.empty(nbytes, dtype=np.uint8)
        if fh.readinto(buf.data) != nbytes:
            raise EOFError
        return buf

    def _check(self, msg: object, nbytes: int, data: np.ndarray | None) -> tuple[TensorHeader, np.ndarray | None]:
        name = msg.name  # type: ignore[attr-defined]
        metas = list(msg.transformer_metadata)  # type: ignore[attr-defined]
        if len(metas) != 1 or metas[0].int_to_float or metas[0].bool_list:
            raise self.fail("unknown encoding: expected one plain float32 transformer "
                            "(files written with a lossy or compressed pipeline are not supported)", name)
        shape = tuple(int(d) for d in metas[0].int_list)
        # Python integers: numpy's int64 product wraps (2**30 cubed "needs" 0 bytes).
        needed = math.prod(shape) * DTYPE.itemsize
        if any(d < 0 for d in shape) or needed != nbytes:
            raise self.fail(f"shape {shape} needs {needed:,} bytes of float32, record holds {nbytes:,}", name)
        header = TensorHeader(name, msg.round_number, list(msg.tags), shape, nbytes)  # type: ignore[attr-defined]
        array = data.view(DTYPE).reshape(shape) if data is not None else None
        return header, array


def iter_model(path: str | os.PathLike[str], load_data: bool = True) -> Iterator[tuple[TensorHeader, np.ndarray | None]]:
    """Yield ``(header, array)`` per tensor; ``array`` is None when ``load_data`` is False."""
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"{p}: model file not found", "check the path, or run `fx plan initialize`")
    reader = _Reader(p, load_data)
    rounds: set[int] = set()
    names: set[str] = set()
    for header, array in reader.records():
        rounds.add(header.round_number)
        if len(rounds) > 1:
            raise reader.fail(f"mixed round numbers {sorted(rounds)} in one model file", header.name)
        if header.name in names:
            raise reader.fail("tensor name appears twice", header.name)
        names.add(header.name)
        yield header, array


def read_model(path: str | os.PathLike[str]) -> ModelFile:
    """Read a whole model file into memory."""
    tensors: dict[str, np.ndarray] = {}
    headers: list[TensorHeader] = []
    for header, array in iter_model(path):
        assert array is not None
        tensors[header.name] = array
        headers.append(header)
    return ModelFile(tensors, headers[0].round_number if headers else 0, headers)


def model_headers(path: str | os.PathLike[str]) -> list[TensorHeader]:
    """Tensor headers only (no tensor data is read)."""
    return [h for h, _ in iter_model(path, load_data=False)]
