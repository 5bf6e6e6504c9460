"""Plan switches of the runtime: the final evaluation and the number of concurrent model transfers."""
from __future__ import annotations

import json
import logging
import re

import numpy as np

from tests.runtime_helpers import final_model, make_workspace, reference_fedavg, run_in_process

THREE = ["one", "two", "three"]


def records(ws) -> list[dict]:
    return [json.loads(line) for line in (ws / "logs" / "aggregator_metrics.jsonl").read_text().splitlines()]


def peak_transfers(caplog, ws, limit: int) -> int:
    fx_log = logging.getLogger("fx")
    fx_log.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="fx"):
            out = run_in_process(ws, THREE)
    finally:
        fx_log.removeHandler(caplog.handler)
    assert not out.errors, out.errors
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("model transfers:")]
    peak, configured = map(int, re.findall(r"\d+", line))
    assert configured == limit
    return peak


def test_one_transfer_at_a_time_still_gives_the_weighted_average(tmp_path, caplog):
    # A large model in small chunks keeps transfers overlapping if the limit lets them.
    ws = make_workspace(tmp_path, THREE, tls=False, rounds=2, num_params=200_000,
                        network={"max_concurrent_transfers": 1})
    assert peak_transfers(caplog, ws, 1) == 1
    expected = reference_fedavg(ws, {n: i + 1 for i, n in enumerate(THREE)}, 2)
    for name, array in final_model(ws).items():
        np.testing.assert_allclose(array, expected[name], rtol=1e-6, atol=1e-6)  # float32 vs float64 reference
    assert [r["final"] for r in records(ws)] == [False, False, True]


def test_the_transfer_limit_allows_parallel_transfers_when_raised(tmp_path, caplog):
    ws = make_workspace(tmp_path, THREE, tls=False, rounds=2, num_params=200_000,
                        network={"max_concurrent_transfers": 3})
    assert peak_transfers(caplog, ws, 3) >= 2


def test_final_evaluation_can_be_switched_off(tmp_path):
    ws = make_workspace(tmp_path, THREE[:2], tls=False, rounds=2, aggregator={"final_evaluation": False})
    out = run_in_process(ws, THREE[:2])
    assert not out.errors, out.errors
    assert [(r["round"], r["final"]) for r in records(ws)] == [(1, False), (2, False)]
    assert (ws / "save" / "last.pbuf").is_file()
