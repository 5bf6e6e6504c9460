"""Cyclic and sequential schedules as real processes over mutual TLS, against independent computations.

numpy/synthetic: shard k pulls the weights towards its own target, so the order
in which collaborators train a travelling model shows in every value. FedAvg of a
single update is that update bit for bit, so a cyclic run must equal training the
model in the recorded hop order exactly.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fx_cli.runners.synthetic import SyntheticData, SyntheticRunner
from tests.runtime_helpers import fx_in, make_workspace, processes, run_federation
from tests.topology_helpers import load_model

pytestmark = pytest.mark.slow
TIMEOUT = 240.0
COLS = ["one", "two", "three"]
SHARDS = {"one": 1, "two": 2, "three": 3}
CYCLIC = "fx_cli.topology.schedules.CyclicAssigner"
GROUP = [{"name": "learner", "percentage": 1.0,
          "tasks": ["aggregated_model_validation", "train", "locally_tuned_model_validation"]}]


def _cyclic_ws(root: Path, **settings: Any) -> Path:
    assigner = {"template": CYCLIC, "task_groups": GROUP, **settings}
    return make_workspace(root, COLS, rounds=2, shards=SHARDS, assigner=assigner,
                          aggregator={"heartbeat_timeout": 8, "join_deadline": 60},
                          network={"reconnect_deadline": 120})


def _hops(ws: Path) -> list[list[str]]:
    lines = (ws / "logs" / "aggregator_metrics.jsonl").read_text().splitlines()
    return [r["participants"] for r in map(json.loads, lines) if not r["final"]]


def _travel(ws: Path, order: list[str]) -> dict[str, np.ndarray]:
    return _travel_from(load_model(ws / "save" / "init.pbuf"), order)


def _assert_same(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(expected)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name])


def test_cyclic_fixed_order_equals_training_around_the_ring(tmp_path: Path) -> None:
    ws = _cyclic_ws(tmp_path, order="fixed")
    run = run_federation(ws, COLS, timeout=TIMEOUT)
    assert run.ok, {n: o[-2000:] for n, o in run.outputs.items()}
    assert _hops(ws) == [[c] for c in COLS * 2]  # 2 trips of 3 hops, one collaborator each
    _assert_same(load_model(ws / "save" / "last.pbuf"), _travel(ws, COLS * 2))


def test_cyclic_random_order_never_repeats_a_collaborator_across_trips(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, COLS, rounds=4, shards=SHARDS,
                        assigner={"template": CYCLIC, "task_groups": GROUP, "order": "random_no_repeat", "seed": 7})
    run = run_federation(ws, COLS, timeout=TIMEOUT)
    assert run.ok, {n: o[-2000:] for n, o in run.outputs.items()}
    order = [h[0] for h in _hops(ws)]
    trips = [order[i:i + 3] for i in range(0, len(order), 3)]
    assert len(trips) == 4 and all(sorted(t) == sorted(COLS) for t in trips)
    assert all(a != b for a, b in zip(order, order[1:])), order  # never twice in a row, even across trips
    assert trips != [COLS] * 4  # really shuffled (seed 7)
    _assert_same(load_model(ws / "save" / "last.pbuf"), _travel(ws, order))


@pytest.mark.parametrize(("on_miss", "trained_by", "code"), [
    ("skip", ["one", "three", "one", "three"], 0),  # two's hops pass the model on unchanged
    ("retry", ["one", "three", "one"], 0),  # two's first hop is retried once (a hop of the run), then skipped
    ("end", ["one"], 1),  # the run ends at two's hop, keeping what the ring had done
])
def test_cyclic_with_a_collaborator_killed_mid_ring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, on_miss: str,
                                                    trained_by: list[str], code: int) -> None:
    ws = _cyclic_ws(tmp_path, order="fixed", on_miss=on_miss, max_retries=1)
    with processes(ws) as procs:
        aggregator, one = procs.aggregator(), procs.collaborator("one")
        monkeypatch.setenv("FX_FAULT", "collaborator:mid_train")
        two = procs.collaborator("two")
        monkeypatch.delenv("FX_FAULT")
        three = procs.collaborator("three")
        assert two.wait(TIMEOUT) == -9
        assert aggregator.wait(TIMEOUT) == code, aggregator.output()[-3000:]
        for proc in (one, three):
            proc.wait(TIMEOUT)
    log = aggregator.output()
    assert "'two'" in log
    if on_miss == "end":
        assert "cannot complete" in log
    else:
        assert "missed by 'two'" in log
    hops = _hops(ws)
    assert [h[0] for h in hops if h] == trained_by
    _assert_same(load_model(ws / "save" / "last.pbuf"), _travel(ws, trained_by))


def test_cyclic_aggregator_killed_mid_ring_resumes_bit_identical(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    ws = _cyclic_ws(tmp_path, order="random", seed=3)
    with processes(ws) as procs:
        monkeypatch.setenv("FX_FAULT", "aggregator:before_round_4")
        doomed = procs.aggregator()
        monkeypatch.delenv("FX_FAULT")
        cols = [procs.collaborator(c) for c in COLS]
        assert doomed.wait(TIMEOUT) == -9
        again = procs.start("aggregator-again", "aggregator", "start")
        assert again.wait(TIMEOUT) == 0, again.output()[-3000:]
        assert all(c.wait(TIMEOUT) == 0 for c in cols), [c.output()[-2000:] for c in cols]
    order = [h[0] for h in _hops(ws)]
    assert len(order) == 6 and all(sorted(order[i:i + 3]) == sorted(COLS) for i in (0, 3))
    _assert_same(load_model(ws / "save" / "last.pbuf"), _travel(ws, order))


def test_cyclic_with_one_collaborator_is_refused(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, ["one"], rounds=1, assigner={"template": CYCLIC, "task_groups": GROUP})
    with processes(ws) as procs:
        aggregator = procs.aggregator()
        assert aggregator.wait(TIMEOUT) == 1
    assert "a cyclic schedule needs at least 2 collaborators" in aggregator.output()


def test_sequential_runs_one_after_another_and_averages_like_parallel(tmp_path: Path) -> None:
    seq = make_workspace(tmp_path / "seq", COLS, rounds=2, shards=SHARDS,
                         assigner={"template": "fx_cli.topology.schedules.SequentialAssigner", "task_groups": GROUP})
    run = run_federation(seq, COLS, timeout=TIMEOUT)
    assert run.ok, {n: o[-2000:] for n, o in run.outputs.items()}
    received = [line for line in run.outputs["aggregator"].splitlines() if "received 'locally_tuned" in line]
    senders = [line.rsplit("from '", 1)[1].split("'")[0] for line in received]
    assert senders == COLS * 2, senders  # each round: one, then two, then three

    par = make_workspace(tmp_path / "par", COLS, rounds=2, shards=SHARDS)
    (par / "save" / "init.pbuf").write_bytes((seq / "save" / "init.pbuf").read_bytes())
    assert run_federation(par, COLS, timeout=TIMEOUT).ok
    _assert_same(load_model(seq / "save" / "last.pbuf"), load_model(par / "save" / "last.pbuf"))
    fx_in(seq, "plan", "print")  # the schedule is a valid plan component


ROUND_ROBIN = {"template": "fx_cli.topology.schedules.RoundRobinAssigner", "task_groups": GROUP}


def _rotated(ws: Path) -> list[dict[str, np.ndarray]]:
    """Independently: on hop h, collaborator i trains resource (i + h) mod 3, starting from its latest model."""
    init = load_model(ws / "save" / "init.pbuf")
    resources = [init, init, init]
    for hop in range(3):
        for i, col in enumerate(COLS):
            k = (i + hop) % 3
            resources[k] = _travel_from(resources[k], [col])
    return resources


def _assert_resources(ws: Path) -> None:
    for k, expected in enumerate(_rotated(ws)):
        _assert_same(load_model(ws / "save" / "resources" / f"resource_{k}.pbuf"), expected)
    hops = [h[0] for h in _hops(ws)]
    assert len(hops) == 9 and all(sorted(hops[h * 3:h * 3 + 3]) == sorted(COLS) for h in range(3))


def test_round_robin_rotates_every_resource_through_every_collaborator(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, COLS, rounds=1, shards=SHARDS, assigner=ROUND_ROBIN)
    run = run_federation(ws, COLS, timeout=TIMEOUT)
    assert run.ok, {n: o[-2000:] for n, o in run.outputs.items()}
    _assert_resources(ws)


@pytest.mark.parametrize("point", ["aggregator:before_round_5", "aggregator:saving_model#4"])
def test_round_robin_survives_the_aggregator_killed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    point: str) -> None:
    ws = make_workspace(tmp_path, COLS, rounds=1, shards=SHARDS, assigner=ROUND_ROBIN,
                        network={"reconnect_deadline": 120})
    with processes(ws) as procs:
        monkeypatch.setenv("FX_FAULT", point)
        doomed = procs.aggregator()
        monkeypatch.delenv("FX_FAULT")
        cols = [procs.collaborator(c) for c in COLS]
        assert doomed.wait(TIMEOUT) == -9
        again = procs.start("aggregator-again", "aggregator", "start")
        assert again.wait(TIMEOUT) == 0, again.output()[-3000:]
        assert all(c.wait(TIMEOUT) == 0 for c in cols), [c.output()[-2000:] for c in cols]
    _assert_resources(ws)


def _travel_from(model: dict[str, np.ndarray], order: list[str]) -> dict[str, np.ndarray]:
    for col in order:
        runner = SyntheticRunner(SyntheticData(str(SHARDS[col])))
        runner.set_tensors(model)
        model = {k: np.asarray(v, np.float32) for k, v in runner.train_task(0).tensors.items()}
    return model


@pytest.mark.parametrize("assigner", ["cyclic", "round_robin", "sequential"])
def test_schedules_in_fx_simulate_give_the_models_of_the_real_federation(tmp_path: Path, assigner: str) -> None:
    from tests.test_simulate import flat, simulate

    settings = {"cyclic": {"template": CYCLIC, "task_groups": GROUP, "order": "random", "seed": 5},
                "round_robin": ROUND_ROBIN,
                "sequential": {"template": "fx_cli.topology.schedules.SequentialAssigner", "task_groups": GROUP}}
    ws = make_workspace(tmp_path / "sim", COLS, rounds=1, shards=SHARDS, assigner=settings[assigner])
    res = simulate(ws, "--workers", "2")
    assert res.returncode == 0, flat(res)
    if assigner == "cyclic":
        order = [h[0] for h in _hops(ws)]
        assert sorted(order) == sorted(COLS)
        _assert_same(load_model(ws / "save" / "last.pbuf"), _travel(ws, order))
    elif assigner == "round_robin":
        _assert_resources(ws)
    else:
        real = make_workspace(tmp_path / "real", COLS, rounds=1, shards=SHARDS, assigner=settings[assigner])
        (real / "save" / "init.pbuf").write_bytes((ws / "save" / "init.pbuf").read_bytes())
        assert run_federation(real, COLS, timeout=TIMEOUT).ok
        _assert_same(load_model(ws / "save" / "last.pbuf"), load_model(real / "save" / "last.pbuf"))
