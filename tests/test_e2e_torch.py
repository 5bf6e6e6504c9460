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
