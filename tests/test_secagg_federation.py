"""Secure aggregation in real federations: gRPC over mutual TLS on loopback, certificates from fx's own CA."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fx_cli.secagg.quantize import quantization_bound
from tests.runtime_helpers import final_model, make_workspace, reference_fedavg, run_in_process

NAMES = ["one", "two", "three", "four", "five"]
SHARDS = {n: i + 1 for i, n in enumerate(NAMES)}
SECAGG = {"threshold": 3, "clipping_range": 4.0, "quantization_bits": 24}


def secagg_workspace(root: Path, rounds: int = 2, **sections: dict) -> Path:
    return make_workspace(root, list(sections.pop("names", NAMES)), rounds=rounds, shards=SHARDS, num_params=3000,
                          aggregator={"secure_aggregation": True}, secure_aggregation=SECAGG,
                          **sections)


def test_five_collaborators_over_mtls_equal_plain_fedavg_within_the_quantisation_bound(tmp_path: Path) -> None:
    ws = secagg_workspace(tmp_path)
    out = run_in_process(ws, NAMES, timeout=180)
    assert not out.errors, out.errors
    want, got = reference_fedavg(ws, SHARDS, 2), final_model(ws)
    bound = 2 * quantization_bound(4.0, 24) + 1e-6  # two rounds of rounding, plus float32
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=bound)
    assert any(not np.array_equal(got[k], want[k]) for k in want)  # it really went through quantisation
    records = [json.loads(x) for x in (ws / "logs" / "aggregator_metrics.jsonl").read_text().splitlines()]
    assert [r["participants"] for r in records if not r["final"]] == [sorted(NAMES)] * 2


def dropout_run(tmp_path: Path, threshold: int) -> tuple[Path, dict[str, int], dict[str, str]]:
    """Five collaborators as processes; 'two' is killed after advertising its keys (before sharing them),
    'four' after sharing them (before its masked update)."""
    from tests.fault_helpers import processes

    settings = dict(SECAGG, threshold=threshold)
    ws = make_workspace(tmp_path, NAMES, rounds=2, shards=SHARDS, num_params=3000,
                        aggregator={"secure_aggregation": True, "heartbeat_timeout": 10},
                        secure_aggregation=settings, network={"reconnect_deadline": 60},
                        straggler_handling_policy={"template": "fx_cli.aggregator.stragglers.PercentagePolicy",
                                                   "percent_collaborators_needed": 0.6})
    faults = {"two": "collaborator:secagg_advertised", "four": "collaborator:secagg_shared"}
    with processes(ws) as procs:
        started = [procs.aggregator()] + [procs.collaborator(n, fault=faults.get(n)) for n in NAMES]
        codes = {p.name: p.wait(240) for p in started}
        outputs = {p.name: p.output() for p in started}
    return ws, codes, outputs


def test_dropouts_before_and_after_sharing_keys_still_give_the_survivors_sum(tmp_path: Path) -> None:
    from tests.runtime_helpers import reference_model

    ws, codes, outputs = dropout_run(tmp_path, threshold=3)
    assert codes == {"aggregator": 0, "one": 0, "two": -9, "three": 0, "four": -9, "five": 0}, outputs
    alive = ["five", "one", "three"]
    want = reference_model(ws, SHARDS, 2, trainers=lambda r: alive)
    got = final_model(ws)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=2 * quantization_bound(4.0, 24) + 1e-6)


def test_below_the_threshold_the_round_fails_clearly_and_reveals_nothing(tmp_path: Path) -> None:
    ws, codes, outputs = dropout_run(tmp_path, threshold=4)
    assert codes["aggregator"] != 0
    assert "3 masked updates arrived, fewer than the threshold 4" in " ".join(outputs["aggregator"].split())
    assert "no individual update is revealed" in " ".join(outputs["aggregator"].split())
    assert not (ws / "save" / "last.pbuf").exists()  # no round was completed, nothing aggregated was written


def test_aggregator_killed_while_unmasking_redoes_the_round_and_ends_with_the_plain_sum(tmp_path: Path) -> None:
    from tests.fault_helpers import killed, processes

    names = NAMES[:3]
    ws = make_workspace(tmp_path, names, rounds=2, shards=SHARDS, num_params=3000,
                        aggregator={"secure_aggregation": True}, secure_aggregation=dict(SECAGG, threshold=2),
                        network={"reconnect_deadline": 60})
    with processes(ws) as procs:
        first = procs.aggregator(fault="aggregator:secagg_unmasking")
        cols = [procs.collaborator(n) for n in names]
        killed(first)
        second = procs.aggregator()
        assert second.wait(240) == 0, second.output()
        for col in cols:
            assert col.wait(240) == 0, col.output()
    assert "round 1 is redone" in " ".join(second.output().split())
    want, got = reference_fedavg(ws, {n: SHARDS[n] for n in names}, 2), final_model(ws)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=2 * quantization_bound(4.0, 24) + 1e-6)
