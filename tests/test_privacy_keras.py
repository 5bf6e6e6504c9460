"""Central DP on keras/digits still trains: the same federation with and without DP, real processes over mTLS.

The accuracy of both runs is printed (``-s``) for the closing note of the privacy issue.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.runtime_helpers import edit_plan, free_port, fx_in, run_federation

pytestmark = [pytest.mark.slow, pytest.mark.tensorflow]
NAMES = ["one", "two", "three", "four"]
ROUNDS = 6


def keras_workspace(root: Path, privacy: dict[str, Any] | None) -> Path:
    ws = root / "ws"
    root.mkdir(parents=True, exist_ok=True)
    fx_in(root, "workspace", "create", "--prefix", str(ws), "--template", "keras/digits")
    sections: dict[str, dict[str, Any]] = {
        "network": {"agg_addr": "localhost", "agg_port": free_port(), "client_reconnect_interval": 0.2},
        "aggregator": {"rounds_to_train": ROUNDS},
        "data_loader": {"collaborator_count": len(NAMES)}}
    if privacy:
        sections["privacy"] = privacy
    edit_plan(ws, **sections)
    (ws / "plan" / "data.yaml").write_text("".join(f"{n},{i + 1}\n" for i, n in enumerate(NAMES)))
    fx_in(ws, "plan", "initialize", "-a", "localhost")
    fx_in(ws, "workspace", "certify")
    fx_in(ws, "aggregator", "generate-cert-request", "--fqdn", "localhost")
    fx_in(ws, "aggregator", "certify", "--fqdn", "localhost", "-s")
    for name in NAMES:
        fx_in(ws, "collaborator", "generate-cert-request", "-n", name, "-s", "-x")
        fx_in(ws, "collaborator", "certify", "-n", name, "-s")
    from fx_cli.plan.participants import write_cols

    write_cols(ws / "plan" / "cols.yaml", NAMES)
    return ws


def final_accuracy(ws: Path) -> tuple[float, list[dict[str, Any]]]:
    records = [json.loads(x) for x in (ws / "logs" / "aggregator_metrics.jsonl").read_text().splitlines()]
    final = next(r for r in records if r["final"])
    return final["metrics"]["aggregated_model_validation/accuracy"], records


def test_central_dp_on_keras_digits_still_trains(tmp_path: Path) -> None:
    accuracies = {}
    for label, privacy in [("noise-free", None),
                           ("central DP", {"mode": "central", "clip_norm": 3.0, "noise_multiplier": 0.1})]:
        ws = keras_workspace(tmp_path / label.replace(" ", "_"), privacy)
        run = run_federation(ws, NAMES, timeout=900)
        assert run.ok, run.outputs
        accuracies[label], records = final_accuracy(ws)
        if privacy:
            last = [r for r in records if not r["final"]][-1]["privacy"]
            print(f"central DP: z={privacy['noise_multiplier']} C={privacy['clip_norm']} ε={last['epsilon']:.3g} "
                  f"(δ={last['delta']}) clipped per round: {[r['privacy']['clipped'] for r in records if not r['final']]}")
    print(f"keras/digits, {len(NAMES)} sites, {ROUNDS} rounds: accuracy {accuracies}")
    assert accuracies["noise-free"] >= 0.9
    # Measured 0.905 against 0.983 (z=0.3, C=1: 0.535). With 4 sites the noise on the average is z·C/4 per
    # weight: DP with a meaningful ε needs many more collaborators than a test can start.
    assert accuracies["central DP"] >= 0.75  # chance is 0.1
