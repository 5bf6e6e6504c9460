"""``fx simulate``: same answer as a real mTLS federation, resume after kill -9 and dead workers, bad input.

Simulations run as real ``fx simulate`` processes (their workers are real processes too).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fx_cli.tensors.pbuf import read_model
from tests.fault_helpers import assert_bit_identical
from tests.runtime_helpers import edit_plan, final_model, free_port, make_workspace, run_federation, write_src

pytestmark = pytest.mark.slow
NAMES = ["one", "two", "three", "four"]
TIMEOUT = 240.0


def simulate(ws: Path, *args: str, fault: str | None = None,
             timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="200", PYTHONUNBUFFERED="1")
    env.pop("FX_FAULT", None)
    if fault:
        env["FX_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "fx_cli", "simulate", *args], cwd=ws, env=env, text=True,
                          capture_output=True, timeout=timeout)


def flat(res: subprocess.CompletedProcess[str]) -> str:
    return " ".join((res.stdout + res.stderr).split())


def rounds_logged(ws: Path) -> list[tuple[int, bool]]:
    lines = (ws / "logs" / "aggregator_metrics.jsonl").read_text().splitlines()
    return [(json.loads(x)["round"], json.loads(x)["final"]) for x in lines]


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One numpy/synthetic plan (4 collaborators, 3 rounds, mTLS): run as a real federation, and its copy."""
    root = tmp_path_factory.mktemp("twins")
    real = make_workspace(root / "real", NAMES, rounds=3, num_params=10_000, num_tensors=5)
    sim = root / "sim"
    shutil.copytree(real, sim)
    run = run_federation(real, NAMES, timeout=TIMEOUT)
    assert run.ok, run.outputs
    return real, sim


def test_the_simulation_is_bit_identical_to_the_real_mtls_federation(twins: tuple[Path, Path]) -> None:
    real, sim = twins
    res = simulate(sim, "--workers", "2")
    assert res.returncode == 0, flat(res)
    assert_bit_identical(final_model(sim), final_model(real))
    assert rounds_logged(sim) == rounds_logged(real) == [(1, False), (2, False), (3, False), (3, True)]
    out = flat(res)
    assert "round 1/3" in out and "participants=4/4" in out and "final model" in out
    for name in NAMES:  # the same per-collaborator metrics files as collaborators write, with the same fields
        lines = {ws: [json.loads(x) for x in (ws / "logs" / f"{name}_metrics.jsonl").read_text().splitlines()]
                 for ws in (sim, real)}
        assert len(lines[sim]) == len(lines[real])
        assert [sorted(x) for x in lines[sim]] == [sorted(x) for x in lines[real]]
        assert all(x["cpu_s"] >= 0 and x["seconds"] >= 0 for x in lines[sim] + lines[real])
    again = simulate(sim)
    assert again.returncode == 0 and "already finished" in flat(again)


def test_kill_9_of_the_simulation_then_a_rerun_resumes_to_the_same_model(tmp_path: Path,
                                                                         twins: tuple[Path, Path]) -> None:
    real, _ = twins
    ws = tmp_path / "ws"
    shutil.copytree(real, ws, ignore=shutil.ignore_patterns("local_state", "logs", "last.pbuf", "best.pbuf"))
    killed = simulate(ws, "--workers", "2", fault="aggregator:saving_model#4")  # round 2's model written, not committed
    assert killed.returncode == -signal.SIGKILL, flat(killed)
    assert rounds_logged(ws)[:1] == [(1, False)]
    res = simulate(ws, "--workers", "2")
    assert res.returncode == 0, flat(res)
    assert "resuming at round" in flat(res)
    assert_bit_identical(final_model(ws), final_model(real))


def test_a_dead_worker_is_reported_with_its_collaborator_and_the_run_resumes(tmp_path: Path,
                                                                            twins: tuple[Path, Path]) -> None:
    real, _ = twins
    ws = tmp_path / "ws"
    shutil.copytree(real, ws, ignore=shutil.ignore_patterns("local_state", "logs", "last.pbuf", "best.pbuf"))
    # One worker runs every turn: its 6th training task is the second collaborator's of round 2
    died = simulate(ws, "--workers", "1", fault="collaborator:mid_train#6")
    text = flat(died)
    assert died.returncode == 1, text
    assert "simulation worker 1 died (killed by SIGKILL) while running collaborator" in text, text
    assert "round 2" in text and "state is saved" in text and "fx simulate" in text
    assert rounds_logged(ws) == [(1, False)]
    res = simulate(ws, "--workers", "2")
    assert res.returncode == 0, flat(res)
    assert_bit_identical(final_model(ws), final_model(real))


