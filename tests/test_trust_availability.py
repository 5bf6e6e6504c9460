"""Availability: a paused collaborator may come back within its rejoin deadline; time the aggregator itself was
stopped does not count against its peers; a removed collaborator leaves the round; a full disk is named."""
from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from fx_cli.aggregator.pauses import ActiveClock
from fx_cli.aggregator.round import Presence, RoundState
from fx_cli.aggregator.stragglers import PercentagePolicy, WaitForAllPolicy
from tests.fault_helpers import flat, in_log, processes, wait_until
from tests.runtime_helpers import make_workspace
from tests.test_reliability_peers import MARKED_RUNNER

TASKS = ("validate", "train")
TIMEOUT = 90.0


def _round(policy, rejoin: float | None):  # type: ignore[no-untyped-def]
    presence = Presence(["a", "b"], join_deadline=10.0, heartbeat_timeout=5.0, started=0.0, rejoin_deadline=rejoin)
    state = RoundState(0, {c: TASKS for c in ("a", "b")}, policy)
    for col in ("a", "b"):
        presence.seen(col, 1.0)
    for task in TASKS:
        state.record("a", task)
    return state, presence


@pytest.mark.parametrize("silent_for", [5.5, 20.0, 59.0])
def test_wait_for_all_waits_for_a_silent_collaborator_until_its_rejoin_deadline(silent_for):
    state, presence = _round(WaitForAllPolicy(), rejoin=60.0)
    verdict = state.verdict(presence, 1.0 + silent_for)
    assert verdict.fail is None and not verdict.end and verdict.wake == 61.0
    presence.seen("b", 1.0 + silent_for + 0.1)  # it woke up
    for task in TASKS:
        state.record("b", task)
    assert state.verdict(presence, 1.0 + silent_for + 0.2).end


def test_past_the_rejoin_deadline_the_run_fails_naming_both_deadlines():
    state, presence = _round(WaitForAllPolicy(), rejoin=60.0)
    failed = state.verdict(presence, 61.5)
    assert failed.fail and "'b' last heard from 60 s ago (heartbeat_timeout 5 s, rejoin_deadline 60 s)" in failed.fail


@pytest.mark.parametrize("rejoin", [None, 5.0, 2.0])
def test_a_rejoin_deadline_not_above_the_heartbeat_timeout_keeps_the_old_behaviour(rejoin):
    state, presence = _round(WaitForAllPolicy(), rejoin=rejoin)
    assert state.verdict(presence, 6.5).fail


def test_a_policy_that_tolerates_absentees_goes_on_without_the_silent_one():
    state, presence = _round(PercentagePolicy(0.5), rejoin=600.0)
    assert state.verdict(presence, 2.0).end


@pytest.mark.parametrize("pause", [6.0, 60.0, 3600.0])
def test_the_active_clock_leaves_out_time_the_process_was_stopped(pause):
    raw = [100.0]
    clock = ActiveClock(raw=lambda: raw[0], tick=0.5, threshold=5.0)
    raw[0] += 0.5
    assert clock() == 100.5
    raw[0] += pause  # stopped: no tick for `pause` seconds
    assert clock() == pytest.approx(100.5 + 0.5)  # one tick's worth of time passed, not the pause
    raw[0] += 2.0  # ordinary scheduling delay: counted
    assert clock() == pytest.approx(103.0)
    assert clock.pauses == 1 and clock.paused == pytest.approx(pause - 0.5)


def test_the_active_clock_counts_short_delays():
    raw = [0.0]
    clock = ActiveClock(raw=lambda: raw[0], tick=0.5, threshold=5.0)
    for _ in range(10):
        raw[0] += 4.0  # a busy machine: late ticks, but not a pause
        clock()
    assert clock() == 40.0 and clock.pauses == 0


def _marked(root: Path, **sections: dict) -> Path:  # type: ignore[type-arg]
    return make_workspace(root, ["one", "two"], rounds=2,
                          prepare=lambda w: (w / "src" / "marked.py").write_text(MARKED_RUNNER),
                          task_runner={"template": "src.marked.MarkedRunner"}, **sections)


