"""Broken disks: a full disk while saving, damaged model files, damaged updates, damaged or torn SQLite state.

In every case the previous good state survives (nothing is overwritten with bad data), the message names the
file and says what to do, and where the state is usable the run resumes and ends bit-identical.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from fx_cli.tensors.pbuf import read_model
from tests.fault_helpers import (assert_bit_identical, files, flat, killed, processes, saved_meta, task_counts,
                                 uninterrupted_model)
from tests.runtime_helpers import make_workspace

pytestmark = pytest.mark.slow
NAMES = ["one", "two"]
ROUNDS = 3
TIMEOUT = 120.0
SETTINGS = dict(rounds=ROUNDS, num_params=3000, network={"reconnect_deadline": 60})


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    return uninterrupted_model(tmp_path_factory.mktemp("reference"), NAMES, **SETTINGS)


def workspace(tmp_path: Path) -> Path:
    return make_workspace(tmp_path, NAMES, **SETTINGS)  # type: ignore[arg-type]


def stopped_after_round_1(ws: Path) -> None:
    """Run the federation until round 1 is saved and exported, then SIGKILL everything (the state is at round 2).

    The copies are refreshed behind the next round, so the kill comes where they are done, not as round 2 opens.
    """
    with processes(ws) as procs:
        agg = procs.aggregator(fault="aggregator:after_round_1")
        cols = [procs.collaborator(n) for n in NAMES]
        killed(agg)
        for col in cols:
            col.popen.kill()
    assert saved_meta(ws)["round"] == "1" and read_model(ws / "save" / "last.pbuf").round_number == 1


def finish(ws: Path, uninterrupted: dict[str, np.ndarray]) -> str:
    """Start everything again; the run must complete bit-identical. Returns the aggregator's log."""
    with processes(ws) as procs:
        agg = procs.aggregator()
        cols = [procs.collaborator(n) for n in NAMES]
        assert agg.wait(TIMEOUT) == 0, agg.output()
        for col in cols:
            assert col.wait(TIMEOUT) == 0, col.output()
    assert_bit_identical(read_model(ws / "save" / "last.pbuf").tensors, uninterrupted)
    return flat(agg.output())


def flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0xFF]))


def refused_start(ws: Path) -> str:
    """Start the aggregator on broken state: it must exit 1 at once, naming the problem."""
    with processes(ws) as procs:
        agg = procs.aggregator()
        assert agg.wait(30) == 1, agg.output()
    return flat(agg.output())


# writing_file hits: 1 round_0 import; round 1: 2 model, 3 best, 4 last; round 2: 5 model, 6 last (its best.pbuf
# is round 1's last.pbuf, renamed into place: no write).
@pytest.mark.parametrize("rule,saved_round", [("aggregator:writing_file#5=enospc", "1"),
                                              ("aggregator:writing_file#6=enospc", "2"),
                                              ("aggregator:committing#2=enospc", "1")])
def test_a_full_disk_while_saving_keeps_the_last_good_state_and_the_run_resumes(
        tmp_path: Path, uninterrupted: dict[str, np.ndarray], rule: str, saved_round: str) -> None:
    ws = workspace(tmp_path)
    with processes(ws) as procs:
        agg = procs.aggregator(fault=rule)
        cols = [procs.collaborator(n) for n in NAMES]
        assert agg.wait(TIMEOUT) == 1, agg.output()
        for col in cols:
            assert col.wait(TIMEOUT) == 1
    text = flat(agg.output())
    assert "round 2: saving the round failed" in text and "No space left on device" in text
    assert "the last saved state is kept" in text and "free disk space" in text
    assert "the aggregator ended the run" in flat(cols[0].output())
    assert saved_meta(ws)["round"] == saved_round
    last = read_model(ws / "save" / "last.pbuf")  # the previous good file, whole
    assert last.round_number == 1
    assert not files(ws / "save", ".*.tmp-*") and not files(ws / "local_state", ".*.tmp-*")
    finish(ws, uninterrupted)
    for name in NAMES:
        assert task_counts(ws, name)["train"] == ROUNDS, "results saved before the failure are not asked again"