def test_partitions_split_the_data_and_rounds_override_the_plan(tmp_path: Path, twins: tuple[Path, Path]) -> None:
    real, _ = twins
    ws = tmp_path / "ws"
    shutil.copytree(real, ws, ignore=shutil.ignore_patterns("local_state", "logs", "last.pbuf", "best.pbuf"))
    res = simulate(ws, "--collaborators", "12", "--partition", "dirichlet:0.5", "--seed", "3", "--rounds", "2",
                   "--workers", "2")
    text = flat(res)
    assert res.returncode == 0, text
    assert "--rounds 2: this run trains 2 rounds (the plan says 3)" in text
    assert "participants=12/12" in text and "round 2/2" in text
    sizes = {json.loads(line)["data_size"] for name in (f"col{i:02d}" for i in range(1, 13))
             for line in (ws / "logs" / f"{name}_metrics.jsonl").read_text().splitlines()
             if json.loads(line)["task"] == "train"}
    assert len(sizes) > 3, sizes  # label skew gives unequal shares


def snapshot(ws: Path) -> dict[str, float]:
    return {str(p.relative_to(ws)): p.stat().st_mtime for p in ws.rglob("*")}


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_workspace(tmp_path_factory.mktemp("plain"), ["one", "two"], tls=False, rounds=1)


@pytest.mark.parametrize("args, message", [
    (["--partition", "zipf"], "unknown partition scheme 'zipf'"),
    (["--partition", "dirichlet:0"], "ALPHA must be > 0 (got 0)"),
    (["--partition", "dirichlet:-1.5"], "ALPHA must be > 0 (got -1.5)"),
    (["--partition", "shards:0"], "K must be at least 1 (got 0)"),
    (["--workers", "0"], "--workers must be at least 1, got 0"),
    (["--collaborators", "0"], "--collaborators must be at least 1, got 0"),
    (["--rounds", "0"], "--rounds must be at least 1, got 0"),
])
def test_bad_options_are_refused_with_the_numbers_and_nothing_is_written(plain: Path, args: list[str],
                                                                        message: str) -> None:
    before = snapshot(plain)
    res = simulate(plain, *args)
    assert res.returncode == 1 and message in flat(res), flat(res)
    assert "what to do:" in flat(res)
    assert snapshot(plain) == before


def test_more_collaborators_than_the_data_allows_is_refused_naming_the_numbers(plain: Path) -> None:
    plan = plain / "plan" / "plan.yaml"
    original = plan.read_text()
    edit_plan(plain, data_loader={"samples_per_shard": 1})  # 40 samples for 40 collaborators
    try:
        before = snapshot(plain)
        res = simulate(plain, "--collaborators", "40", "--partition", "dirichlet:0.01")
        text = flat(res)
        assert res.returncode == 1, text
        assert "of 40 collaborators would get no data under --partition dirichlet:0.01" in text, text
        assert "synthetic data: 40 samples" in text and "simulate fewer collaborators" in text
        assert snapshot(plain) == before
    finally:
        plan.write_text(original)


def test_a_ray_address_that_does_not_answer_is_refused_and_nothing_is_written(plain: Path) -> None:
    before = snapshot(plain)
    res = simulate(plain, "--backend", "ray", "--address", f"127.0.0.1:{free_port()}")
    text = flat(res)
    assert res.returncode == 1 and "does not answer" in text and "ray start --head" in text, text
    assert snapshot(plain) == before


def test_real_federation_settings_in_the_simulation_section_are_refused(plain: Path) -> None:
    plan = plain / "plan" / "plan.yaml"
    original = plan.read_text()
    edit_plan(plain, simulation={"agg_port": 50051, "cert_folder": "cert"})
    try:
        before = snapshot(plain)
        res = simulate(plain)
        text = flat(res)
        assert res.returncode == 1 and "simulation.settings.agg_port: a real-federation setting" in text, text
        assert "simulation.settings.cert_folder" in text and "opens no sockets" in text
        assert snapshot(plain) == before
    finally:
        plan.write_text(original)


def test_a_loader_without_the_split_hook_gets_an_error_naming_it(tmp_path: Path) -> None:
    code = ("from fx_cli.runners.synthetic import SyntheticData\n\n"
            "class PlainData(SyntheticData):\n    simulation_split = None\n")
    ws = make_workspace(tmp_path, ["one"], tls=False, rounds=1, prepare=lambda w: write_src(w, "plain_data", code),
                        data_loader={"template": "src.plain_data.PlainData"})
    before = snapshot(ws)
    res = simulate(ws, "--collaborators", "3")
    text = flat(res)
    assert res.returncode == 1 and "has no 'simulation_split' class method" in text, text
    assert snapshot(ws) == before
    ok = simulate(ws)  # the collaborators of plan/data.yaml need no hook
    assert ok.returncode == 0, flat(ok)
    assert sorted(read_model(ws / "save" / "last.pbuf").tensors) == ["w0", "w1", "w2", "w3"]
