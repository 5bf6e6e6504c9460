"""Differential privacy in real federations (gRPC over mutual TLS on loopback), checked against references
computed here: the synthetic runner is deterministic, so every update can be recomputed, clipped with numpy
and, in central mode, noised with the same per-round stream read from the run's seed file."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import dp_accounting
from dp_accounting.rdp import rdp_privacy_accountant
from fx_cli.tensors.pbuf import read_model
from tests.fault_helpers import killed, processes
from tests.runtime_helpers import final_model, make_workspace, run_in_process, synthetic_runner

NAMES = ["one", "two", "three"]
SHARDS = {"one": 1, "two": 2, "three": 3}
CLIP = 0.05  # below every synthetic update's norm, so clipping really acts


def records(ws: Path) -> list[dict[str, Any]]:
    lines = (ws / "logs" / "aggregator_metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def google_epsilon(z: float, q: float, rounds: int, delta: float = 1e-5) -> float:
    acc = rdp_privacy_accountant.RdpAccountant()
    acc.compose(dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)), rounds))
    return float(acc.get_epsilon(delta))


def reference(ws: Path, rounds: int, mode: str, z: float) -> dict[str, np.ndarray]:
    """DP-FedAvg recomputed with numpy: clipped deltas, equal weights over m (central) + the run's noise,
    or data-size-weighted FedAvg of clipped deltas (local, with noise too small to matter)."""
    from fx_cli.privacy.central import round_generator

    model = {k: np.asarray(v, np.float64) for k, v in read_model(ws / "save" / "init.pbuf").tensors.items()}
    runners = {n: synthetic_runner(ws, s) for n, s in SHARDS.items()}
    secret = (ws / "local_state" / "privacy" / "noise.key").read_bytes() if mode == "central" else b""
    for r in range(rounds):
        deltas, sizes = [], []
        for name in sorted(runners):
            runner = runners[name]
            runner.set_tensors({k: v.astype(np.float32) for k, v in model.items()})
            out = runner.train_task(r).tensors
            delta = {k: np.asarray(out[k], np.float64) - np.float32(model[k]).astype(np.float64) for k in model}
            norm = np.linalg.norm(np.concatenate([d.ravel() for d in delta.values()]))
            assert norm > CLIP  # the test means something only if clipping acts
            deltas.append({k: d * min(1.0, CLIP / norm) for k, d in delta.items()})
            sizes.append(runner.train_data_size())
        base = {k: v.astype(np.float32).astype(np.float64) for k, v in model.items()}
        if mode == "central":
            rng = round_generator(secret, r)
            model = {k: base[k] + (rng.normal(0.0, z * CLIP, base[k].shape) + sum(d[k] for d in deltas)) / len(deltas)
                     for k in base}
        else:
            total = float(sum(sizes))
            model = {k: base[k] + sum(s / total * d[k] for s, d in zip(sizes, deltas)) for k in base}
        model = {k: v.astype(np.float32).astype(np.float64) for k, v in model.items()}
    return {k: v.astype(np.float32) for k, v in model.items()}


def test_central_dp_is_the_clipped_mean_plus_the_runs_noise_and_reports_epsilon(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, NAMES, rounds=3, shards=SHARDS, num_params=2000,
                        privacy={"mode": "central", "clip_norm": CLIP, "noise_multiplier": 1.0})
    out = run_in_process(ws, NAMES)
    assert not out.errors, out.errors
    want = reference(ws, 3, "central", 1.0)
    got = final_model(ws)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6)
    rounds = [r for r in records(ws) if not r["final"]]
    assert [r["privacy"]["clipped"] for r in rounds] == [3, 3, 3]
    for r in rounds:
        assert r["privacy"]["epsilon"] == pytest.approx(google_epsilon(1.0, 1.0, r["round"]), rel=0.01)
    assert out.aggregator.reports[0].line().count("ε=4.73") == 1
    assert oct((ws / "local_state" / "privacy" / "noise.key").stat().st_mode & 0o777) == "0o600"


def test_noise_on_the_average_has_the_calibrated_spread(tmp_path: Path) -> None:
    """One round, z = 4: final - noise-free clipped mean is N(0, (zC/m)²) over 20 000 values."""
    ws = make_workspace(tmp_path, NAMES, rounds=1, shards=SHARDS, num_params=20_000,
                        privacy={"mode": "central", "clip_norm": CLIP, "noise_multiplier": 4.0})
    out = run_in_process(ws, NAMES)
    assert not out.errors, out.errors
    model = read_model(ws / "save" / "init.pbuf").tensors
    runners = {n: synthetic_runner(ws, s) for n, s in SHARDS.items()}
    clipped_sum = {k: np.zeros(v.shape) for k, v in model.items()}
    for name in sorted(runners):
        runners[name].set_tensors(model)
        out_t = runners[name].train_task(0).tensors
        delta = {k: np.asarray(out_t[k], np.float64) - model[k] for k in model}
        norm = np.linalg.norm(np.concatenate([d.ravel() for d in delta.values()]))
        for k in model:
            clipped_sum[k] += delta[k] * min(1.0, CLIP / norm)
    got = final_model(ws)
    residual = np.concatenate([(got[k] - model[k] - clipped_sum[k] / 3).ravel() for k in model])
    assert residual.std() == pytest.approx(4.0 * CLIP / 3, rel=0.05)
    assert abs(residual.mean()) < 4.0 * CLIP / 3 * 0.05


def test_local_dp_clips_each_update_before_it_leaves_the_site(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, NAMES, rounds=2, shards=SHARDS, num_params=2000,
                        privacy={"mode": "local", "clip_norm": CLIP, "noise_multiplier": 1e-9})
    out = run_in_process(ws, NAMES)
    assert not out.errors, out.errors
    want, got = reference(ws, 2, "local", 0.0), final_model(ws)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6)
    last = [r for r in records(ws) if not r["final"]][-1]["privacy"]
    assert last["mode"] == "local" and last["sampling_rate"] == 1.0 and last["epsilon"] > 1e6


def test_max_epsilon_stops_before_the_round_that_would_exceed_it(tmp_path: Path) -> None:
    budget = 8.0
    expected_rounds = max(r for r in range(1, 11) if google_epsilon(1.0, 1.0, r) <= budget)
    ws = make_workspace(tmp_path, NAMES, rounds=10, shards=SHARDS, num_params=500,
                        privacy={"mode": "central", "clip_norm": CLIP, "noise_multiplier": 1.0,
                                 "max_epsilon": budget})
    out = run_in_process(ws, NAMES)
    assert not out.errors, out.errors
    assert out.aggregator.rounds_done == expected_rounds == 2
    rounds = [r for r in records(ws) if not r["final"]]
    assert [r["round"] for r in rounds] == list(range(1, expected_rounds + 1))
    assert rounds[-1]["privacy"]["epsilon"] <= budget < google_epsilon(1.0, 1.0, expected_rounds + 1)
    assert read_model(ws / "save" / "last.pbuf").round_number == expected_rounds
    assert any(r["final"] for r in records(ws))  # the last model was still evaluated: a clean stop


def test_the_accountant_survives_kill_9_between_rounds(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, ["one", "two"], rounds=4, shards={"one": 1, "two": 2}, num_params=500,
                        network={"reconnect_deadline": 60},
                        privacy={"mode": "central", "clip_norm": CLIP, "noise_multiplier": 1.5,
                                 "adaptive_clipping": True})
    with processes(ws) as procs:
        first = procs.aggregator(fault="aggregator:before_round_3")
        cols = [procs.collaborator(n) for n in ("one", "two")]
        killed(first)
        second = procs.aggregator()
        assert second.wait(120) == 0, second.output()
        for col in cols:
            assert col.wait(120) == 0, col.output()
    rounds = [r for r in records(ws) if not r["final"]]
    assert [r["round"] for r in rounds] == [1, 2, 3, 4]
    assert rounds[-1]["privacy"]["accountant"] == [{"q": 1.0, "z": 1.5, "rounds": 4}]
    assert rounds[-1]["privacy"]["epsilon"] == pytest.approx(google_epsilon(1.5, 1.0, 4), rel=0.01)
    # the adaptive clip norm carried on from where the killed run left it
    assert [r["privacy"]["clip_norm"] for r in rounds[1:]] == [r["privacy"]["next_clip_norm"] for r in rounds[:-1]]
    assert "ε=" in second.output() and "differential privacy (central)" in second.output()