@pytest.mark.slow
@pytest.mark.parametrize("when", ["training", "waiting for the next round"])
def test_a_collaborator_paused_past_the_heartbeat_timeout_rejoins_and_the_run_completes(tmp_path, when):
    ws = _marked(tmp_path, aggregator={"heartbeat_timeout": 2, "rejoin_deadline": 60},
                 network={"reconnect_deadline": 60})
    with processes(ws) as procs:
        agg, one, two = procs.aggregator(), procs.collaborator("one"), procs.collaborator("two")
        if when == "training":
            wait_until(lambda: (ws / "training-1").exists(), "'two' to start training", procs=[agg, two])
            paused = two
        else:  # 'one' finished round 1 and long-polls for its next tasks
            wait_until(lambda: in_log(agg, "received 'locally_tuned_model_validation' from 'one'"),
                       "'one' to finish round 1", procs=[agg, one])
            paused = one
        paused.popen.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            while time.monotonic() - stopped < 6.0:  # three heartbeat timeouts
                assert agg.popen.poll() is None, agg.output()
                time.sleep(0.2)
        finally:
            paused.popen.send_signal(signal.SIGCONT)
        assert agg.wait(TIMEOUT) == 0, agg.output()
        assert one.wait(TIMEOUT) == 0 and two.wait(TIMEOUT) == 0, two.output()
    text = flat(agg.output())
    assert "participants=2/2" in text and "cannot complete" not in text


@pytest.mark.slow
def test_a_paused_aggregator_does_not_blame_its_peers_for_its_own_pause(tmp_path):
    ws = _marked(tmp_path, aggregator={"heartbeat_timeout": 2, "rejoin_deadline": 3},
                 network={"reconnect_deadline": 60})
    with processes(ws) as procs:
        agg, one, two = procs.aggregator(), procs.collaborator("one"), procs.collaborator("two")
        wait_until(lambda: (ws / "training-1").exists(), "'two' to start training", procs=[agg, two])
        agg.popen.send_signal(signal.SIGSTOP)
        time.sleep(10.0)  # the pause under test: longer than every peer deadline of the plan
        agg.popen.send_signal(signal.SIGCONT)
        assert agg.wait(TIMEOUT) == 0, agg.output()
        for col in (one, two):
            assert col.wait(TIMEOUT) == 0, col.output()
    text = flat(agg.output())
    assert "the aggregator itself was not running for about" in text
    assert "last heard from" not in text and "cannot complete" not in text
    for col in (one, two):
        assert "has not started (the federation is at round" not in flat(col.output())


@pytest.mark.slow
@pytest.mark.parametrize("state", ["never started", "paused mid-training"])
def test_removing_a_collaborator_during_a_run_lets_the_round_finish_without_it(tmp_path, state):
    from fx_cli.pki.fingerprint import fingerprint
    from fx_cli.pki.store import read_cert
    from tests.runtime_helpers import fx_in

    names = ["one", "two", "three"] if state == "never started" else ["one", "two"]
    ws = make_workspace(tmp_path, names, rounds=2,
                        prepare=lambda w: (w / "src" / "marked.py").write_text(MARKED_RUNNER),
                        task_runner={"template": "src.marked.MarkedRunner"},
                        # heartbeat_timeout is long: neither the pause nor the end of the run (the aggregator
                        # says goodbye to its collaborators) may wait on the removed one.
                        aggregator={"heartbeat_timeout": 3600, "join_deadline": 60, "rejoin_deadline": 600},
                        shards={n: i + 1 for i, n in enumerate(names)})
    with processes(ws) as procs:
        agg, one = procs.aggregator(), procs.collaborator("one")
        two = procs.collaborator("two")
        victim = "three"
        if state == "paused mid-training":
            victim = "two"
            wait_until(lambda: (ws / "training-1").exists(), "'two' to start training", procs=[agg, two])
            two.popen.send_signal(signal.SIGSTOP)
        else:
            wait_until(lambda: in_log(agg, "'two'") or (ws / "training-1").exists(), "'two' to join", procs=[agg])
        out = fx_in(ws, "collaborator", "remove", "-n", victim)
        assert "finishes the current round without it" in out
        if state == "never started":
            three = procs.collaborator("three")  # too late: refused, and the refusal is logged
            assert three.wait(TIMEOUT) == 1
        assert agg.wait(TIMEOUT) == 0, agg.output() + "\n--- one:\n" + one.output() + "\n--- two:\n" + two.output()
        assert one.wait(TIMEOUT) == 0, one.output()
        if state == "paused mid-training":
            two.popen.send_signal(signal.SIGCONT)
            assert two.wait(TIMEOUT) != 0  # it is refused once it wakes
        else:
            assert two.wait(TIMEOUT) == 0
    text = flat(agg.output())
    assert f"'{victim}' removed from plan/cols.yaml during the run; round 1 goes on without '{victim}'" in text
    assert "cannot complete" not in text
    assert "Traceback" not in text
    if state == "never started":
        fp = fingerprint(read_cert(ws / "cert" / "client" / "col_three.crt"))
        assert f"refused a call claiming to be 'three' from" in text and fp in text
        assert "PRIVATE KEY" not in text


