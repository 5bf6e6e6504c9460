"""What a restarted aggregator remembers: straggler clock, assignment, missed-round notices; --resume and reset."""
from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fx_cli.aggregator.assigners import RandomGroupedAssigner, StaticGroupedAssigner
from fx_cli.aggregator.coordinator import Coordinator
from fx_cli.aggregator.layout import StateLayout
from fx_cli.aggregator.modelstore import RoundModel, write_round_model
from fx_cli.aggregator.reset import state_lock
from fx_cli.aggregator.round import Presence
from fx_cli.aggregator.state import Store
from fx_cli.aggregator.stragglers import CutoffTimePolicy, StragglerPolicy, WaitForAllPolicy
from fx_cli.cli.main import cli
from fx_cli.collaborator.loop import CollaboratorRun, run_collaborator
from fx_cli.errors import FxError
from fx_cli.aggregator.outcomes import Action
from tests.runtime_helpers import edit_plan, final_model, make_workspace, reference_fedavg, run_in_process

COLS = ["one", "two", "three"]
GROUPS = [{"name": "learning", "percentage": 0.67, "tasks": ["train"]},
          {"name": "evaluation", "percentage": 0.33, "tasks": ["validate"]}]


def coordinator(root: Path, model: RoundModel, policy: StragglerPolicy, assigner: object = None) -> Coordinator:
    """A coordinator over the SQLite state in ``root``, as a (re)started aggregator builds it."""
    store = Store(root / "aggregator.db")
    store.bind("h" * 96, {}, None)
    return Coordinator(cols=COLS, rounds_to_train=3, assigner=assigner or RandomGroupedAssigner(GROUPS, COLS, 3),
                       policy=policy, presence=Presence(COLS, 60, 60, time.monotonic()), store=store, model=model,
                       saved=store.load(), layout=StateLayout(root), round_deadline=None)


@pytest.fixture
def model(tmp_path: Path) -> RoundModel:
    return write_round_model(tmp_path / "models" / "round_0.pbuf", [("w", np.ones(4, np.float32))], 0)


def test_the_straggler_clock_of_a_round_survives_a_restart(tmp_path: Path, model: RoundModel) -> None:
    first = coordinator(tmp_path, model, CutoffTimePolicy(straggler_cutoff_time=60))
    first.store.start(model)
    assert first.next_tasks("one", 0).action is Action.RUN  # the first dispatch starts the round's clock
    first.store.round_started(0, time.time() - 50)  # as if that dispatch was 50 s ago
    first.store.close()
    again = coordinator(tmp_path, model, CutoffTimePolicy(straggler_cutoff_time=60))
    # abs=8: room for a busy machine between these lines; restarting from zero would be 50 s off.
    assert again.round.started is not None and again.round.started == pytest.approx(time.monotonic() - 50, abs=8)
    wake = again.round.verdict(again.presence, time.monotonic()).wake
    assert wake == pytest.approx(time.monotonic() + 10, abs=8), "the cut-off must not restart from zero"


def test_the_assignment_of_a_round_survives_a_restart_whatever_the_assigner_says_now(tmp_path: Path,
                                                                                   model: RoundModel) -> None:
    first = coordinator(tmp_path, model, WaitForAllPolicy())
    planned = dict(first.round.assigned)
    first.store.close()
    static = StaticGroupedAssigner([{"name": "all", "collaborators": COLS, "tasks": ["other"]}], COLS, 3)
    again = coordinator(tmp_path, model, WaitForAllPolicy(), static)
    assert again.round.assigned == planned and any("train" in t for t in planned.values())


def test_a_missed_round_notice_survives_a_restart_and_is_given_once(tmp_path: Path, model: RoundModel) -> None:
    first = coordinator(tmp_path, model, WaitForAllPolicy())
    first.store.start(model)
    closed = first.close_round()  # nobody finished: everyone missed round 1
    nxt = write_round_model(tmp_path / "models" / "round_1.pbuf", model.tensors(), 1)
    first.store.advance(0, nxt, {"round": 1, "final": False}, {}, None, False, missed=closed.missed)
    first.store.close()
    again = coordinator(tmp_path, nxt, WaitForAllPolicy())
    reply = again.next_tasks("two", 0)
    assert reply.action is Action.MISSED and reply.round == 0 and "round 1 ended without your results" in reply.message
    assert again.next_tasks("two", 0).action is Action.RUN
    again.store.close()
    assert "two" not in coordinator(tmp_path, nxt, WaitForAllPolicy()).missed  # delivered: not repeated


