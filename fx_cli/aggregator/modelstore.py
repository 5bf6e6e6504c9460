"""Global models of each round as indexed ``.pbuf`` files under ``local_state/models``.

Each file is an ordinary ``.pbuf`` (float32 tensors, OpenFL layout) written
atomically; while writing we note where each tensor's bytes start and their
CRC32, so a tensor can be read or streamed to collaborators straight from the
file without loading the model.
"""
from __future__ import annotations

import hashlib
import mmap
import os
import threading
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from fx_cli.atomic import atomic_write, fsync_dir
from fx_cli.checksum import crc32
from fx_cli.errors import ModelFileError
from fx_cli.tensors.pbuf import DTYPE, iter_model, write_tensor
from fx_cli.tensors.trailer import ChecksumSink
from fx_cli.transport.serde import Frame, ModelMeta, TensorMeta, Trailer


@dataclass(frozen=True)
class TensorEntry:
    name: str
    shape: tuple[int, ...]
    offset: int  # where the float32 bytes start in the file
    nbytes: int
    crc32: int

    def meta(self) -> TensorMeta:
        """The wire header of this tensor sent raw."""
        return TensorMeta(self.name, DTYPE.str, self.shape, self.nbytes, self.crc32)


@dataclass(frozen=True)
class RoundModel:
    """The global model that is the input of ``round`` (0-based), with its index."""

    round: int
    path: Path
    entries: tuple[TensorEntry, ...]

    @cached_property
    def by_name(self) -> dict[str, TensorEntry]:
        return {e.name: e for e in self.entries}

    @property
    def nbytes(self) -> int:
        return sum(e.nbytes for e in self.entries)

    def read(self, name: str) -> np.ndarray:
        """One tensor, read from its place in the file."""
        e = self.by_name[name]
        with open(self.path, "rb") as fh:
            return _read_at(fh, e)

    def tensors(self, mapped: bool = False) -> Iterator[tuple[str, np.ndarray]]:
        """Every tensor in file order, one at a time.

        ``mapped``: copy-on-write views of the file instead of copies, read only where they are used
        (FedAvg only needs the base tensor's shape): no model-sized read and, for one huge tensor, no
        tensor-sized buffer. Writing to one never changes the file.
        """
        if mapped:
            for e in self.entries:
                if e.nbytes:
                    yield e.name, np.memmap(self.path, DTYPE, "c", e.offset, e.shape)
                else:
                    yield e.name, np.empty(e.shape, DTYPE)
            return
        with open(self.path, "rb") as fh:
            for e in self.entries:
                yield e.name, _read_at(fh, e)

    def frames(self, chunk: int) -> Iterator[Frame]:
        """The download stream: model header, each tensor's header and chunks, trailer.

        Chunks are views of the file mapped read-only: the message serializer copies each one once, from
        the page cache into the message (a ``read`` would copy it twice). A chunk's pages are dropped from the
        mapping when the next one is asked for (gRPC has serialized it by then; were a view still read, its
        pages would come back from the page cache), so the process maps at most one chunk of the model.
        """
        yield ModelMeta(self.round, len(self.entries), self.nbytes)
        with open(self.path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            end = max((e.offset + e.nbytes for e in self.entries), default=0)
            if end > size:
                raise OSError(f"{self.path} is shorter than its index ({size:,} bytes, needs {end:,})")
            mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if size else None
        view = memoryview(mapped) if mapped is not None else memoryview(b"")
        done = 0  # pages below this offset are no longer needed
        try:
            for e in self.entries:
                yield e.meta()
                for start in range(e.offset, e.offset + e.nbytes, chunk):
                    end = min(start + chunk, e.offset + e.nbytes)
                    yield view[start:end]
                    done = _drop_pages(mapped, done, end)
            yield Trailer(len(self.entries), self.nbytes)
        finally:
            view.release()
            _unmap(mapped)

    def to_json(self) -> dict[str, Any]:
        return {"round": self.round, "path": str(self.path),
                "entries": [[e.name, list(e.shape), e.offset, e.nbytes, e.crc32] for e in self.entries]}

    @staticmethod
    def from_json(data: dict[str, Any]) -> "RoundModel":
        entries = tuple(TensorEntry(n, tuple(s), o, b, c) for n, s, o, b, c in data["entries"])
        return RoundModel(int(data["round"]), Path(data["path"]), entries)


def model_problem(model: RoundModel, path: Path | None = None) -> str | None:
    """Why the file (``model.path`` or a copy of it at ``path``) does not hold ``model``'s tensors; None if it does."""
    path = path or model.path
    try:
        with open(path, "rb") as fh:
            for e in model.entries:
                fh.seek(e.offset)
                crc, left = 0, e.nbytes
                while left:
                    data = fh.read(min(left, 4 << 20))
                    if not data:
                        return f"{path} is truncated (tensor '{e.name}' is incomplete)"
                    crc, left = crc32(data, crc), left - len(data)
                if crc != e.crc32:
                    return f"{path}: tensor '{e.name}' does not match its checksum (the file is damaged)"
        if path.suffix == ".pbuf":  # not spilled updates (raw .f32): record headers, fx's checksum record
            for _ in iter_model(path):
                pass
    except OSError as err:
        return f"{path} cannot be read: {err.strerror or err}"
    except ModelFileError as err:
        return err.message
    return None


def _drop_pages(mapped: mmap.mmap | None, done: int, upto: int) -> int:
    """Let go of the mapped pages in [done, upto) (whole pages only): the page cache keeps them, our RSS not."""
    upto -= upto % mmap.PAGESIZE
    if mapped is not None and upto > done and hasattr(mmap, "MADV_DONTNEED"):
        mapped.madvise(mmap.MADV_DONTNEED, done, upto - done)
        return upto
    return done


def _unmap(mapped: mmap.mmap | None) -> None:
    """Unmap now, or (while a chunk view is still referenced somewhere) when the last view goes."""
    if mapped is not None:
        try:
            mapped.close()
        except BufferError:
            pass


def _read_at(fh: Any, e: TensorEntry) -> np.ndarray:
    fh.seek(e.offset)
    buf = np.empty(e.nbytes // DTYPE.itemsize, dtype=DTYPE)
    if fh.readinto(buf.data.cast("B")) != e.nbytes:
        raise OSError(f"{fh.name}: tensor '{e.name}' is truncated")
    return buf.reshape(e.shape)


def write_round_model(path: Path, tensors: Iterable[tuple[str, np.ndarray]], round_num: int,
                      reuse: Path | None = None) -> RoundModel:
    """Write tensors one by one to ``path`` atomically (temp, fsync, rename), returning the index.

    ``reuse``: an unneeded file to overwrite instead of writing a new one (``atomic_write``).
    """
    entries = []
    with atomic_write(path, fault_point="aggregator:writing_file", reuse=reuse) as fh:
        sink = ChecksumSink(fh, behind=True)  # hashed while the next tensor is computed
        try:
            for name, array in tensors:
                data = np.asarray(array, dtype=DTYPE, order="C")
                start = fh.tell()
                written = write_tensor(sink, name, data, round_number=round_num)
                crc = crc32(data.reshape(-1).data.cast("B"))
                entries.append(TensorEntry(name, tuple(data.shape), start + written - data.nbytes, data.nbytes,
                                           crc))
            sink.finish()
        finally:
            sink.close()
    remember_sha256(path, sink.file_sha256())
    return RoundModel(round_num, path, tuple(entries))


def import_model(source: Path, target: Path, round_num: int) -> RoundModel:
    """Copy a ``.pbuf`` (e.g. save/init.pbuf) into the store, one tensor at a time."""
    return write_round_model(target, ((h.name, a) for h, a in iter_model(source) if a is not None), round_num)


def export_copy(source: Path, target: Path) -> None:
    """Copy a model file to a user-visible path atomically (best/last state).

    A real copy of the bytes (the kernel's ``sendfile``, never a hard link or a reflink): recovery restores a
    damaged model from this copy, so the two must not share blocks on disk.
    """
    digest = known_sha256(source)
    with open(source, "rb") as src, atomic_write(target, fault_point="aggregator:writing_file") as dst:
        size, at = os.fstat(src.fileno()).st_size, 0
        while at < size:
            sent = os.sendfile(dst.fileno(), src.fileno(), at, min(size - at, 1 << 30))
            if sent == 0:
                raise OSError(f"{source}: ended at byte {at} of {size} while it was copied to {target}")
            at += sent
    if digest is not None:
        remember_sha256(target, digest)


def export_from_copy(copy: Path, source: Path, target: Path) -> bool:
    """Make ``target`` the file ``copy`` when ``copy`` is known to hold exactly ``source``'s bytes; else False.

    The best model of a round is the model the round started from, which the last round exported as
    save/last.pbuf: so best_state_path becomes that file (a hard link renamed into place, no copy) just before
    last_state_path is replaced by a copy of the new model, after which the two are separate files again.
    "Known" means both digests were noted by this process as it wrote them (``remember_sha256``); after a
    restart, or when the file system has no hard links, the caller copies as before.
    """
    digest = known_sha256(source)
    if digest is None or known_sha256(copy) != digest:
        return False
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-link")
    try:
        tmp.unlink(missing_ok=True)
        os.link(copy, tmp)
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except OSError:
        tmp.unlink(missing_ok=True)
        return False
    remember_sha256(target, digest)
    return True


# SHA-256 of the model files this process wrote, computed while writing them (the integrity trailer's own pass),
# so that the audit log's digest of save/last.pbuf each round needs no second pass over the file. Keyed by the
# file's identity and times: a file replaced or changed since is hashed again.
_DIGESTS: dict[tuple[str, int, int, int, int, int], str] = {}
_DIGESTS_LOCK = threading.Lock()
_DIGESTS_KEPT = 64


def _identity(path: Path) -> tuple[str, int, int, int, int, int]:
    st = os.stat(path)
    return (os.path.abspath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def remember_sha256(path: Path, digest: str) -> None:
    """Note the hex SHA-256 of ``path`` as it is now (just written by this process)."""
    key = _identity(path)
    with _DIGESTS_LOCK:
        _DIGESTS[key] = digest
        while len(_DIGESTS) > _DIGESTS_KEPT:
            del _DIGESTS[next(iter(_DIGESTS))]


def file_sha256(path: Path) -> str | None:
    """The hex SHA-256 of ``path`` (None when it does not exist); a model file this process wrote is not read again."""
    known = known_sha256(path)  # hashed while it was written
    if known is not None:
        return known
    try:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    except FileNotFoundError:
        return None


def known_sha256(path: Path) -> str | None:
    """The digest noted by ``remember_sha256`` if ``path`` is still that same, unchanged file; else None.

    Unchanged means same inode, size, modification and change times. A change made by someone else within the
    file system's timestamp tick of our write, keeping the size, goes unnoticed: the audit log then names the
    bytes this process wrote.
    """
    try:
        key = _identity(path)
    except OSError:
        return None
    with _DIGESTS_LOCK:
        return _DIGESTS.get(key)
