"""Absent, dead, hung and restarting peers: every wait ends by a plan deadline in a logged terminal state.

Real processes over mutual TLS, tiny deadlines set in each plan. Each test
asserts every process's exit code and the message that names who was waited
for and which deadline ended the wait (with the time waited, as measured where
it waited), never the test's own wall-clock reading. Collaborators with a short
reconnect deadline start once the aggregator listens.
"""
from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest

from tests.fault_helpers import flat, in_log, killed, processes, wait_until
from tests.runtime_helpers import Proc, final_model, make_workspace, reference_model

pytestmark = pytest.mark.slow
TIMEOUT = 60.0

MARKED_RUNNER = '''
import time
from pathlib import Path
from fx_cli.runners.synthetic import SyntheticRunner

class MarkedRunner(SyntheticRunner):
    """Shard 2 writes 'training-<round>' in the workspace, then trains for a second (a window to SIGSTOP it);
    in round 1, shard 1 trains only once shard 2 has started (so the round cannot end before)."""

    def train_task(self, round_num, **kwargs):
        mark = Path(__file__).resolve().parents[1] / f"training-{round_num + 1}"
        if self.data_loader.shard == 2:
            mark.write_text("now")
            time.sleep(1.0)
        deadline = time.monotonic() + 30
        while round_num == 0 and not mark.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        return super().train_task(round_num, **kwargs)
'''


def marked_workspace(root: Path, rounds: int, **sections: dict) -> Path:
    return make_workspace(root, ["one", "two"], rounds=rounds,
                          prepare=lambda w: (w / "src" / "marked.py").write_text(MARKED_RUNNER),
                          task_runner={"template": "src.marked.MarkedRunner"}, **sections)


def listening(agg: Proc) -> Proc:
    """``agg`` once it listens: a collaborator started earlier could use up a short reconnect_deadline while a
    busy machine is still starting the aggregator."""
    wait_until(lambda: in_log(agg, "listening on"), "the aggregator to listen", procs=[agg])
    return agg


def policy(template: str, **settings: object) -> dict:
    return {"template": f"fx_cli.aggregator.stragglers.{template}", **settings}


def test_a_hung_collaborator_ends_a_wait_for_all_run_naming_it_and_nothing_runs_forever(tmp_path: Path) -> None:
    ws = marked_workspace(tmp_path, 2, aggregator={"heartbeat_timeout": 2},
                          network={"reconnect_deadline": 3})
    with processes(ws) as procs:
        agg = listening(procs.aggregator())  # reconnect_deadline is short: the collaborators start once it listens
        one, two = procs.collaborator("one"), procs.collaborator("two")
        wait_until(lambda: (ws / "training-1").exists(), "'two' to start training", procs=[agg, two])
        two.popen.send_signal(signal.SIGSTOP)
        assert agg.wait(TIMEOUT) == 1, agg.output()  # which deadline ended the wait: its message, below
        assert one.wait(TIMEOUT) == 1
        two.popen.send_signal(signal.SIGCONT)
        assert two.wait(TIMEOUT) == 1  # ended by the reconnect deadline: its message, below
    text = flat(agg.output())
    assert "round 1: waited" in text and "for 'two'; cannot complete under WaitForAllPolicy with 1/2" in text
    assert "'two' last heard from" in text and "(heartbeat_timeout 2 s)" in text
    assert "the aggregator ended the run" in flat(one.output())
    assert "cannot reach the aggregator at localhost:" in flat(two.output())
    assert not (ws / "save" / "last.pbuf").exists()


def test_a_hung_collaborator_is_left_behind_under_percentage_policy_and_the_run_completes(tmp_path: Path) -> None:
    ws = marked_workspace(tmp_path, 3, aggregator={"heartbeat_timeout": 2}, network={"reconnect_deadline": 3},
                          straggler_handling_policy=policy("PercentagePolicy", percent_collaborators_needed=0.5))
    with processes(ws) as procs:
        agg = listening(procs.aggregator())  # reconnect_deadline is short: the collaborators start once it listens
        one, two = procs.collaborator("one"), procs.collaborator("two")
        wait_until(lambda: (ws / "training-1").exists(), "'two' to start training", procs=[agg, two])
        two.popen.send_signal(signal.SIGSTOP)
        assert agg.wait(TIMEOUT) == 0, agg.output()
        assert one.wait(TIMEOUT) == 0
        two.popen.send_signal(signal.SIGCONT)
        assert two.wait(TIMEOUT) == 1, two.output()
    text = flat(agg.output())
    assert "participants=1/2" in text and "ending with 1/2 under PercentagePolicy(0.5, minimum 1)" in text
    assert "missed by 'two'" in text
    expected = reference_model(ws, {"one": 1}, 3)
    for name, array in final_model(ws).items():
        np.testing.assert_allclose(array, expected[name], rtol=2e-6, atol=1e-6)


