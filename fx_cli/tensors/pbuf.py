"""Streaming reader and writer for ``.pbuf`` model files.

A ``.pbuf`` is one serialised ``ModelProto`` (field 1: repeated NamedTensor),
byte-compatible with OpenFL 1.9.  We write and read it one ``NamedTensor``
record at a time, copying tensor bytes straight between numpy buffers and the
file, so memory stays about one tensor whatever the file size (well past the
2 GiB protobuf message limit).  Tensors are float32 little-endian with one
``MetadataProto{int_list: shape}``: OpenFL's NoCompressionPipeline encoding.
Files fx writes end with an integrity record OpenFL ignores (see ``trailer``).
"""
from __future__ import annotations

import hashlib
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
from fx_cli.tensors.trailer import MAX_TRAILER, TRAILER_KEY, ChecksumSink, Sink, Trailer

MODEL_TENSORS_KEY = (1 << 3) | 2  # ModelProto.tensors, length-delimited
DATA_BYTES_KEY = (7 << 3) | 2  # NamedTensor.data_bytes
DTYPE = np.dtype("<f4")
DAMAGED_HINT = ("the file is damaged or not an fx/OpenFL model file; restore it from a backup "
                "or re-create it (fx plan initialize)")


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
    trailer: Trailer | None = None


def _named_tensor_head(name: str, shape: tuple[int, ...], round_number: int, tags: Iterable[str]) -> bytes:
    from fx_cli.proto import base_pb2

    msg = base_pb2.NamedTensor(name=name, round_number=round_number, lossless=True, report=False,
                               tags=sorted(set(tags)))
    msg.transformer_metadata.add().int_list.extend(int(d) for d in shape)
    return msg.SerializeToString()


def write_tensor(fh: Sink, name: str, array: np.ndarray, round_number: int = 0,
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
    if isinstance(fh, ChecksumSink):
        fh.count += 1
    return len(prefix) + body_len


def write_model(path: str | os.PathLike[str], tensors: Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]],
                round_number: int = 0, spec: str = "") -> int:
    """Write a model file atomically (temp file, fsync, rename) with its integrity trailer; returns its size."""
    items = tensors.items() if isinstance(tensors, Mapping) else tensors
    total = 0
    with atomic_write(path) as fh:
        sink = ChecksumSink(fh, spec)
        for name, array in items:
            total += write_tensor(sink, name, array, round_number)
        total += sink.finish()
    return total


def _skip_field(fh: varint.Readable, wire_type: int) -> bytes:
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


def _read_exact(fh: varint.Readable, n: int) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise EOFError
    return data


class _HashingReader:
    """A read-only file that hashes what is read (hashing stops at the first seek)."""

    def __init__(self, fh: io.BufferedReader) -> None:
        self.fh = fh
        self.sha: "hashlib._Hash | None" = hashlib.sha256()

    def read(self, n: int = -1, /) -> bytes:
        data = self.fh.read(n)
        if self.sha is not None:
            self.sha.update(data)
        return data

    def readinto(self, buf: memoryview) -> int:
        n = self.fh.readinto(buf)
        if self.sha is not None:
            self.sha.update(buf[:n])
        return n

    def tell(self) -> int:
        return self.fh.tell()

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self.sha = None
        return self.fh.seek(offset, whence)


