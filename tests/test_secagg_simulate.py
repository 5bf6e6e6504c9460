"""Secure aggregation in ``fx simulate``: the virtual collaborators run the protocol's stages against the engine's
own ``SecAggRounds`` (fx_cli/simulate/secagg.py), so the final model is plain FedAvg within the quantisation
bound, as in the real mTLS federation (tests/test_secagg_federation.py)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fx_cli.secagg.quantize import quantization_bound
from tests.runtime_helpers import final_model, make_workspace, reference_fedavg, run_in_process
from tests.test_simulate import flat, simulate

pytestmark = pytest.mark.slow

NAMES = ["one", "two", "three", "four", "five"]
SHARDS = {n: i + 1 for i, n in enumerate(NAMES)}
SECAGG = {"threshold": 3, "clipping_range": 4.0, "quantization_bits": 24}
BOUND = 2 * quantization_bound(4.0, 24) + 1e-6  # two rounds of rounding, plus float32


def records(ws: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(x) for x in (ws / "logs" / "aggregator_metrics.jsonl").read_text().splitlines()]


def test_secure_aggregation_in_fx_simulate_equals_the_plain_simulation_within_the_quantisation_bound(
        tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "secagg", NAMES, rounds=2, shards=SHARDS, num_params=3000, tls=False,
                        aggregator={"secure_aggregation": True}, secure_aggregation=SECAGG)
    plain = tmp_path / "plain"
    shutil.copytree(ws, plain)
    plan = plain / "plan" / "plan.yaml"
    text = plan.read_text()
    assert "secure_aggregation: true" in text
    plan.write_text(text.replace("secure_aggregation: true", "secure_aggregation: false"))

    res = simulate(ws, "--workers", "2")
    assert res.returncode == 0, flat(res)
    assert "per-run keys made by the simulator" in flat(res)
    base = simulate(plain, "--workers", "2")
    assert base.returncode == 0, flat(base)

    got, without, want = final_model(ws), final_model(plain), reference_fedavg(ws, SHARDS, 2)
    for k in want:
        np.testing.assert_allclose(without[k], want[k], rtol=1e-5, atol=1e-6)  # the plain simulation is FedAvg
        np.testing.assert_allclose(got[k], without[k], rtol=0, atol=BOUND)
    assert any(not np.array_equal(got[k], without[k]) for k in want)  # it really went through quantisation
    assert [r["participants"] for r in records(ws) if not r["final"]] == [sorted(NAMES)] * 2


def test_below_the_threshold_fx_simulate_refuses_the_plan_clearly(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, NAMES, rounds=1, shards=SHARDS, tls=False,
                        aggregator={"secure_aggregation": True}, secure_aggregation=dict(SECAGG, threshold=3))
    res = simulate(ws, "--collaborators", "2")
    assert res.returncode != 0
    assert "threshold must be set, from 2 to the 2 collaborators" in flat(res)


def test_fx_simulate_with_secure_aggregation_equals_the_real_mtls_federation(tmp_path: Path) -> None:
    real = make_workspace(tmp_path / "real", NAMES, rounds=2, shards=SHARDS, num_params=3000,
                          aggregator={"secure_aggregation": True}, secure_aggregation=SECAGG)
    sim = tmp_path / "sim"
    shutil.copytree(real, sim)
    out = run_in_process(real, NAMES, timeout=180)
    assert not out.errors, out.errors
    res = simulate(sim, "--workers", "2")
    assert res.returncode == 0, flat(res)
    a, b = final_model(real), final_model(sim)
    for k in a:  # each is within BOUND of FedAvg
        np.testing.assert_allclose(b[k], a[k], rtol=0, atol=2 * BOUND)


def test_kill_9_of_the_simulation_while_unmasking_then_a_rerun_redoes_the_round_to_the_same_sum(
        tmp_path: Path) -> None:
    import signal

    ws = make_workspace(tmp_path, NAMES, rounds=2, shards=SHARDS, num_params=3000, tls=False,
                        aggregator={"secure_aggregation": True}, secure_aggregation=SECAGG)
    killed = simulate(ws, "--workers", "2", fault="aggregator:secagg_unmasking")  # masked sum in, no shares yet
    assert killed.returncode == -signal.SIGKILL, flat(killed)
    assert not (ws / "save" / "last.pbuf").exists()
    res = simulate(ws, "--workers", "2")
    assert res.returncode == 0, flat(res)
    assert "round 1 is redone" in flat(res)
    want, got = reference_fedavg(ws, SHARDS, 2), final_model(ws)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=BOUND)
