"""Helpers for PyTorch runner tests: the torch/digits workspace and scoring a .pt with plain PyTorch."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

# Runs in a child process that imports torch and the workspace's own model file, never fx.
TORCH_ONLY_SCRIPT = r"""
import importlib.util, json, sys
import numpy as np, torch
assert "fx_cli" not in sys.modules
spec = importlib.util.spec_from_file_location("model", sys.argv[2])
model_module = importlib.util.module_from_spec(spec); spec.loader.exec_module(model_module)
state = torch.load(sys.argv[1], weights_only=True)
model = model_module.DigitsCNN(**json.loads(sys.argv[4]))
model.load_state_dict(state)
model.eval()
data = np.load(sys.argv[3])
with torch.no_grad():
    predicted = model(torch.as_tensor(data["x"])).argmax(dim=1).numpy()
print(json.dumps({"accuracy": float(np.mean(predicted == data["y"])), "keys": sorted(state),
                  "fx_imported": "fx_cli" in sys.modules}))
"""


def torch_only_accuracy(pt_file: Path, workspace: Path, x: np.ndarray, y: np.ndarray, scratch: Path) -> dict:
    """Accuracy of a ``.pt`` state_dict loaded by plain PyTorch into the workspace's ``DigitsCNN``."""
    data = scratch / "held_out.npz"
    np.savez(data, x=x, y=y)
    plan = yaml.safe_load((workspace / "plan" / "plan.yaml").read_text())
    model_settings = json.dumps(plan["task_runner"]["settings"].get("model_settings") or {})
    proc = subprocess.run([sys.executable, "-c", TORCH_ONLY_SCRIPT, str(pt_file), str(workspace / "src" / "model.py"),
                           str(data), model_settings], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
