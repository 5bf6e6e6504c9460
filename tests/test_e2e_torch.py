"""torch/digits end to end: two sites in their own folders, real processes over mutual TLS.

The template as shipped reaches the accuracy bar in 3 rounds and its final model, saved with
`fx model save` to a `.pt`, scores the same in plain PyTorch.  A second, short federation runs
opt_treatment CONTINUE_GLOBAL (in-process): the optimizer state is part of the global model and
continues across rounds (its step counters add up over both rounds).
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from fx_cli.runners.keras_data import DigitsData
from fx_cli.tensors.pbuf import read_model
from scripts import demo
from tests.keras_helpers import held_out_set
from tests.runtime_helpers import free_port, make_workspace, run_federation, run_in_process
from tests.torch_helpers import torch_only_accuracy

pytestmark = [pytest.mark.slow]


def records_of(agg):
    return [json.loads(line) for line in (agg / "logs" / "aggregator_metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    agg, sites = demo.prepare(tmp_path_factory.mktemp("torch_e2e"), "torch/digits", port=free_port())
    run = run_federation(agg, sites, timeout=600)
    assert run.codes == {"aggregator": 0, "one": 0, "two": 0}, run.outputs
    return agg, sites, records_of(agg)


def test_torch_digits_reaches_90_percent_in_three_rounds(federation):
    _, _, records = federation
    rounds = [r for r in records if not r["final"]]
    (final,) = [r for r in records if r["final"]]
    assert [r["round"] for r in rounds] == [1, 2, 3]
    assert all(sorted(r["participants"]) == ["one", "two"] for r in rounds), rounds
    assert demo.accuracy_of(final) >= 0.90, final


def test_final_model_saved_as_pt_scores_the_same_in_plain_pytorch(federation, tmp_path):
    agg, _, records = federation
    (final,) = [r for r in records if r["final"]]
    out = tmp_path / "final.pt"
    proc = subprocess.run([sys.executable, "-m", "fx_cli", "model", "save", "-i", "save/last.pbuf", "-o", str(out)],
                          cwd=agg, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    x, y = held_out_set(agg)
    scores = torch_only_accuracy(out, agg, x, y, tmp_path)
    assert not scores["fx_imported"]
    assert scores["keys"] == sorted(read_model(agg / "save" / "last.pbuf").tensors)
    assert abs(scores["accuracy"] - demo.accuracy_of(final)) <= 0.005, (scores, final)


def test_continue_global_optimizer_state_travels_and_continues(tmp_path):
    """In-process (threads, real gRPC and mTLS on loopback): the optimizer state is in the global model."""
    ws = make_workspace(tmp_path, ["one", "two"], template="torch/digits", rounds=2,
                        collaborator={"opt_treatment": "CONTINUE_GLOBAL"},
                        tasks={"train": {"function": "train_task",
                                         "kwargs": {"epochs": 1, "batch_size": 64, "metrics": ["loss"]}}})
    init = read_model(ws / "save" / "init.pbuf").tensors
    steps = sorted(name for name in init if name.startswith("optimizer/") and name.endswith("/step"))
    assert steps and all(float(init[s]) == 0.0 for s in steps)  # fresh Adam state in the initial model
    run = run_in_process(ws, ["one", "two"], timeout=600)
    assert not run.errors, run.errors
    last = read_model(ws / "save" / "last.pbuf").tensors
    batches = [-(-DigitsData(str(k), collaborator_count=2).train_size() // 64) for k in (1, 2)]
    assert batches[0] == batches[1]  # equal shards: the averaged step count is exact
    # 2 rounds x 1 epoch: the second round started from the first round's (aggregated) optimizer state
    assert all(float(last[s]) == 2 * batches[0] for s in steps), {s: float(last[s]) for s in steps}
    assert not np.allclose(last["optimizer/fc2.weight/exp_avg"], 0.0)


def test_models_downloaded_into_the_torch_model_match_plain_fedavg(tmp_path):
    """In-process (threads, real gRPC and mTLS on loopback). Each collaborator downloads the global model straight
    into its PyTorch model's tensors (``tensor_buffers``); the run's final model must equal FedAvg recomputed
    with runners that are handed new arrays, and the sites' scores of the final model must be those of the
    recomputed one."""
    from fx_cli.runners.build import build_runner
    from fx_cli.plan import load_plan

    shards = {"one": 1, "two": 2}
    train = {"epochs": 1, "batch_size": 64, "metrics": ["loss"]}
    ws = make_workspace(tmp_path, ["one", "two"], template="torch/digits", rounds=2,
                        tasks={"train": {"function": "train_task", "kwargs": train}})
    model = dict(read_model(ws / "save" / "init.pbuf").tensors)
    run = run_in_process(ws, ["one", "two"], timeout=600)
    assert not run.errors, run.errors
    plan = load_plan(ws / "plan" / "plan.yaml")
    runners = {name: build_runner(plan, str(shard)) for name, shard in shards.items()}
    for r in range(2):
        updates = []
        for name in sorted(runners):  # RESET (the template's opt_treatment): a fresh optimizer every round
            runner = runners[name]
            runner.set_tensors({k: np.array(v, np.float32) for k, v in model.items()})
            runner.reset_optimizer()
            updates.append((float(runner.train_data_size()), runner.train_task(r, **train).tensors))
        total = sum(w for w, _ in updates)
        model = {k: sum(np.float32(w / total) * u[k] for w, u in updates).astype(np.float32) for k in model}
    last = read_model(ws / "save" / "last.pbuf").tensors
    for name, value in model.items():
        np.testing.assert_allclose(last[name], value, rtol=1e-5, atol=1e-6, err_msg=name)
    for name, runner in runners.items():
        lines = (ws / "logs" / f"{name}_metrics.jsonl").read_text().splitlines()
        (final,) = [json.loads(line) for line in lines if json.loads(line)["final"]]
        runner.set_tensors({k: np.array(v, np.float32) for k, v in last.items()})
        assert final["metrics"]["accuracy"] == pytest.approx(runner.validate_task(2).metrics["accuracy"]), final
