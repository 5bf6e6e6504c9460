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


# The whole federation recomputed in a child process with plain Keras (no fx, no openfl): each round, each
# shard trains one epoch from the global model with a fresh Adam, on batches drawn as the workspace's loader
# draws them (one seeded permutation per loader call: validation, training, validation), and the updates are
# averaged with training-size weights, folded in collaborator order in float32 as fx's FedAvg does.
REFERENCE_FEDAVG = r"""
import json, math, sys
import numpy as np, keras
src = open(sys.argv[2]).read().replace("from openfl.federated import KerasDataLoader", "KerasDataLoader = object")
namespace = {}
exec(compile(src, sys.argv[2], "exec"), namespace)
NAMES = ["dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias"]
init = np.load(sys.argv[1])
model = {n: init[n] for n in NAMES}
shards = {k: namespace["digits_shard"](k, 2) for k in (1, 2)}
rngs = {k: np.random.default_rng(k) for k in (1, 2)}
net = keras.Sequential([keras.Input(shape=(8, 8)), keras.layers.Flatten(),
                        keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10, activation="softmax")])

def batches(x, y, order, size=32):
    for i in range(math.ceil(len(x) / size)):
        chosen = order[i * size:(i + 1) * size]
        yield x[chosen], y[chosen]

for _ in range(int(sys.argv[3])):
    updates = []
    for k in (1, 2):
        x, y, xv, yv = shards[k]
        rngs[k].permutation(len(xv))  # aggregated_model_validation's batches
        order = rngs[k].permutation(len(x))
        rngs[k].permutation(len(xv))  # locally_tuned_model_validation's batches
        net.set_weights([model[n] for n in NAMES])
        net.compile(loss="sparse_categorical_crossentropy", optimizer=keras.optimizers.Adam(0.01))
        net.fit(batches(x, y, order), verbose=0)
        updates.append((len(x), dict(zip(NAMES, net.get_weights()))))
    total = sum(n for n, _ in updates)
    new = {}
    for name in NAMES:
        acc = np.zeros_like(model[name], dtype=np.float32)
        for n, update in updates:
            acc += np.multiply(update[name], n / total, dtype=np.float32, casting="unsafe")
        new[name] = acc
    model = new
np.savez(sys.argv[4], **model)
print("done")
"""


@pytest.fixture(scope="module")
def keras_federation(tmp_path_factory):
    ws = openfl_workspace(tmp_path_factory.mktemp("openfl_keras"), ["one", "two"], kind="keras", rounds=2)
    run = run_federation(ws, ["one", "two"], timeout=600)
    assert run.codes == {"aggregator": 0, "one": 0, "two": 0}, run.outputs
    return ws


def test_keras_openfl_workspace_trains_and_its_final_model_scores_the_same_in_plain_keras(keras_federation, tmp_path):
    check_final_model(keras_federation, tmp_path)


def test_keras_openfl_final_model_matches_fedavg_recomputed_with_plain_keras(keras_federation, tmp_path):
    ws = keras_federation
    init = read_model(ws / "save" / "init.pbuf").tensors
    np.savez(tmp_path / "init.npz", **init)
    out = tmp_path / "reference.npz"
    proc = subprocess.run([sys.executable, "-c", REFERENCE_FEDAVG, str(tmp_path / "init.npz"),
                           str(OPENFL_WS / "keras_dataloader.py"), "2", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    want = np.load(out)
    got = read_model(ws / "save" / "last.pbuf").tensors
    for name in want.files:
        assert not np.allclose(want[name], init[name])  # it trained
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-7, err_msg=name)  # bit-equal here


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
