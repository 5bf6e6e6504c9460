"""A round model's SHA-256 computed by a thread reading back what was written gives the same trailer and digest
as hashing inline, whatever the sizes of the writes; a failed write stops the thread; a short file is an error."""
from __future__ import annotations

import hashlib
import io
import threading
from pathlib import Path

import numpy as np
import pytest

from fx_cli.aggregator.modelstore import file_sha256, write_round_model
from fx_cli.tensors.hashbehind import BLOCK, FileHasher
from fx_cli.tensors.pbuf import read_model
from fx_cli.tensors.trailer import ChecksumSink


def hashing_threads(before: set[threading.Thread]) -> int:
    """Hashing threads started since ``before`` that are still alive."""
    return sum(t.name == "fx-hash" and t not in before for t in threading.enumerate())


@pytest.mark.parametrize("sizes", [[10, 20], [BLOCK], [BLOCK - 1, BLOCK + 1, 3], [3 * BLOCK + 17, 5, 2 * BLOCK]])
def test_hashing_behind_gives_the_inline_digest_and_trailer(tmp_path: Path, sizes: list[int]) -> None:
    rng = np.random.default_rng(len(sizes))
    chunks = [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in sizes]
    before = set(threading.enumerate())
    inline = ChecksumSink(io.BytesIO())
    path = tmp_path / "f.bin"
    with open(path, "wb") as fh:
        fh.write(b"prefix not hashed")
        behind = ChecksumSink(fh, behind=True)
        for chunk in chunks:
            inline.write(chunk)
            behind.write(memoryview(chunk))
        inline.finish()
        behind.finish()
    assert behind.file_sha256() == inline.file_sha256()
    assert hashlib.sha256(b"".join(chunks)).digest() in path.read_bytes()  # the trailer holds the data's digest
    assert hashing_threads(before) == 0


def test_a_round_model_written_with_hashing_behind_reads_back_verified(tmp_path: Path) -> None:
    tensors = [(f"t{i}", np.full(BLOCK // 4 * (i + 1) + i, i, np.float32)) for i in range(4)]
    model = write_round_model(tmp_path / "round_1.pbuf", tensors, 1)
    assert file_sha256(model.path) == hashlib.sha256(model.path.read_bytes()).hexdigest()
    back = read_model(model.path)  # checks the trailer's SHA-256
    for name, array in tensors:
        np.testing.assert_array_equal(back.tensors[name], array)


def test_a_failed_write_stops_the_hashing_thread_and_leaves_no_file(tmp_path: Path) -> None:
    def tensors():  # type: ignore[no-untyped-def]
        yield "t0", np.ones(BLOCK, np.float32)
        raise OSError("the fold could not read a spill")

    before = set(threading.enumerate())
    with pytest.raises(OSError, match="could not read a spill"):
        write_round_model(tmp_path / "round_1.pbuf", tensors(), 1)
    assert hashing_threads(before) == 0 and not list(tmp_path.iterdir())


def test_a_file_shorter_than_what_was_written_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 100)
    hasher = FileHasher(str(path), 0, hashlib.sha256())
    with pytest.raises(OSError, match="ended at byte 100 while 200 were written"):
        hasher.wait(200)