@pytest.mark.slow
@pytest.mark.parametrize("action", ["enospc", "eio"])
def test_a_disk_that_stays_full_is_named_as_the_cause(tmp_path, action):
    ws = make_workspace(tmp_path, ["one", "two"], rounds=1, aggregator={"heartbeat_timeout": 2},
                        network={"reconnect_deadline": 4})
    every_upload = ",".join(f"aggregator:mid_upload#{n}={action}" for n in range(1, 400))
    with processes(ws) as procs:
        agg = procs.aggregator(fault=every_upload)
        # reconnect_deadline is short: on a busy machine the collaborators must not give up while it starts.
        wait_until(lambda: in_log(agg, "listening on"), "the aggregator to listen", procs=[agg])
        cols = [procs.collaborator(n) for n in ("one", "two")]
        assert agg.wait(TIMEOUT) == 1, agg.output()
        for col in cols:
            assert col.wait(TIMEOUT) == 1
    text = flat(agg.output())
    reason = "No space left on device" if action == "enospc" else "Input/output error"
    assert f"the aggregator could not store collaborators' results ({reason}" in text, text
    assert "free disk space" in text and "Traceback" not in text


@pytest.mark.slow
@pytest.mark.parametrize("aggregator_tls", [True, False])
def test_a_use_tls_mismatch_is_named_within_seconds_not_after_the_reconnect_deadline(tmp_path, aggregator_tls):
    import shutil

    import yaml

    from tests.runtime_helpers import fx_in

    ws = make_workspace(tmp_path, ["one"], rounds=1, tls=aggregator_tls, network={"reconnect_deadline": 300})
    site = tmp_path / "site"
    shutil.copytree(ws, site)
    path = site / "plan" / "plan.yaml"
    plan = yaml.safe_load(path.read_text())
    plan["network"]["settings"]["use_tls"] = not aggregator_tls
    path.write_text(yaml.safe_dump(plan))
    if not aggregator_tls:  # the site needs its own certificate to try TLS at all
        fx_in(site, "workspace", "certify")
        fx_in(site, "collaborator", "generate-cert-request", "-n", "one", "-s", "-x")
        fx_in(site, "collaborator", "certify", "-n", "one", "-s")
    with processes(ws) as procs:
        agg = procs.aggregator()
        wait_until(lambda: in_log(agg, "listening on"), "the aggregator to listen", procs=[agg])
        started = time.monotonic()
        col = procs.start("one", "collaborator", "start", "-n", "one", cwd=site)
        assert col.wait(120) == 1
        took = time.monotonic() - started
        agg.popen.terminate()
    text = flat(col.output())
    expected = "expects TLS" if aggregator_tls else "does not use TLS"
    assert expected in text and "differ in network.settings.use_tls" in text, text
    assert "rejected this collaborator's certificate" not in text.split("error:")[-1]
    assert took < 120  # well within the 300 s reconnect deadline (bounded loosely: the machine is shared)
