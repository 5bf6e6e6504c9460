"""Aggregation functions and compression pipelines wired through the plan, checked against references.

Each run is a real federation (gRPC with mutual TLS on loopback) whose
aggregator and collaborators are threads of the test process.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fx_cli.aggregation import Contribution, resolve_aggregation
from tests.runtime_helpers import final_model, make_workspace, reference_model, run_in_process

NAMES = ["one", "two", "three"]
# Unequal data sizes (100, 200, 500 samples) so weighted, median and geometric-median results all differ.
SHARDS = {"one": 1, "two": 2, "three": 5}
ROUNDS = 3


def train_task(aggregation: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"function": "train_task", "kwargs": {"epochs": 1, "metrics": ["loss"]}}
    if aggregation:
        spec["aggregation_type"] = aggregation
    return {"train": spec}


def run(ws: Path) -> Any:
    out = run_in_process(ws, NAMES)
    assert not out.errors, out.errors
    return out


def library_reference(spec: dict[str, Any]) -> Any:
    """Apply a fresh instance of the plan's function to the recomputed updates, round after round."""
    function = resolve_aggregation(spec, Path("."))

    def aggregate(name: str, base: np.ndarray, updates: list[tuple[str, float, np.ndarray]], r: int) -> np.ndarray:
        total = sum(w for _, w, _ in updates)
        return function.aggregate(name, base, [Contribution(n, w / total, lambda u=u: u) for n, w, u in updates], r)
    return aggregate


def median(name: str, base: np.ndarray, updates: list[tuple[str, float, np.ndarray]], r: int) -> np.ndarray:
    return np.median(np.stack([u for _, _, u in updates]), axis=0)


def fedavgm(momentum: float, lr: float) -> Any:
    velocity: dict[str, np.ndarray] = {}

    def aggregate(name: str, base: np.ndarray, updates: list[tuple[str, float, np.ndarray]], r: int) -> np.ndarray:
        total = sum(w for _, w, _ in updates)
        mean = sum(w / total * u.astype(np.float64) for _, w, u in updates)
        velocity[name] = momentum * velocity.get(name, 0.0) + (mean - base)
        return base + lr * velocity[name]
    return aggregate


@pytest.mark.parametrize("template,settings", [
    ("fx_cli.aggregation.WeightedAverage", {}),
    ("fx_cli.aggregation.Median", {}),
    ("fx_cli.aggregation.GeometricMedian", {}),
    ("fx_cli.aggregation.FedAvgM", {"momentum": 0.5}),
    ("fx_cli.aggregation.FedAdam", {"learning_rate": 0.05}),
    ("fx_cli.aggregation.FedYogi", {"learning_rate": 0.05}),
    ("fx_cli.aggregation.FedAdagrad", {"learning_rate": 0.05}),
])
def test_each_aggregation_function_named_in_the_plan_gives_its_reference_model(
        tmp_path: Path, template: str, settings: dict[str, Any]) -> None:
    spec = {"template": template, "settings": settings}
    ws = make_workspace(tmp_path, NAMES, rounds=ROUNDS, shards=SHARDS, tasks=train_task(spec))
    run(ws)
    expected = reference_model(ws, SHARDS, ROUNDS, library_reference(spec))
    final = final_model(ws)
    for name in expected:
        np.testing.assert_allclose(final[name], expected[name], rtol=1e-5, atol=1e-6)
    fedavg = reference_model(ws, SHARDS, ROUNDS)  # sanity: only WeightedAverage equals plain FedAvg
    moved = max(float(np.abs(final[k] - fedavg[k]).max()) for k in final)
    assert (moved < 1e-5) == (template.endswith("WeightedAverage")), moved


def test_median_and_fedavgm_match_independent_numpy_formulas(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "median", NAMES, rounds=ROUNDS, shards=SHARDS,
                        tasks=train_task({"template": "fx_cli.aggregation.Median"}))
    run(ws)
    expected = reference_model(ws, SHARDS, ROUNDS, median)
    for name, array in final_model(ws).items():
        np.testing.assert_allclose(array, expected[name], rtol=1e-6, atol=1e-6)
    ws = make_workspace(tmp_path / "fedavgm", NAMES, rounds=ROUNDS, shards=SHARDS,
                        tasks=train_task({"template": "fx_cli.aggregation.FedAvgM",
                                          "settings": {"momentum": 0.5, "server_learning_rate": 1.0}}))
    run(ws)
    expected = reference_model(ws, SHARDS, ROUNDS, fedavgm(0.5, 1.0))
    for name, array in final_model(ws).items():
        np.testing.assert_allclose(array, expected[name], rtol=1e-5, atol=1e-6)


def test_user_defined_aggregation_in_workspace_src_is_used(tmp_path: Path) -> None:
    spec = {"template": "src.trimmed.Largest", "settings": {}}
    ws = make_workspace(tmp_path, NAMES, rounds=2, shards=SHARDS, tasks=train_task(spec), prepare=lambda ws: (ws / "src" / "trimmed.py")
                        .write_text("import numpy as np\nfrom fx_cli.aggregation import AggregationFunction\n"
                                    "class Largest(AggregationFunction):\n"
                                    "    def aggregate(self, tensor_name, base, contributions, round_num):\n"
                                    "        return np.max(np.stack([c.load() for c in contributions]), axis=0)\n"))
    run(ws)
    expected = reference_model(ws, SHARDS, 2, lambda n, b, ups, r: np.max(np.stack([u for _, _, u in ups]), axis=0))
    for name, array in final_model(ws).items():
        np.testing.assert_allclose(array, expected[name], rtol=1e-6)


def bytes_in(ws: Path) -> int:
    return sum(json.loads(line)["bytes_in"] for line in (ws / "logs" / "aggregator_metrics.jsonl").read_text().splitlines())


@pytest.mark.parametrize("pipeline,delta,rtol,shrink", [
    ("fx_cli.compression.ZlibPipeline", False, 0.0, 0.95),  # random float32 barely compresses
    ("fx_cli.compression.Float16Pipeline", False, 2e-3, 0.55),
    ("fx_cli.compression.Int8QuantizationPipeline", True, 5e-2, 0.3),
])
def test_compressed_uploads_reach_the_reference_model(tmp_path: Path, pipeline: str, delta: bool, rtol: float,
                                                      shrink: float) -> None:
    plain = make_workspace(tmp_path / "plain", NAMES, rounds=2, num_params=4000, shards=SHARDS)
    run(plain)
    ws = make_workspace(tmp_path / "packed", NAMES, rounds=2, num_params=4000, shards=SHARDS,
                        compression_pipeline={"template": pipeline},
                        collaborator={"use_delta_updates": delta})
    run(ws)
    expected = reference_model(ws, SHARDS, 2)
    for name, array in final_model(ws).items():
        if rtol == 0.0:
            np.testing.assert_array_equal(array, final_model(plain)[name])  # lossless: bit-identical to no compression
        else:
            np.testing.assert_allclose(array, expected[name], rtol=rtol, atol=rtol)
    assert bytes_in(ws) < shrink * bytes_in(plain)