def fx(ws: Path, *args: str) -> tuple[int, str]:
    with contextlib.chdir(ws):
        res = CliRunner().invoke(cli, list(args))
    return res.exit_code, " ".join((res.output + res.stderr).split())


def collaborate_in_thread(ws: Path, name: str) -> threading.Thread:
    thread = threading.Thread(target=run_collaborator, daemon=True, args=(
        CollaboratorRun(name, ws / "plan" / "plan.yaml", ws / "plan" / "data.yaml"),))
    thread.start()
    return thread


def test_a_changed_plan_is_refused_naming_the_choices_and_resume_continues_the_run(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, ["one"], rounds=1, tls=False)
    assert not run_in_process(ws, ["one"]).errors
    edit_plan(ws, aggregator={"rounds_to_train": 2})
    code, out = fx(ws, "aggregator", "start")
    assert code == 1 and "differing keys: aggregator.settings.rounds_to_train" in out
    assert "fx aggregator start --resume" in out and "fx aggregator reset" in out
    thread = collaborate_in_thread(ws, "one")
    code, out = fx(ws, "aggregator", "start", "--resume")
    thread.join(60)
    assert code == 0 and "round 2/2" in out and "round 1/2" not in out, out
    reference = reference_fedavg(ws, {"one": 1}, 2)
    for name, array in final_model(ws).items():
        np.testing.assert_allclose(array, reference[name], rtol=2e-6, atol=1e-6)
    code, out = fx(ws, "aggregator", "start")  # now bound to the new plan, and finished
    assert code == 0 and "already finished all 2 rounds" in out


def test_resume_drops_the_current_rounds_results_and_keeps_the_rest(tmp_path: Path) -> None:
    store = Store(tmp_path / "aggregator.db")
    store.bind("a" * 96, {"x": 1}, None)
    from fx_cli.aggregator.state import UpdateRecord

    assert store.add_update(UpdateRecord(0, "one", "train", 10, {"loss": 1.0}))
    with pytest.raises(FxError, match="differing keys: x"):
        store.bind("b" * 96, {"x": 2}, None)
    assert len(store.load().updates) == 1, "a refused start must change nothing"
    assert store.bind("b" * 96, {"x": 2}, None, resume=True) == ["x"]
    assert store.load().updates == [] and store.bind("b" * 96, {"x": 2}, None) == []


def test_reset_deletes_the_saved_run_and_the_next_start_begins_at_round_1(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, ["one"], rounds=1, tls=False)
    assert not run_in_process(ws, ["one"]).errors
    with state_lock(ws / "local_state" / "aggregator.db"):  # as a running aggregator holds it
        code, out = fx(ws, "aggregator", "reset", "--yes")
    assert code == 1 and "another aggregator (pid" in out
    assert (ws / "local_state" / "aggregator.db").exists()
    code, out = fx(ws, "aggregator", "reset", "--yes")
    assert code == 0 and "deleted a finished run of plan" in out and "kept the round metrics as" in out
    assert not (ws / "local_state" / "aggregator.db").exists() and not (ws / "local_state" / "models").exists()
    thread = collaborate_in_thread(ws, "one")
    code, out = fx(ws, "aggregator", "start")
    thread.join(60)
    assert code == 0 and "round 1/1" in out
    code, out = fx(ws, "aggregator", "reset")  # asks first; 'no' keeps everything
    assert code == 1 and (ws / "local_state" / "aggregator.db").exists()


def test_two_aggregators_never_share_one_saved_state(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, ["one"], rounds=1, tls=False)
    with state_lock(ws / "local_state" / "aggregator.db"):
        code, out = fx(ws, "aggregator", "start")
    assert code == 1 and "another aggregator (pid" in out and "only one aggregator may run" in out