def test_a_damaged_global_model_is_restored_from_its_intact_copy(tmp_path: Path,
                                                                 uninterrupted: dict[str, np.ndarray]) -> None:
    ws = workspace(tmp_path)
    stopped_after_round_1(ws)
    current = ws / "local_state" / "models" / "round_1.pbuf"
    os.truncate(current, current.stat().st_size // 2)
    text = finish(ws, uninterrupted)
    assert "the current global model: " in text and "is truncated" in text
    assert "restored it from its intact copy" in text and "save/last.pbuf" in text


def test_a_damaged_global_model_without_a_good_copy_stops_the_start_and_changes_nothing(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    stopped_after_round_1(ws)
    current = ws / "local_state" / "models" / "round_1.pbuf"
    flip_byte(current, current.stat().st_size - 10)
    flip_byte(ws / "save" / "last.pbuf", 100)
    before = {p: p.read_bytes() for p in (current, ws / "save" / "last.pbuf")}
    meta = saved_meta(ws)
    text = refused_start(ws)
    assert "the current global model of round 2 is damaged" in text and "round_1.pbuf" in text
    assert "does not match its checksum" in text and "the saved state was left untouched" in text
    assert "fx aggregator reset" in text
    assert {p: p.read_bytes() for p in before} == before and saved_meta(ws) == meta


def test_a_corrupt_initial_model_is_named_at_start(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    init = ws / "save" / "init.pbuf"
    os.truncate(init, init.stat().st_size - 7)
    text = refused_start(ws)
    assert "init.pbuf" in text and ("truncated" in text or "corrupt" in text), text


def test_a_damaged_saved_update_is_dropped_at_start_and_asked_for_again(tmp_path: Path,
                                                                      uninterrupted: dict[str, np.ndarray]) -> None:
    ws = workspace(tmp_path)
    with processes(ws) as procs:  # every round-1 result is saved when the aggregation is killed
        agg = procs.aggregator(fault="aggregator:aggregating")
        cols = [procs.collaborator(n) for n in NAMES]
        killed(agg)
        for col in cols:
            col.popen.kill()
    (spill,) = [p for p in files(ws / "local_state" / "updates", "two.train.*.f32")]
    flip_byte(spill, 123)
    text = finish(ws, uninterrupted)
    assert "round 1: the saved 'train' result of 'two' is damaged" in text
    assert "does not match its checksum" in text and "dropped, 'two' will be asked for it again" in text
    assert task_counts(ws, "two")["train"] == ROUNDS + 1 and task_counts(ws, "one")["train"] == ROUNDS


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_state_database_is_refused_and_left_untouched(tmp_path: Path, damage: str) -> None:
    ws = workspace(tmp_path)
    stopped_after_round_1(ws)
    db = ws / "local_state" / "aggregator.db"
    _checkpoint(db)
    if damage == "garbage":
        db.write_bytes(os.urandom(db.stat().st_size))
    else:
        os.truncate(db, db.stat().st_size // 3)
    before = db.read_bytes()
    text = refused_start(ws)
    assert "local_state/aggregator.db: the aggregator state database is damaged" in text
    assert "it was left untouched" in text and "fx aggregator reset" in text
    assert db.read_bytes() == before


def test_a_torn_write_at_the_end_of_the_journal_is_ignored_and_the_run_resumes(
        tmp_path: Path, uninterrupted: dict[str, np.ndarray]) -> None:
    ws = workspace(tmp_path)
    stopped_after_round_1(ws)
    wal = ws / "local_state" / "aggregator.db-wal"
    assert wal.exists() and wal.stat().st_size > 0
    with open(wal, "ab") as fh:  # half a frame of a transaction that never committed
        fh.write(os.urandom(2100))
    text = finish(ws, uninterrupted)
    assert "resuming at round 2/3" in text


def _checkpoint(db: Path) -> None:
    """Fold the journal into the database file, so damaging the file damages the state."""
    import contextlib
    import sqlite3

    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
