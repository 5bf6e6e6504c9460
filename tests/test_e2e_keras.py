"""The main job end to end: keras/digits, two sites in their own folders, real processes over mutual TLS.

Covers issue 4's acceptance (accuracy >= 0.90, the saved final model gives the same accuracy when
loaded independently) and issue 5's (export/import between sites, `fx model save` to a `.keras` file
that plain Keras evaluates, `fx_cli.get_model` in-process), along the README's workflow.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

import fx_cli
from scripts import demo
from tests.keras_helpers import check_saved_model, held_out_set
from tests.runtime_helpers import free_port, run_federation

pytestmark = [pytest.mark.slow, pytest.mark.tensorflow]


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    agg, sites = demo.prepare(root, "keras/digits", port=free_port())
    run = run_federation(agg, sites, timeout=600)
    assert run.codes == {"aggregator": 0, "one": 0, "two": 0}, run.outputs
    records = [json.loads(line) for line in (agg / "logs" / "aggregator_metrics.jsonl").read_text().splitlines()]
    return agg, sites, records


def test_three_rounds_reach_90_percent_and_the_final_model_is_saved(federation):
    agg, sites, records = federation
    rounds = [r for r in records if not r["final"]]
    (final,) = [r for r in records if r["final"]]
    assert [r["round"] for r in rounds] == [1, 2, 3]
    assert all(sorted(r["participants"]) == ["one", "two"] for r in rounds), rounds
    assert demo.accuracy_of(final) >= 0.90, final
    assert (agg / "save" / "last.pbuf").is_file() and (agg / "save" / "best.pbuf").is_file()
    for name, site in sites.items():
        assert (site / "logs" / f"{name}_metrics.jsonl").is_file()
        assert not (site / "save" / "last.pbuf").exists()  # models are the aggregator's


def test_saved_final_model_loaded_with_plain_keras_gives_the_same_accuracy(federation):
    agg, _, records = federation
    (final,) = [r for r in records if r["final"]]
    check_saved_model(agg, agg / "save" / "last.pbuf", demo.accuracy_of(final), tol=0.005)


def test_get_model_returns_a_keras_model_with_the_final_weights(federation):
    agg, _, records = federation
    (final,) = [r for r in records if r["final"]]
    runner = fx_cli.get_model(plan=str(agg / "plan" / "plan.yaml"), model=str(agg / "save" / "last.pbuf"))
    x, y = held_out_set(agg)
    predicted = np.argmax(runner.model.predict(x, verbose=0), axis=1)
    assert abs(float(np.mean(predicted == y)) - demo.accuracy_of(final)) <= 0.005
