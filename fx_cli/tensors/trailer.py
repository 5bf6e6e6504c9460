"""The integrity record fx appends to the model files it writes.

OpenFL's ``ModelProto`` has one field (1: repeated NamedTensor).  fx ends each
file with one more length-delimited field, number 50, which OpenFL's parser
keeps as an unknown field and otherwise ignores (and re-serialises unchanged,
since it is last).  It holds the number of tensor records, the byte length
before it, the SHA-256 of those bytes and an optional model spec (a digest of
the plan sections that define the model, written by ``fx plan initialize``).
A file cut at a record boundary loses the trailer; one with a flipped byte
fails the hash; one made for another plan model fails the spec.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import BinaryIO, Protocol, cast

from fx_cli.tensors import varint
from fx_cli.tensors.hashbehind import BLOCK, FileHasher
from fx_cli.writeback import Writeback

TRAILER_FIELD = 50
TRAILER_KEY = (TRAILER_FIELD << 3) | 2
MAX_TRAILER = 512
_COUNT, _LENGTH, _SHA, _SPEC = (1 << 3) | 0, (2 << 3) | 0, (3 << 3) | 2, (4 << 3) | 2


class Sink(Protocol):
    def write(self, data: bytes | memoryview, /) -> int: ...


@dataclass(frozen=True)
class Trailer:
    count: int
    length: int
    sha256: bytes
    spec: str = ""

    def encode(self) -> bytes:
        spec = self.spec.encode()
        body = (varint.encode(_COUNT) + varint.encode(self.count) + varint.encode(_LENGTH)
                + varint.encode(self.length) + varint.encode(_SHA) + varint.encode(len(self.sha256))
                + self.sha256 + varint.encode(_SPEC) + varint.encode(len(spec)) + spec)
        return varint.encode(TRAILER_KEY) + varint.encode(len(body)) + body

    @staticmethod
    def decode(body: bytes) -> "Trailer":
        """Parse a trailer body; ValueError when it is malformed."""
        fh = io.BytesIO(body)
        values: dict[int, int | bytes] = {}
        while (key := varint.read(fh)) is not None:
            if key in (_COUNT, _LENGTH):
                values[key] = _need(varint.read(fh))
            elif key in (_SHA, _SPEC):
                n = _need(varint.read(fh))
                data = fh.read(n)
                if len(data) != n:
                    raise ValueError("checksum record is cut short")
                values[key] = data
            else:
                raise ValueError(f"unknown field key {key} in the checksum record")
        count, length, sha, spec = (values.get(_COUNT), values.get(_LENGTH), values.get(_SHA),
                                    values.get(_SPEC, b""))
        if not isinstance(count, int) or not isinstance(length, int) or not isinstance(sha, bytes) \
                or len(sha) != 32 or not isinstance(spec, bytes):
            raise ValueError("checksum record lacks its count, length or SHA-256")
        return Trailer(count, length, sha, spec.decode("utf-8", errors="replace"))


def _need(value: int | None) -> int:
    if value is None:
        raise ValueError("checksum record is cut short")
    return value


class ChecksumSink:
    """Passes writes to ``fh`` while hashing them; ``finish`` appends the trailer.

    ``behind``: ``fh`` is a file (with ``name`` and ``flush``) whose bytes are hashed by a thread reading them
    back after each large write (``hashbehind``), so the caller's next work overlaps the hashing, and whose
    write-out to disk starts as it is written (``writeback``); call ``close`` when the write fails.
    """

    def __init__(self, fh: Sink, spec: str = "", behind: bool = False) -> None:
        self.fh = fh
        self.spec = spec
        self.sha = hashlib.sha256()
        self.length = 0
        self.count = 0
        self.start = 0
        self.hasher: FileHasher | None = None
        self.writeback: Writeback | None = None
        if behind:
            file = cast(BinaryIO, fh)
            self.start = file.tell()
            self.hasher = FileHasher(file.name, self.start, self.sha)
            self.writeback = Writeback(file.fileno())

    def write(self, data: bytes | memoryview, /) -> int:
        self.length += len(data)
        if self.hasher is None:
            self.sha.update(data)
            return self.fh.write(data)
        written = self.fh.write(data)
        if len(data) >= BLOCK:
            cast(BinaryIO, self.fh).flush()
            self.hasher.upto(self.start + self.length)
            assert self.writeback is not None
            self.writeback.written(self.start + self.length - len(data), len(data))
        return written

    def close(self) -> None:
        """Stop the hashing thread (after a failed write; ``finish`` stops it otherwise)."""
        if self.hasher is not None:
            self.hasher.close()

    def finish(self) -> int:
        """Write the trailer; returns its size."""
        if self.hasher is not None:
            cast(BinaryIO, self.fh).flush()
            self.hasher.wait(self.start + self.length)
        record = Trailer(self.count, self.length, self.sha.digest(), self.spec).encode()
        self.fh.write(record)
        self.sha.update(record)  # from here on: the SHA-256 of the whole file, trailer included
        return len(record)

    def file_sha256(self) -> str:
        """After ``finish``: the hex SHA-256 of every byte written, the trailer included (no second pass)."""
        return self.sha.hexdigest()
