"""An OpenFL 1.9 PyTorchTaskRunner workspace (nn.Module subclass, default train_/validate_ hooks) runs unchanged."""
from __future__ import annotations

import json

import numpy as np
import torch

from fx_cli.tensors.pbuf import read_model
from tests.openfl_helpers import openfl_workspace
from tests.runtime_helpers import fx_in, run_in_process


def test_pytorch_openfl_workspace_federates_over_mtls_and_saves_openfls_pt_file(tmp_path):
    ws = openfl_workspace(tmp_path, ["one", "two"], kind="torch", rounds=2)
    init = read_model(ws / "save" / "init.pbuf").tensors
    assert sorted(init) == ["fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"]  # the state_dict keys
    run = run_in_process(ws, ["one", "two"], timeout=600)
    assert not run.errors, run.errors
    records = [json.loads(line) for line in (ws / "logs" / "aggregator_metrics.jsonl").read_text().splitlines()]
    (final,) = [r for r in records if r["final"]]
    assert final["metrics"]["aggregated_model_validation/accuracy"] >= 0.85, final  # named by validate_'s Metric
    assert any("train/cross_entropy" in r["metrics"] for r in records), records  # and train_'s, by the loss
    fx_in(ws, "model", "save", "-i", "save/last.pbuf", "-o", str(tmp_path / "final.pt"))
    saved = torch.load(tmp_path / "final.pt", weights_only=True)  # OpenFL's layout, plain torch reads it
    last = read_model(ws / "save" / "last.pbuf").tensors
    assert sorted(saved) == ["model_state_dict", "optimizer_state_dict"]
    for name, array in last.items():
        np.testing.assert_array_equal(saved["model_state_dict"][name].numpy(), array)