class _Reader:
    """Iterates the NamedTensor records of one file, checking each."""

    def __init__(self, path: Path, load_data: bool) -> None:
        self.path = path
        self.load_data = load_data
        self.index = 0
        self.trailer: Trailer | None = None

    def fail(self, what: str, name: str | None = None) -> ModelFileError:
        which = f"tensor '{name}'" if name else f"tensor #{self.index}"
        return ModelFileError(f"{self.path}: {which}: {what}", DAMAGED_HINT)

    def file_fail(self, what: str) -> ModelFileError:
        return ModelFileError(f"{self.path}: {what}", DAMAGED_HINT)

    def records(self) -> Iterator[tuple[TensorHeader, np.ndarray | None]]:
        size = self.path.stat().st_size
        with open(self.path, "rb") as raw:
            fh = _HashingReader(raw)
            while True:
                start = fh.tell()
                digest = fh.sha.copy().digest() if fh.sha is not None else None
                try:
                    key = varint.read(fh)
                    length = varint.read(fh) if key is not None else 0
                except (EOFError, ValueError) as err:
                    raise self.fail(f"malformed record header at byte {start} ({err})") from None
                if key is None:
                    return
                if key == TRAILER_KEY:
                    self._trailer(fh, start, length or 0, size, digest)
                    return
                if length is None or fh.tell() + length > size:
                    raise self.fail(f"truncated: record needs {length} bytes, file ends at byte {size}")
                if key != MODEL_TENSORS_KEY:
                    raise self.fail(f"unexpected field key {key} at byte {start}; not a ModelProto")
                yield self._record(fh, fh.tell() + length)
                self.index += 1

    def _trailer(self, fh: _HashingReader, start: int, length: int, size: int, digest: bytes | None) -> None:
        """Check fx's integrity record (count, length, SHA-256 when the data was read); it must come last."""
        if length > MAX_TRAILER or fh.tell() + length != size:
            raise self.file_fail(f"truncated or damaged: the checksum record at byte {start} is cut short "
                                 "or is not the end of the file")
        try:
            trailer = Trailer.decode(fh.read(length))
        except (ValueError, EOFError) as err:
            raise self.file_fail(f"damaged checksum record ({err})") from None
        if trailer.count != self.index or trailer.length != start:
            raise self.file_fail(f"its checksum record expects {trailer.count} tensors in {trailer.length:,} bytes, "
                                 f"the file holds {self.index} in {start:,} (tensors were added or removed)")
        if digest is not None and digest != trailer.sha256:
            raise self.file_fail("the file does not match its checksum (SHA-256: bytes were changed)")
        self.trailer = trailer

    def _record(self, fh: _HashingReader, end: int) -> tuple[TensorHeader, np.ndarray | None]:
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

    def _data(self, fh: _HashingReader, nbytes: int) -> np.ndarray | None:
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


NO_CHECKSUM = ("has no fx checksum record: it was cut short, or was not written by fx (a model from OpenFL "
               "or elsewhere: import it with `fx plan initialize -i FILE`)")


class ModelScan:
    """Iterates ``(header, array)`` per tensor; after the last one ``trailer`` holds fx's checksum record.

    Refused: no tensors at all, and (with ``require_checksum``) a file without fx's checksum record.
    """

    def __init__(self, path: Path, load_data: bool, require_checksum: bool) -> None:
        self.reader = _Reader(path, load_data)
        self.require_checksum = require_checksum
        self._it = self._scan()

    @property
    def trailer(self) -> Trailer | None:
        return self.reader.trailer

    def __iter__(self) -> "ModelScan":
        return self

    def __next__(self) -> tuple[TensorHeader, np.ndarray | None]:
        return next(self._it)

    def _scan(self) -> Iterator[tuple[TensorHeader, np.ndarray | None]]:
        reader = self.reader
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
        if reader.index == 0:
            raise reader.file_fail("holds no tensors (an empty file, or one cut before its first tensor)")
        if self.require_checksum and reader.trailer is None:
            raise reader.file_fail(NO_CHECKSUM)


def iter_model(path: str | os.PathLike[str], load_data: bool = True, require_checksum: bool = False) -> ModelScan:
    """Yield ``(header, array)`` per tensor; ``array`` is None when ``load_data`` is False.

    fx's checksum record is verified when present (the SHA-256 only when the data is read).
    """
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"{p}: model file not found", "check the path, or run `fx plan initialize`")
    return ModelScan(p, load_data, require_checksum)


def read_model(path: str | os.PathLike[str], require_checksum: bool = False) -> ModelFile:
    """Read a whole model file into memory."""
    tensors: dict[str, np.ndarray] = {}
    headers: list[TensorHeader] = []
    scan = iter_model(path, require_checksum=require_checksum)
    for header, array in scan:
        assert array is not None
        tensors[header.name] = array
        headers.append(header)
    return ModelFile(tensors, headers[0].round_number if headers else 0, headers, scan.trailer)


def model_headers(path: str | os.PathLike[str], require_checksum: bool = False) -> list[TensorHeader]:
    """Tensor headers only (no tensor data is read; the checksum's count and length are checked)."""
    return [h for h, _ in iter_model(path, load_data=False, require_checksum=require_checksum)]


def model_trailer(path: str | os.PathLike[str]) -> Trailer | None:
    """fx's checksum record of a model file (None for files written elsewhere); the headers are checked."""
    scan = iter_model(path, load_data=False)
    for _ in scan:
        pass
    return scan.trailer
