"""An OpenFL 1.9 KerasTaskRunner workspace (build_model, KerasDataLoader) runs unchanged over mutual TLS."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from fx_cli.tensors.pbuf import read_model
from tests.openfl_helpers import OPENFL_WS, openfl_workspace
from tests.runtime_helpers import run_federation

pytestmark = [pytest.mark.slow, pytest.mark.tensorflow]

# A child process with Keras and the workspace's loader, never fx or openfl: rebuild the same
# architecture, put the final weights in by name, score the whole held-out set.
PLAIN_KERAS = r"""
import json, sys
import numpy as np, keras
src = open(sys.argv[2]).read().replace("from openfl.federated import KerasDataLoader", "KerasDataLoader = object")
namespace = {}
exec(compile(src, sys.argv[2], "exec"), namespace)
shards = [namespace["digits_shard"](k, 2) for k in (1, 2)]
x = np.concatenate([s[2] for s in shards]); y = np.concatenate([s[3] for s in shards])
weights = np.load(sys.argv[1])
model = keras.Sequential([keras.Input(shape=(8, 8)), keras.layers.Flatten(),
                          keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10, activation="softmax")])
named = {f"{layer.name}/{w.name}": w for layer in model.layers for w in layer.weights}
assert sorted(named) == sorted(weights.files), (sorted(named), weights.files)
for name, variable in named.items():
    variable.assign(weights[name])
predicted = np.argmax(model.predict(x, verbose=0), axis=1)
assert "fx_cli" not in sys.modules and "openfl" not in sys.modules
print(json.dumps({"accuracy": float(np.mean(predicted == y))}))
"""


@pytest.fixture(scope="module")
def keras_federation(tmp_path_factory):
    ws = openfl_workspace(tmp_path_factory.mktemp("openfl_keras"), ["one", "two"], kind="keras", rounds=2)
    run = run_federation(ws, ["one", "two"], timeout=600)
    assert run.codes == {"aggregator": 0, "one": 0, "two": 0}, run.outputs
    return ws


def test_keras_openfl_workspace_trains_and_its_final_model_scores_the_same_in_plain_keras(keras_federation, tmp_path):
    check_final_model(keras_federation, tmp_path)


def test_the_keras_openfl_workspace_runs_unchanged_in_fx_simulate(keras_federation, tmp_path):
    sim = tmp_path / "sim"
    shutil.copytree(keras_federation, sim, ignore=shutil.ignore_patterns("local_state", "logs", "last.pbuf",
                                                                         "best.pbuf"))
    res = subprocess.run([sys.executable, "-m", "fx_cli", "simulate", "--workers", "1"], cwd=sim, text=True,
                         capture_output=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    check_final_model(sim, tmp_path)


def check_final_model(ws, tmp_path):
    """The final model's accuracy, reported by the run, equals plain Keras' on the whole held-out set."""
    records = [json.loads(line) for line in (ws / "logs" / "aggregator_metrics.jsonl").read_text().splitlines()]
    (final,) = [r for r in records if r["final"]]
    reported = final["metrics"]["aggregated_model_validation/accuracy"]
    assert reported >= 0.85, final
    last = read_model(ws / "save" / "last.pbuf").tensors
    assert sorted(last) == ["dense/bias", "dense/kernel", "dense_1/bias", "dense_1/kernel"]  # OpenFL's Keras names
    np.savez(tmp_path / "final.npz", **last)
    proc = subprocess.run([sys.executable, "-c", PLAIN_KERAS, str(tmp_path / "final.npz"),
                           str(OPENFL_WS / "keras_dataloader.py")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    independent = json.loads(proc.stdout.strip().splitlines()[-1])["accuracy"]
    assert abs(independent - reported) <= 1e-6, (independent, reported)
