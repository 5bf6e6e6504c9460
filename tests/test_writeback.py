"""Spills and round models start their write-out to disk while they are written, so the fsync before their
rename waits for the last few MiB only; files that are not fsynced (``power_safe: false``) are left alone.
Where the kernel call does not exist (not Linux/glibc), nothing is started and nothing fails."""
from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from fx_cli import writeback
from fx_cli.aggregator import intake
from fx_cli.aggregator.intake import UpdateIntake, load_spilled
from fx_cli.aggregator.modelstore import write_round_model
from fx_cli.tensors.hashbehind import BLOCK
from fx_cli.tensors.pbuf import read_model
from fx_cli.tensors.trailer import ChecksumSink
from fx_cli.writeback import Writeback
from tests.test_runtime_intake import upload_frames

STEP = 4096


def started(nbytes: int) -> int:
    """What a Writeback reports started for ``nbytes`` of write-outs asked for on this system."""
    return nbytes if writeback.available() else 0


def test_the_call_exists_on_linux() -> None:
    assert writeback.available() == sys.platform.startswith("linux")


def test_written_ranges_are_gathered_and_started_a_step_at_a_time(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        wb = Writeback(fd, step=STEP)
        at = 0
        for n in (1000, 1000, 1000):  # 3000 bytes gathered, under a step
            os.pwrite(fd, b"x" * n, at)
            wb.written(at, n)
            at += n
        assert wb.started == 0
        os.pwrite(fd, b"y" * 2000, at)
        wb.written(at, 2000)  # 5000 >= 4096: started
        at += 2000
        assert wb.started == started(5000)
        os.pwrite(fd, b"z" * 100, at)
        wb.written(at, 100)
        os.pwrite(fd, b"w" * 100, 20_000)
        wb.written(20_000, 100)  # elsewhere: what was gathered is started, gathering begins again there
        assert wb.started == started(5100)
        if writeback.available():
            assert (wb.start, wb.end) == (20_000, 20_100)
        wb.written(20_100, 0)
        assert wb.started == started(5100)
    finally:
        os.close(fd)


@pytest.fixture
def small_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(intake, "Writeback", functools.partial(Writeback, step=STEP))


def test_a_spill_starts_its_write_out_as_it_arrives(small_steps: None, tmp_path: Path) -> None:
    tensors = {"a": np.arange(6000, dtype=np.float32), "b": np.linspace(0, 1, 10_000, dtype=np.float32)}
    model = write_round_model(tmp_path / "round_1.pbuf", tensors.items(), 1)
    taker = UpdateIntake(model, tmp_path / "updates" / "one.train.f32", set())
    spilled = taker.receive(iter(upload_frames(tensors, chunk=1024)))
    assert taker.writeback is not None
    if writeback.available():  # all but the tail, which is left to the fsync
        assert model.nbytes - STEP < taker.writeback.started <= model.nbytes
    else:
        assert taker.writeback.started == 0
    for name, array in tensors.items():
        np.testing.assert_array_equal(load_spilled(spilled.path, model, name, spilled.crcs[list(tensors).index(name)]),
                                      array)


def test_a_spill_that_is_not_fsynced_is_not_written_out_early(small_steps: None, tmp_path: Path) -> None:
    tensors = {"a": np.arange(6000, dtype=np.float32)}
    model = write_round_model(tmp_path / "round_1.pbuf", tensors.items(), 1)
    taker = UpdateIntake(model, tmp_path / "updates" / "one.train.f32", set(), power_safe=False)
    taker.receive(iter(upload_frames(tensors, chunk=1024)))
    assert taker.writeback is None


def test_a_round_model_starts_its_write_out_tensor_by_tensor(tmp_path: Path) -> None:
    path = tmp_path / "m.bin"
    with open(path, "wb") as fh:
        sink = ChecksumSink(fh, behind=True)
        for i in range(3):  # one step and a half
            sink.write(memoryview(np.full(writeback.STEP // 2, i, np.uint8)))
        sink.write(b"small writes are left to the fsync")
        sink.finish()
        sink.close()
    assert sink.writeback is not None and sink.writeback.started == started(writeback.STEP)
    tensors = [(f"t{i}", np.full(BLOCK // 4 + i, i, np.float32)) for i in range(3)]
    model = write_round_model(tmp_path / "round_2.pbuf", tensors, 2)
    back = read_model(model.path)  # checks the trailer's SHA-256
    for name, array in tensors:
        np.testing.assert_array_equal(back.tensors[name], array)