def test_collaborators_give_up_after_the_reconnect_deadline_when_the_aggregator_is_gone(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, ["one", "two"], rounds=3, network={"reconnect_deadline": 3})
    with processes(ws) as procs:
        agg = listening(procs.aggregator(fault="aggregator:before_round_2"))
        cols = [procs.collaborator("one"), procs.collaborator("two")]
        killed(agg)
        for col in cols:  # how long each waited is in its message ("gave up after 3 s"), measured where it waited
            assert col.wait(TIMEOUT) == 1, col.output()
    for col in cols:
        text = flat(col.output())
        assert "cannot reach the aggregator at localhost:" in text and "retrying in" in text
        assert "gave up after 3 s" in text and "reconnect_deadline" in text


def test_collaborators_waiting_through_an_aggregator_restart_complete_the_run(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, ["one", "two"], rounds=3, network={"reconnect_deadline": 30})
    with processes(ws) as procs:
        first = procs.aggregator(fault="aggregator:before_round_2")
        cols = [procs.collaborator("one"), procs.collaborator("two")]
        killed(first)
        for col in cols:  # both notice and keep retrying: they wait, they do not exit
            wait_until(lambda c=col: in_log(c, "retrying in"), f"'{col.name}' to retry")
        second = procs.aggregator()
        assert second.wait(TIMEOUT) == 0, second.output()
        for col in cols:
            assert col.wait(TIMEOUT) == 0, col.output()
    assert in_log(second, "resuming at round 2/3")
    expected = reference_model(ws, {"one": 1, "two": 2}, 3)
    for name, array in final_model(ws).items():
        np.testing.assert_allclose(array, expected[name], rtol=2e-6, atol=1e-6)


# Each case: plan sections, which collaborators to start (with an optional fault), and the terminal message.
ABSENT = {
    "wait-for-all, nobody comes": ({}, {}, "'one' never connected (join_deadline 2 s)"),
    "percentage, nobody comes": ({"straggler_handling_policy": policy("PercentagePolicy",
                                                                      percent_collaborators_needed=0.5)},
                                 {}, "cannot complete under PercentagePolicy(0.5, minimum 1)"),
    "cut-off, nobody comes": ({"straggler_handling_policy": policy("CutoffTimePolicy", straggler_cutoff_time=1)},
                              {}, "cannot complete under CutoffTimePolicy(1 s, minimum 1)"),
    # join_deadline is long here: on a busy machine 'one' may take seconds to start and join, and only the
    # round deadline is under test.
    "round deadline, a collaborator died training": (
        {"aggregator": {"join_deadline": 600, "heartbeat_timeout": 600, "round_deadline": 3}},
        {"one": "collaborator:mid_train"}, "round_deadline 3 s passed; 'one' last heard from"),
}


def test_no_configuration_of_absent_or_dead_peers_leaves_a_process_running(tmp_path: Path) -> None:
    cases = {}
    with processes(tmp_path) as procs:
        for i, (case, (sections, started, message)) in enumerate(ABSENT.items()):
            sections = dict(sections)
            aggregator = {"join_deadline": 2, "heartbeat_timeout": 2, **sections.pop("aggregator", {})}
            names = ["one"] if started else ["one", "two"]
            ws = make_workspace(tmp_path / f"case{i}", names, rounds=2, aggregator=aggregator, **sections)
            procs.ws = ws
            cols = [procs.start(n, "collaborator", "start", "-n", n, fault=f, cwd=ws) for n, f in started.items()]
            cases[case] = (procs.start("aggregator", "aggregator", "start", cwd=ws), cols, message)
        lonely = make_workspace(tmp_path / "lonely", ["one"], rounds=1, network={"reconnect_deadline": 2})
        alone = procs.start("one", "collaborator", "start", "-n", "one", cwd=lonely)
        # Each message names the plan deadline that ended the wait (none of them is fx's default).
        for case, (agg, cols, message) in cases.items():
            assert agg.wait(TIMEOUT) == 1, (case, agg.output())
            assert message in flat(agg.output()), (case, agg.output())
            for col in cols:
                killed(col)
        assert alone.wait(TIMEOUT) == 1
    assert "cannot reach the aggregator" in flat(alone.output()) and "gave up after 2 s" in flat(alone.output())
