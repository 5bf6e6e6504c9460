"""kill -9 of the aggregator in every phase of a round, then a restart: same round, nothing redone, same bits.

Each test runs a real mTLS federation of processes. The aggregator carries an
``FX_FAULT`` rule that SIGKILLs it at one named point; it is started again
without the rule, and the collaborators (never restarted) carry on through
their reconnect deadline. The final model must be bit-identical to that of an
uninterrupted run, and no collaborator may have trained twice in a round.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from fx_cli.tensors.pbuf import read_model
from tests.fault_helpers import (assert_bit_identical, files, history, in_log, killed, processes, saved_meta,
                                 task_counts, uninterrupted_model)
from tests.runtime_helpers import make_workspace

pytestmark = pytest.mark.slow
NAMES = ["one", "two"]
ROUNDS = 3
TIMEOUT = 120.0
SETTINGS = dict(rounds=ROUNDS, num_params=3000, num_tensors=4, network={"reconnect_deadline": 60})


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """The final model of the same federation run without faults."""
    return uninterrupted_model(tmp_path_factory.mktemp("reference"), NAMES, **SETTINGS)


Evidence = Callable[[Path], bool]
# What the fault leaves on disk, proving the kill came in the phase it names.
PHASES: dict[str, tuple[str, Evidence]] = {
    "before round 1": ("aggregator:before_round_1", lambda ws: saved_meta(ws)["round"] == "0"
                       and not files(ws / "local_state" / "updates", "*")),
    "before round 2": ("aggregator:before_round_2", lambda ws: saved_meta(ws)["round"] == "1"),
    "while sending models": ("aggregator:sending_model#3", lambda ws: saved_meta(ws)["round"] == "1"),
    "mid-upload": ("aggregator:mid_upload#3", lambda ws: bool(files(ws / "local_state" / "updates", "*.part-*"))),
    # Protocol 3: the validation that ends a round came with a task request, was counted, and got no answer; the
    # request is retried after the restart and must count nothing twice.
    "results with a task request": ("aggregator:results_counted#3",
                                    lambda ws: saved_meta(ws)["round"] == "1" and accepted_twice(ws) == []),
    "during aggregation": ("aggregator:aggregating#2",
                           lambda ws: bool(files(ws / "local_state" / "models", ".round_2.pbuf.tmp-*"))),
    "saving: model written, not committed": ("aggregator:saving_model#4", lambda ws: saved_meta(ws)["round"] == "1"
                                             and (ws / "local_state" / "models" / "round_2.pbuf").exists()),
    "saving: inside the commit": ("aggregator:committing#2", lambda ws: saved_meta(ws)["round"] == "1"),
    "saving: committed, not exported": ("aggregator:saving_model#5", lambda ws: saved_meta(ws)["round"] == "2"
                                        and read_model(ws / "save" / "last.pbuf").round_number == 1),
    "saving: mid-export of last.pbuf": ("aggregator:writing_file#6",
                                        lambda ws: bool(files(ws / "save", ".last.pbuf.tmp-*"))),
}


def accepted_twice(ws: Path) -> list[tuple[int, str, str]]:
    """(round, collaborator, task) results the audit log records as accepted more than once."""
    seen = [(r["data"]["round"], r["data"]["collaborator"], r["data"]["task"])
            for r in map(json.loads, (ws / "logs" / "audit.jsonl").read_text().splitlines())
            if r["kind"] == "update_accepted"]
    return sorted({x for x in seen if seen.count(x) > 1})


@pytest.mark.parametrize("phase", list(PHASES))
def test_aggregator_killed_in_each_phase_resumes_and_ends_bit_identical(
        phase: str, tmp_path: Path, uninterrupted: dict[str, np.ndarray]) -> None:
    rule, evidence = PHASES[phase]
    ws = make_workspace(tmp_path, NAMES, **SETTINGS)  # type: ignore[arg-type]
    with processes(ws) as procs:
        first = procs.aggregator(fault=rule)
        cols = [procs.collaborator(n) for n in NAMES]
        killed(first)
        assert evidence(ws), f"the fault {rule} did not leave the state of '{phase}'"
        second = procs.aggregator()
        assert second.wait(TIMEOUT) == 0, second.output()
        for col in cols:
            assert col.wait(TIMEOUT) == 0, col.output()
    if phase != "before round 1":
        assert in_log(second, "resuming at round"), second.output()
    assert_bit_identical(read_model(ws / "save" / "last.pbuf").tensors, uninterrupted)
    assert history(ws) == [(1, False), (2, False), (3, False), (3, True)]
    for name in NAMES:
        assert task_counts(ws, name)["train"] == ROUNDS, f"'{name}' trained again after the restart"
    assert not files(ws / "local_state", "*.tmp-*") and not files(ws / "local_state", "*.part-*")
    assert not files(ws / "local_state", "*.spare"), "the finished run keeps no spare spills"
    assert accepted_twice(ws) == [], "a result was counted twice"


def test_a_run_killed_again_and_again_still_ends_bit_identical(tmp_path: Path,
                                                               uninterrupted: dict[str, np.ndarray]) -> None:
    """Four kills in four phases (each restart carries the next fault), then a clean finish."""
    ws = make_workspace(tmp_path, NAMES, **SETTINGS)  # type: ignore[arg-type]
    rules = ["aggregator:mid_upload", "aggregator:aggregating", "aggregator:saving_model#2",
             "aggregator:sending_model"]
    with processes(ws) as procs:
        cols = [procs.collaborator(n) for n in NAMES]
        for rule in rules:
            killed(procs.aggregator(fault=rule))
        last = procs.aggregator()
        assert last.wait(TIMEOUT) == 0, last.output()
        for col in cols:
            assert col.wait(TIMEOUT) == 0, col.output()
    assert_bit_identical(read_model(ws / "save" / "last.pbuf").tensors, uninterrupted)
    for name in NAMES:
        assert task_counts(ws, name)["train"] == ROUNDS


def test_a_finished_run_started_again_says_so_and_exits_0(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, ["one"], rounds=1)
    with processes(ws) as procs:
        agg, col = procs.aggregator(), procs.collaborator("one")
        assert agg.wait(TIMEOUT) == 0 and col.wait(TIMEOUT) == 0
        before = (ws / "save" / "last.pbuf").read_bytes()
        again = procs.aggregator()
        assert again.wait(30) == 0, again.output()
    assert in_log(again, "this run already finished all 1 rounds") and in_log(again, "save/last.pbuf")
    assert (ws / "save" / "last.pbuf").read_bytes() == before


def test_a_collaborator_killed_mid_train_and_restarted_gets_its_task_again_counted_once(
        tmp_path: Path, uninterrupted: dict[str, np.ndarray]) -> None:
    ws = make_workspace(tmp_path, NAMES, **SETTINGS)  # type: ignore[arg-type]
    with processes(ws) as procs:
        agg = procs.aggregator()
        one = procs.collaborator("one")
        two = procs.collaborator("two", fault="collaborator:mid_train#2")  # killed while training round 2
        killed(two)
        again = procs.collaborator("two")
        assert agg.wait(TIMEOUT) == 0, agg.output()
        assert one.wait(TIMEOUT) == 0 and again.wait(TIMEOUT) == 0, again.output()
    assert in_log(agg, "round 2: received 'aggregated_model_validation' from 'two'")
    # Round 2's validation reached the aggregator before the kill: the restarted 'two' trains, it does not revalidate.
    counts = task_counts(ws, "two")
    assert counts["train"] == ROUNDS and counts["aggregated_model_validation"] == ROUNDS + 1
    assert_bit_identical(read_model(ws / "save" / "last.pbuf").tensors, uninterrupted)
    records = [line for line in (ws / "logs" / "aggregator_metrics.jsonl").read_text().splitlines()]
    assert all('"participants": ["one", "two"]' in r for r in records)


FEDADAM = {"train": {"function": "train_task", "kwargs": {"epochs": 1, "metrics": ["loss"]},
                     "aggregation_type": {"template": "fx_cli.aggregation.FedAdam", "settings": {"learning_rate": 0.05}}}}


def test_server_optimizer_state_survives_kills_and_the_result_is_bit_identical(tmp_path: Path) -> None:
    """FedAdam keeps moments between rounds: they are saved with each round and reloaded on restart."""
    settings = dict(SETTINGS, tasks=FEDADAM)
    reference = uninterrupted_model(tmp_path / "reference", NAMES, **settings)
    ws = make_workspace(tmp_path / "faulty", NAMES, **settings)  # type: ignore[arg-type]
    with processes(ws) as procs:
        cols = [procs.collaborator(n) for n in NAMES]
        for rule in ("aggregator:aggregating#2", "aggregator:saving_model#2"):  # round 2 mid-sum; after its commit
            killed(procs.aggregator(fault=rule))
        last = procs.aggregator()
        assert last.wait(TIMEOUT) == 0, last.output()
        for col in cols:
            assert col.wait(TIMEOUT) == 0, col.output()
    assert [p.name for p in (ws / "local_state" / "models").glob("aggstate_*")] == ["aggstate_train_r3.npz"]
    assert_bit_identical(read_model(ws / "save" / "last.pbuf").tensors, reference)
