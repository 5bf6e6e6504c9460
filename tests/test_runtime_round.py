"""The round state machine as pure logic: when a round ends, when a run must fail, when to look again."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from fx_cli.aggregator.layout import StateLayout
from fx_cli.aggregator.modelstore import write_round_model
from fx_cli.aggregator.round import Presence, RoundState
from fx_cli.aggregator.stragglers import CutoffTimePolicy, PercentagePolicy, WaitForAllPolicy

COLS = ["a", "b", "c"]
TASKS = ("validate", "train")


def make(policy, cols=COLS, round_deadline=None) -> tuple[RoundState, Presence]:  # type: ignore[no-untyped-def]
    presence = Presence(cols, join_deadline=10.0, heartbeat_timeout=5.0, started=0.0)
    return RoundState(0, {c: TASKS for c in cols}, policy, round_deadline), presence


def finish(state: RoundState, col: str) -> None:
    for task in TASKS:
        state.record(col, task)


def test_wait_for_all_waits_until_the_join_deadline_then_fails_naming_who_never_came() -> None:
    state, presence = make(WaitForAllPolicy())
    for col in ("a", "b"):
        presence.seen(col, 1.0)
        finish(state, col)
    waiting = state.verdict(presence, 2.0)
    assert not waiting.end and waiting.fail is None and waiting.wake == 10.0
    failed = state.verdict(presence, 10.0)
    assert failed.fail and "'c' never connected (join_deadline 10 s)" in failed.fail
    assert "2/3" in failed.fail and "WaitForAllPolicy" in failed.fail


def test_a_collaborator_silent_past_the_heartbeat_timeout_is_gone() -> None:
    state, presence = make(WaitForAllPolicy())
    for col in COLS:
        presence.seen(col, 1.0)
    finish(state, "a")
    presence.seen("b", 4.0)
    assert state.verdict(presence, 5.9).wake == 6.0  # 'c' goes silent at 1 + 5
    failed = state.verdict(presence, 6.5)
    assert failed.fail and "'c' last heard from 6 s ago (heartbeat_timeout 5 s)" in failed.fail
    presence.seen("c", 6.6)  # heard again: no longer gone
    assert state.verdict(presence, 6.7).fail is None


def test_partial_results_do_not_count_as_done() -> None:
    state, presence = make(WaitForAllPolicy())
    for col in COLS:
        finish(state, col)
    state.received["c"].discard("train")
    assert not state.verdict(presence, 1.0).end
    assert state.done() == ["a", "b"] and state.pending() == ["c"]


def test_percentage_policy_ends_with_enough_and_tolerates_the_absent() -> None:
    state, presence = make(PercentagePolicy(percent_collaborators_needed=0.6))
    finish(state, "a")
    assert not state.verdict(presence, 1.0).end
    finish(state, "b")
    assert state.verdict(presence, 1.0).end
    state2, presence2 = make(PercentagePolicy(percent_collaborators_needed=0.6))
    finish(state2, "a")
    presence2.seen("b", 0.0)
    assert state2.verdict(presence2, 20.0).fail  # b gone, c never came: 2 of 3 can no longer happen


def test_cutoff_policy_wakes_at_the_cutoff_and_ends_with_the_minimum() -> None:
    state, presence = make(CutoffTimePolicy(straggler_cutoff_time=3.0, minimum_reporting=1))
    state.dispatch(1.0)
    finish(state, "a")
    before = state.verdict(presence, 2.0)
    assert not before.end and before.wake == 4.0
    assert state.verdict(presence, 4.0).end


def test_an_infinite_cutoff_waits_for_all_and_still_fails_when_someone_is_gone() -> None:
    state, presence = make(CutoffTimePolicy(straggler_cutoff_time=math.inf, minimum_reporting=1))
    state.dispatch(0.0)
    finish(state, "a")
    finish(state, "b")
    assert not state.verdict(presence, 5.0).end
    assert state.verdict(presence, 11.0).fail


def test_round_deadline_turns_every_pending_collaborator_into_a_straggler() -> None:
    state, presence = make(PercentagePolicy(percent_collaborators_needed=1.0), round_deadline=2.0)
    for col in COLS:
        presence.seen(col, 0.0)
    state.dispatch(0.0)
    finish(state, "a")
    assert state.verdict(presence, 1.0).wake == 2.0
    failed = state.verdict(presence, 2.5)
    assert failed.fail and "round_deadline 2 s passed" in failed.fail


def test_nobody_assigned_ends_the_round_at_once() -> None:
    state = RoundState(0, {"a": (), "b": ()}, WaitForAllPolicy())
    assert state.expected == 0 and state.verdict(Presence(["a", "b"], 1, 1, 0), 0.0).end


def test_end_note_names_who_missed_the_round() -> None:
    state, presence = make(PercentagePolicy(percent_collaborators_needed=0.5))
    presence.seen("b", 0.0)
    finish(state, "a")
    finish(state, "b")
    note = state.end_note(presence, 20.0)
    assert "ending with 2/3 under PercentagePolicy(0.5, minimum 1)" in note and "'c' never connected" in note


def test_mapped_base_tensors_equal_the_file_and_writing_them_leaves_the_file_alone(tmp_path: Path) -> None:
    from fx_cli.aggregator.modelstore import model_problem, write_round_model

    arrays = {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "empty": np.zeros((0, 2), np.float32),
              "b": np.linspace(-1, 1, 1001, dtype=np.float32)}
    model = write_round_model(tmp_path / "m.pbuf", arrays.items(), 0)
    before = (tmp_path / "m.pbuf").read_bytes()
    for (name, mapped), (_, read) in zip(model.tensors(mapped=True), model.tensors()):
        np.testing.assert_array_equal(mapped, arrays[name])
        np.testing.assert_array_equal(read, arrays[name])
        mapped[...] = 7  # an aggregation function may scribble on its base tensor
    assert (tmp_path / "m.pbuf").read_bytes() == before and model_problem(model) is None


def test_a_closed_rounds_file_work_runs_behind_one_at_a_time_and_its_failure_is_not_lost() -> None:
    """``Behind`` runs a committed round's copies while the next round starts; settle waits and re-raises."""
    import threading

    from fx_cli.aggregator.roundend import Behind

    behind = Behind("test-behind")
    gate, order = threading.Event(), []

    def first() -> None:
        gate.wait(30)
        order.append("first")

    behind.start(first)
    assert not order  # running behind the caller
    gate.set()
    behind.start(lambda: order.append("second"))  # waits for the first one before it starts
    behind.settle()
    assert order == ["first", "second"]

    def broken() -> None:
        raise OSError(28, "No space left on device")

    behind.start(broken)
    try:
        behind.settle()
    except OSError as err:
        assert err.errno == 28
    else:
        raise AssertionError("settle must raise what the work raised")
    behind.settle()  # raised once, then clear


