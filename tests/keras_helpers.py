"""Helpers for Keras tests: workspaces, the held-out digits, and a Keras-only check of saved models.

``check_saved_model(workspace, model_path, expected_accuracy)`` is what an
end-to-end federation test calls on the aggregator's output: it runs
``fx model save`` as a real process, then has a separate Python process that
cannot import fx load the ``.keras`` file with plain Keras and score it.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from fx_cli.cli.main import cli

# Runs in a child process; fx is made unimportable so only Keras can open the model.
KERAS_ONLY_SCRIPT = r"""
import json, os, sys
sys.modules["fx_cli"] = None
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import numpy as np, keras
model = keras.models.load_model(sys.argv[1])
data = np.load(sys.argv[2])
prob = model.predict(data["x"], batch_size=256, verbose=0)
scores = model.evaluate(data["x"], data["y"], batch_size=256, verbose=0, return_dict=True)
print(json.dumps({"argmax_accuracy": float(np.mean(prob.argmax(axis=1) == data["y"])),
                  "evaluate_accuracy": float(scores["accuracy"]),
                  "layers": [type(layer).__module__.split(".")[0] for layer in model.layers]}))
"""


def write_tiny_mnist(path: Path, n_train: int = 40, n_test: int = 10) -> None:
    """A small random file in Keras' mnist.npz layout (uint8 images, labels)."""
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
             y_train=rng.integers(0, 10, n_train, dtype=np.uint8),
             x_test=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
             y_test=rng.integers(0, 10, n_test, dtype=np.uint8))


def fx_in_process(*args: str) -> tuple[int, str]:
    """Run ``fx ARGS`` in this process; returns (exit code, stdout + stderr)."""
    res = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return res.exit_code, res.stdout + res.stderr


def create_workspace(prefix: Path, template: str, initialize: bool = True) -> Path:
    """``fx workspace create`` (and ``fx plan initialize``) with explicit paths, no chdir."""
    code, out = fx_in_process("workspace", "create", "--prefix", str(prefix), "--template", template)
    assert code == 0, out
    if initialize:
        plan = prefix / "plan"
        code, out = fx_in_process("plan", "initialize", "-p", str(plan / "plan.yaml"), "-c", str(plan / "cols.yaml"),
                                  "-d", str(plan / "data.yaml"), "-a", "localhost")
        assert code == 0, out
    return prefix


def held_out_set(workspace: Path) -> tuple[np.ndarray, np.ndarray]:
    """The whole held-out split: every collaborator's validation shard, concatenated."""
    from fx_cli.plan import load_plan
    from fx_cli.plan.templates import resolve_class

    plan = load_plan(workspace / "plan" / "plan.yaml")
    loader_cls = resolve_class(plan.template("data_loader"), plan.workspace, "data_loader.template")
    settings = plan.settings("data_loader")
    shards = [loader_cls(data_path=str(k), **settings).arrays()
              for k in range(1, settings["collaborator_count"] + 1)]
    return np.concatenate([s[2] for s in shards]), np.concatenate([s[3] for s in shards])


def keras_only_scores(model_file: Path, x: np.ndarray, y: np.ndarray, scratch: Path) -> dict[str, object]:
    """Score a ``.keras`` file in a child process that has Keras but cannot import fx."""
    data = scratch / "held_out.npz"
    np.savez(data, x=x, y=y)
    proc = subprocess.run([sys.executable, "-c", KERAS_ONLY_SCRIPT, str(model_file), str(data)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def check_saved_model(workspace: Path, model_path: Path, expected_accuracy: float, tol: float = 0.005) -> float:
    """``fx model save`` a ``.pbuf`` to ``.keras``; plain Keras must reproduce ``expected_accuracy``."""
    out = workspace / "save" / f"{Path(model_path).stem}_check.keras"
    proc = subprocess.run([sys.executable, "-m", "fx_cli", "model", "save", "-i", str(model_path),
                           "-o", str(out), "-p", "plan/plan.yaml", "--force"],
                          cwd=workspace, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out.is_file(), f"fx model save reported success but wrote no {out}"
    x, y = held_out_set(workspace)
    with tempfile.TemporaryDirectory() as scratch:
        scores = keras_only_scores(out, x, y, Path(scratch))
    assert set(scores["layers"]) == {"keras"}, f"saved model holds non-Keras layers: {scores['layers']}"
    accuracy = float(scores["argmax_accuracy"])
    assert abs(accuracy - expected_accuracy) <= tol, (accuracy, expected_accuracy)
    assert abs(float(scores["evaluate_accuracy"]) - accuracy) <= 1e-6
    return accuracy
