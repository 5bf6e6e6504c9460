"""SHA-256 of a file being written, computed in a thread a step behind the writer.

A round's next model is written tensor by tensor, each folded from the updates first. Hashing each tensor as it
is written puts the SHA-256 (a third of the close at 5e7) between the folds. This thread instead reads back the
bytes the writer has flushed (from the page cache, through one reusable 1 MiB buffer) and hashes them while the
writer folds the next tensor: the two stages share the second core, and no tensor is held longer than before.
"""
from __future__ import annotations

import hashlib
import os
import threading

BLOCK = 1 << 20


class FileHasher:
    """Hashes ``path`` from ``start`` as far as ``upto`` says has been flushed; ``wait`` for the digest."""

    def __init__(self, path: str, start: int, sha: "hashlib._Hash") -> None:
        self.sha = sha
        self._fd = os.open(path, os.O_RDONLY)
        self._done = self._target = start
        self._final = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="fx-hash", daemon=True)
        self._thread.start()

    def upto(self, offset: int) -> None:
        """Bytes before ``offset`` are flushed to the file and may be hashed."""
        with self._cond:
            self._target = offset
            self._cond.notify()

    def wait(self, offset: int) -> None:
        """Hash up to ``offset`` (flushed) and stop; raises what went wrong in the thread."""
        with self._cond:
            self._target, self._final = offset, True
            self._cond.notify()
        self._thread.join()
        os.close(self._fd)
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Stop without a digest (the write failed)."""
        if self._thread.is_alive():
            with self._cond:
                self._final, self._target = True, self._done
                self._cond.notify()
            self._thread.join()
            os.close(self._fd)

    def _run(self) -> None:
        buf = bytearray(BLOCK)
        view = memoryview(buf)
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._done < self._target or self._final)
                    target, final = self._target, self._final
                while self._done < target:
                    got = os.preadv(self._fd, [view[:min(BLOCK, target - self._done)]], self._done)
                    if got <= 0:
                        raise OSError(f"the file ended at byte {self._done} while {target} were written")
                    self.sha.update(view[:got])
                    self._done += got
                if final and self._done >= target:
                    return
        except BaseException as err:  # raised by ``wait``
            self._error = err
