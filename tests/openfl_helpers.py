"""OpenFL-style workspaces for compatibility tests: src/ code written against OpenFL 1.9's API only."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tests.runtime_helpers import fx_in, make_workspace

OPENFL_WS = Path(__file__).parent / "openfl_ws"


def copy_openfl_files(kind: str, ws: Path) -> None:
    """Put the ``kind`` ('numpy' or 'keras') OpenFL workspace's plan and src/ files into ``ws``."""
    shutil.copy(OPENFL_WS / f"{kind}_dataloader.py", ws / "src" / "dataloader.py")
    shutil.copy(OPENFL_WS / f"{kind}_taskrunner.py", ws / "src" / "taskrunner.py")
    shutil.copy(OPENFL_WS / f"{kind}_plan.yaml", ws / "plan" / "plan.yaml")


def openfl_workspace(root: Path, cols: list[str], kind: str = "numpy", rounds: int = 3,
                     after_copy: Callable[[Path], Any] | None = None, **sections: Any) -> Path:
    """An OpenFL workspace (plan with OpenFL class paths, OpenFL-API classes in src/), initialised and certified."""
    def prepare(ws: Path) -> None:
        copy_openfl_files(kind, ws)
        if after_copy is not None:
            after_copy(ws)

    return make_workspace(root, cols, rounds=rounds, prepare=prepare, **sections)


def shard_arrays(shard: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The same data the workspace's loader makes (recomputed here, not imported from the workspace)."""
    rng = np.random.default_rng(shard)
    w_true = np.arange(1, 6, dtype=np.float32)
    n_train, n_valid = 30 + 10 * shard, 20
    x = rng.normal(size=(n_train + n_valid, 5)).astype(np.float32)
    y = (x @ w_true + 0.5 + 0.1 * rng.normal(size=n_train + n_valid)).astype(np.float32)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def reference_linear_fedavg(shards: list[int], rounds: int, epochs: int = 2, lr: float = 0.05,
                            server_step: float = 1.0) -> dict[str, np.ndarray]:
    """FedAvg of full-batch gradient descent on each shard, weighted by training size, from zeros
    (``server_step`` < 1: the global model moves only that fraction of the way to the average)."""
    w, b = np.zeros(5, np.float32), np.zeros(1, np.float32)
    for _ in range(rounds):
        updates = []
        for shard in shards:
            x, y, _, _ = shard_arrays(shard)
            lw, lb = w.copy(), b.copy()
            for _ in range(epochs):
                error = x @ lw + lb[0] - y
                lw = lw - lr * (2.0 / len(y)) * (x.T @ error)
                lb = lb - lr * (2.0 / len(y)) * np.sum(error, keepdims=True)
            updates.append((len(y), lw, lb))
        total = sum(n for n, _, _ in updates)
        avg_w = sum(n / total * lw.astype(np.float64) for n, lw, _ in updates)
        avg_b = sum(n / total * lb.astype(np.float64) for n, _, lb in updates)
        w = (w + server_step * (avg_w - w)).astype(np.float32)
        b = (b + server_step * (avg_b - b)).astype(np.float32)
    return {"linear/w": w, "linear/b": b}


def openfl_pbuf(path: Path, tensors: dict[str, np.ndarray], round_number: int = 0) -> None:
    """A model file as OpenFL writes it: a bare ModelProto, no fx integrity record."""
    from fx_cli.proto import base_pb2

    model = base_pb2.ModelProto()
    for name, array in tensors.items():
        tensor = model.tensors.add(name=name, round_number=round_number, lossless=True, tags=["model"])
        tensor.transformer_metadata.add().int_list.extend(array.shape)
        tensor.data_bytes = np.asarray(array, "<f4").tobytes()
    path.write_bytes(model.SerializeToString())


def openfl_export_archive(target: Path, port: int) -> Path:
    """The numpy OpenFL workspace as OpenFL 1.9's `fx workspace export` zips it (see the reference, section 8)."""
    import hashlib
    import zipfile

    import yaml

    plan = yaml.safe_load((OPENFL_WS / "numpy_exported_plan.yaml").read_text())
    plan["network"]["settings"]["agg_port"] = port
    plan_text = yaml.dump(plan)
    openfl_hash = hashlib.sha384(plan_text.encode()).hexdigest()[:8]
    init = target.parent / "openfl_init.pbuf"
    openfl_pbuf(init, {"linear/w": np.zeros(5, np.float32), "linear/b": np.zeros(1, np.float32)})
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for folder in ("data/", "local_state/", "logs/", "plan/", "save/", "src/"):
            zf.writestr(folder, "")
        zf.writestr(".workspace", "current_plan_name: default\n")
        zf.writestr("plan/cols.yaml", "collaborators:\n- one\n- two\n")
        zf.writestr("plan/data.yaml", "one,1\ntwo,2\n")
        zf.writestr("plan/plan.yaml", plan_text)
        zf.writestr(f"plan/plan_{openfl_hash}.yaml", plan_text)
        zf.write(init, "save/init.pbuf")
        zf.writestr("src/__init__.py", "")
        zf.write(OPENFL_WS / "numpy_dataloader.py", "src/dataloader.py")
        zf.write(OPENFL_WS / "numpy_taskrunner.py", "src/taskrunner.py")
        zf.writestr("requirements.txt", "openfl==1.9.0\nnumpy\n")
    return target


def certify_all(ws: Path, cols: list[str]) -> None:
    """A CA, the aggregator's certificate for localhost and one certificate per collaborator, all in ``ws``."""
    fx_in(ws, "workspace", "certify")
    fx_in(ws, "aggregator", "generate-cert-request", "--fqdn", "localhost")
    fx_in(ws, "aggregator", "certify", "--fqdn", "localhost", "-s")
    for name in cols:
        fx_in(ws, "collaborator", "generate-cert-request", "-n", name, "-s", "-x")
        fx_in(ws, "collaborator", "certify", "-n", name, "-s")
