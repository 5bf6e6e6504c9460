"""Atomic writes from many threads at once (gRPC handlers do this: collaborators joining together)."""
from __future__ import annotations

import threading
from pathlib import Path

from fx_cli.atomic import atomic_write


def test_threads_writing_the_same_file_at_once_all_succeed_and_one_whole_version_wins(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    start, errors = threading.Barrier(16), []

    def write(i: int) -> None:
        try:
            start.wait()
            with atomic_write(target) as fh:
                fh.write(str(i).encode() * 1000)
        except Exception as err:  # noqa: BLE001 - the test reports every failure
            errors.append(err)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    data = target.read_bytes()
    assert data in {str(i).encode() * 1000 for i in range(16)}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary file left behind


def test_a_reused_file_is_overwritten_in_place_and_cut_to_the_new_content(tmp_path: Path) -> None:
    spare, target = tmp_path / ".spare", tmp_path / "model.pbuf"
    spare.write_bytes(b"old" * 1000)
    inode = spare.stat().st_ino
    with atomic_write(target, reuse=spare) as fh:
        fh.write(b"new content")
    assert target.read_bytes() == b"new content"  # nothing of the longer old file is left
    assert target.stat().st_ino == inode and not spare.exists()  # the same file, renamed: its pages were reused
    with atomic_write(target, reuse=spare) as fh:  # no spare any more: a new file, as without reuse
        fh.write(b"x")
    assert target.read_bytes() == b"x"


def test_a_failed_write_over_a_reused_file_leaves_the_target_untouched(tmp_path: Path) -> None:
    spare, target = tmp_path / ".spare", tmp_path / "model.pbuf"
    spare.write_bytes(b"old")
    target.write_bytes(b"current")
    try:
        with atomic_write(target, reuse=spare) as fh:
            fh.write(b"half")
            raise OSError("disk gone")
    except OSError:
        pass
    assert target.read_bytes() == b"current" and sorted(p.name for p in tmp_path.iterdir()) == ["model.pbuf"]
