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
