"""``fx simulate`` of keras/digits with the same two shards as a real mTLS federation: the same accuracy."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from scripts import demo
from tests.runtime_helpers import free_port, run_federation
from tests.test_simulate import flat, simulate

pytestmark = [pytest.mark.slow, pytest.mark.tensorflow]


def final_accuracy(ws: Path) -> float:
    records = [json.loads(line) for line in (ws / "logs" / "aggregator_metrics.jsonl").read_text().splitlines()]
    (final,) = [r for r in records if r["final"]]
    accuracy = demo.accuracy_of(final)
    assert accuracy is not None, final
    return float(accuracy)


def test_keras_digits_simulation_matches_the_real_federation_within_a_hundredth(tmp_path: Path) -> None:
    agg, sites = demo.prepare(tmp_path, "keras/digits", port=free_port())
    sim = tmp_path / "sim"
    shutil.copytree(agg, sim)
    (sim / "plan" / "data.yaml").write_text("one,1\ntwo,2\n")  # the shards the two sites use
    run = run_federation(agg, sites, timeout=600)
    assert run.ok, run.outputs
    res = simulate(sim, "--workers", "2", timeout=600)
    assert res.returncode == 0, flat(res)
    real, simulated = final_accuracy(agg), final_accuracy(sim)
    assert real >= 0.9, real
    assert abs(simulated - real) <= 0.01, (simulated, real)
