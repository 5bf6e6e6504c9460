"""Atomic file writes: a temporary file beside the target, fsync, rename, fsync the folder.

A reader (or a process restarted after ``kill -9``) sees either the old file or
the whole new one, never a part.
"""
from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import BinaryIO, Iterator


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], *, mode: int | None = None,
                 fault_point: str | None = None, reuse: Path | None = None) -> Iterator[BinaryIO]:
    """Yield a binary file; on success it replaces ``path`` durably, on any error it is removed.

    ``reuse``: a file no longer needed (same folder) that becomes the temporary file and is overwritten in place,
    then cut to what was written; the caller must write from the start, front to back. Its cached pages are
    written over instead of new ones being taken, which on a virtual machine that hands freed memory back to
    its host is ten times cheaper for a large file (see ARCHITECTURE.md). Without it, or when it is gone, a
    new file is written.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Unique per thread too: gRPC handlers may write the same file at once (32 collaborators joining together
    # collided on one temporary name, and the losers' joins failed).
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        recycled = False
        if reuse is not None:
            try:
                os.replace(reuse, tmp)
                recycled = True
            except FileNotFoundError:
                pass
        with open(tmp, "r+b" if recycled else "wb") as fh:
            yield fh
            if recycled:
                fh.truncate()  # the old content past the new end
            fh.flush()
            if fault_point:
                from fx_cli.faults import fault

                fault(fault_point)
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)