def test_an_old_model_file_becomes_the_spare_the_next_model_overwrites(tmp_path: Path) -> None:
    from fx_cli.aggregator.layout import StateLayout
    from fx_cli.aggregator.modelstore import write_round_model
    from fx_cli.tensors.pbuf import read_model

    layout = StateLayout(tmp_path)
    tensors = [("w", np.arange(1000, dtype=np.float32))]
    first = write_round_model(layout.model(1), tensors, 1)
    second = write_round_model(layout.model(2), [("w", np.ones(1000, dtype=np.float32))], 2)
    layout.prune_models([second.path])
    assert not first.path.exists() and layout.spare_model().exists()  # kept as bytes to overwrite, not a model
    spare_inode = layout.spare_model().stat().st_ino
    third = write_round_model(layout.model(3), [("w", np.full(10, 3, dtype=np.float32))], 3,
                              reuse=layout.spare_model())
    assert third.path.stat().st_ino == spare_inode and not layout.spare_model().exists()
    np.testing.assert_array_equal(read_model(third.path).tensors["w"], np.full(10, 3, dtype=np.float32))
    layout.prune_models([third.path])  # round_2 becomes the spare; nothing else is left
    assert sorted(p.name for p in layout.models.iterdir()) == [".spare.pbuf", "round_3.pbuf"]


def test_the_best_copy_becomes_the_last_copy_it_holds_without_copying_and_then_they_part(tmp_path: Path) -> None:
    from fx_cli.aggregator.modelstore import export_copy, export_from_copy, file_sha256

    layout = StateLayout(tmp_path)
    save = tmp_path / "save"
    save.mkdir()
    last, best = save / "last.pbuf", save / "best.pbuf"
    first = write_round_model(layout.model(1), [("w", np.ones(1000, np.float32))], 1)
    second = write_round_model(layout.model(2), [("w", np.full(1000, 2, np.float32))], 2)
    export_copy(first.path, last)
    assert not export_from_copy(last, second.path, best) and not best.exists()  # last holds other bytes
    assert export_from_copy(last, first.path, best)
    assert best.stat().st_ino == last.stat().st_ino and file_sha256(best) == file_sha256(first.path)
    export_copy(second.path, last)  # the round's new last copy: a file of its own
    assert best.stat().st_ino != last.stat().st_ino
    assert best.read_bytes() == first.path.read_bytes() and last.read_bytes() == second.path.read_bytes()
    assert not [p for p in save.iterdir() if ".tmp-" in p.name]


def test_a_copy_whose_bytes_this_process_did_not_write_is_copied_again_not_trusted(tmp_path: Path) -> None:
    from fx_cli.aggregator.modelstore import export_copy, export_from_copy

    layout = StateLayout(tmp_path)
    model = write_round_model(layout.model(1), [("w", np.ones(1000, np.float32))], 1)
    last, best = tmp_path / "last.pbuf", tmp_path / "best.pbuf"
    export_copy(model.path, last)
    data = bytearray(last.read_bytes())
    data[100] ^= 0xFF
    last.write_bytes(bytes(data))  # changed by someone else since: its digest is no longer known
    assert not export_from_copy(last, model.path, best) and not best.exists()
