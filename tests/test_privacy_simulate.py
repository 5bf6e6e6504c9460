"""Differential privacy in ``fx simulate``: the same engine, so the same DP-FedAvg, ε and max_epsilon stop
as a real federation, checked against the numpy reference of tests/test_privacy_federation.py."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fx_cli.tensors.pbuf import read_model
from tests.runtime_helpers import final_model, make_workspace
from tests.test_privacy_federation import CLIP, NAMES, SHARDS, google_epsilon, records, reference
from tests.test_simulate import flat, simulate

pytestmark = pytest.mark.slow


def test_central_dp_and_max_epsilon_in_fx_simulate(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, NAMES, rounds=10, shards=SHARDS, num_params=2000, tls=False,
                        privacy={"mode": "central", "clip_norm": CLIP, "noise_multiplier": 1.0, "max_epsilon": 8.0})
    res = simulate(ws, "--workers", "2")
    assert res.returncode == 0, flat(res)
    rounds = [r for r in records(ws) if not r["final"]]
    assert [r["round"] for r in rounds] == [1, 2]  # ε(3 rounds) = 9.0 > 8 at z = 1, q = 1
    assert rounds[-1]["privacy"]["epsilon"] == pytest.approx(google_epsilon(1.0, 1.0, 2), rel=0.01)
    want, got = reference(ws, 2, "central", 1.0), final_model(ws)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6)
    assert read_model(ws / "save" / "last.pbuf").round_number == 2
    out = flat(res)
    assert "ε=4.73" in out and "differential privacy (central): ε=7.077" in out and "stops after round 2" in out


def test_local_dp_in_fx_simulate_clips_each_update(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, NAMES, rounds=2, shards=SHARDS, num_params=2000, tls=False,
                        privacy={"mode": "local", "clip_norm": CLIP, "noise_multiplier": 1e-9})
    res = simulate(ws, "--workers", "2")
    assert res.returncode == 0, flat(res)
    want, got = reference(ws, 2, "local", 0.0), final_model(ws)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6)
    assert [r["privacy"]["sampling_rate"] for r in records(ws) if not r["final"]] == [1.0, 1.0]

