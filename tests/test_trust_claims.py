"""Claims a collaborator makes (data size, metrics) are bounded before they weigh anything; robust aggregation
functions (trimmed mean, Krum / multi-Krum, norm bound) keep a minority of liars from moving the model."""
from __future__ import annotations

import math

import numpy as np
import pytest

from fx_cli.aggregation import Krum, NormBoundedAverage, TrimmedMean
from fx_cli.aggregator.claims import ClaimPolicy, effective_sizes, metric_problem, round_metrics
from fx_cli.aggregator.state import UpdateRecord
from tests.aggregation_helpers import contributions


def _rec(col: str, size: int, task: str = "train", **metrics: float) -> UpdateRecord:
    return UpdateRecord(0, col, task, size, dict(metrics))


# (claims of the liar, honest sizes): whatever the lie, its share of the weight stays bounded.
LIES = [2**53, 10**6, 10**12, 5_000]


@pytest.mark.parametrize("lie", LIES)
@pytest.mark.parametrize("honest", [[200], [200, 300], [100, 200, 400, 800]])
def test_clip_to_median_bounds_a_liars_share_of_fedavg(lie, honest):
    records = [_rec("liar", lie)] + [_rec(f"h{i}", s) for i, s in enumerate(honest)]
    sizes, clips = effective_sizes(records, ClaimPolicy("clip_to_median", 10.0))
    share = sizes[0] / math.fsum(sizes)
    assert share <= 10 / 11 + 1e-12  # at most multiple/(multiple+1), however large the claim
    if lie > 10 * sorted(honest + [lie])[(len(honest)) // 2]:
        assert clips and clips[0].collaborator == "liar" and clips[0].claimed == lie
    assert sizes[1:] == [float(s) for s in honest]  # honest claims are not touched


@pytest.mark.parametrize("lie", LIES)
def test_declared_maximum_caps_a_claim_and_equal_policy_ignores_claims(lie):
    records = [_rec("liar", lie), _rec("honest", 200)]
    sizes, clips = effective_sizes(records, ClaimPolicy("claimed", limits={"liar": 300, "*": 1000}))
    assert sizes == [300.0, 200.0] and clips[0].why.startswith("over its declared maximum of 300")
    sizes, _ = effective_sizes(records, ClaimPolicy("claimed", limits={"*": 250}))
    assert sizes == [250.0, 200.0]
    assert effective_sizes(records, ClaimPolicy("equal"))[0] == [1.0, 1.0]


def test_every_clipped_claim_is_handed_to_the_audit_hook():
    seen: list[tuple[str, dict[str, object]]] = []
    policy = ClaimPolicy("clip_to_median", 2.0, audit=lambda kind, **f: seen.append((kind, f)))
    policy.weights(4, [_rec("a", 100), _rec("b", 100), _rec("c", 10**9)])
    assert seen == [("data_size_clipped", {"round": 5, "collaborator": "c", "task": "train", "claimed": 10**9,
                                           "used": 200.0, "why": "over 2 x the round's median claim"})]


@pytest.mark.parametrize("value", [1e308, -1e308, 1e13, math.inf, -math.inf, math.nan])
def test_absurd_metrics_are_named(value):
    assert metric_problem("accuracy", value) is not None
    assert metric_problem("accuracy", 0.93) is None and metric_problem("loss", 12345.0) is None


@pytest.mark.parametrize("bad", [1e308, math.inf, math.nan, -1e300])
def test_round_metrics_never_overflow_and_drop_the_bad_value(bad, caplog):
    """Records saved by an older fx (before intake bounded metrics) must not crash the round end on resume."""
    records = [_rec("one", 100, "val", accuracy=bad), _rec("two", 100, "val", accuracy=0.5),
               _rec("three", 2**53, "val", accuracy=0.7)]
    metrics = round_metrics(records)
    assert math.isfinite(metrics["val/accuracy"]) and 0.5 <= metrics["val/accuracy"] <= 0.7
    assert "dropped metric 'accuracy'" in caplog.text and "'one'" in caplog.text


def test_round_metrics_of_two_huge_but_plausible_values_do_not_overflow():
    records = [_rec("a", 2**53, "val", loss=1e12), _rec("b", 2**53, "val", loss=1e12)]
    assert round_metrics(records) == {"val/loss": 1e12}


def _stack(honest: list[np.ndarray], liars: list[np.ndarray]) -> list[np.ndarray]:
    return honest + liars


HONEST = [np.full(6, v, np.float32) for v in (1.0, 1.1, 0.9, 1.05, 0.95)]
LIAR_VALUES = [np.full(6, 1000.0, np.float32), np.full(6, -1e30, np.float32),
               np.array([1e6, -1e6, 3e38, 0, 1, 2], np.float32)]


@pytest.mark.parametrize("liar", range(len(LIAR_VALUES)))
def test_trimmed_mean_ignores_one_liar_per_side(liar):
    updates = _stack(HONEST, [LIAR_VALUES[liar]])
    base = np.zeros(6, np.float32)
    out = TrimmedMean(trim_ratio=0.2).aggregate("w", base, contributions(updates, [1e9] + [1] * 5), 0)
    assert np.all(out >= 0.9) and np.all(out <= 1.1)


def test_trimmed_mean_without_trimming_is_the_mean():
    updates = [np.arange(4, dtype=np.float32) * k for k in (1, 2, 3)]
    out = TrimmedMean(trim_ratio=0.0, min_trim=0).aggregate("w", np.zeros(4, np.float32),
                                                            contributions(updates, [1, 1, 1]), 0)
    np.testing.assert_allclose(out, np.arange(4) * 2.0)


def _run_prepared(function, updates, base):
    tensors = {"a": (updates, base), "b": ([u[:3] for u in updates], base[:3])}
    def stream():
        for name, (ups, b) in tensors.items():
            yield name, b, contributions(ups, [1] * len(ups))
    function.prepare(stream(), 0)
    return {name: function.aggregate(name, b, contributions(ups, [1] * len(ups)), 0)
            for name, (ups, b) in tensors.items()}


@pytest.mark.parametrize("liar", range(len(LIAR_VALUES)))
@pytest.mark.parametrize("keep", [1, 3])
def test_krum_and_multi_krum_leave_out_the_liar(liar, keep):
    updates = _stack(HONEST, [LIAR_VALUES[liar]])
    krum = Krum(byzantine=1, keep=keep)
    out = _run_prepared(krum, updates, np.zeros(6, np.float32))
    assert "col_5" not in krum.selected and len(krum.selected) == keep
    assert np.all(out["a"] >= 0.9) and np.all(out["a"] <= 1.1)


@pytest.mark.parametrize("liar", range(len(LIAR_VALUES)))
def test_norm_bound_limits_how_far_one_update_moves_the_model(liar):
    updates = _stack(HONEST, [LIAR_VALUES[liar]])
    base = np.zeros(6, np.float32)
    fn = NormBoundedAverage(median_multiple=2.0)
    out = _run_prepared(fn, updates, base)
    assert fn.scale["col_5"] < 1.0 and all(fn.scale[f"col_{i}"] == 1.0 for i in range(5))
    # the liar moves the average by at most its weight times the bound (2 x the median norm)
    median_norm = float(np.linalg.norm(np.concatenate([HONEST[4], HONEST[4][:3]])))
    honest_mean = np.mean(HONEST, axis=0)
    assert np.linalg.norm(out["a"] - honest_mean * 5 / 6) <= 2 * median_norm / 6 + 1e-4


def test_norm_bound_with_a_fixed_maximum():
    updates = [np.full(4, 1.0, np.float32), np.full(4, 100.0, np.float32)]
    fn = NormBoundedAverage(max_norm=2.0, median_multiple=None)
    fn.prepare([("w", np.zeros(4, np.float32), contributions(updates, [1, 1]))], 0)
    out = fn.aggregate("w", np.zeros(4, np.float32), contributions(updates, [1, 1]), 0)
    np.testing.assert_allclose(out, np.full(4, 1.0), rtol=1e-6)  # (1 + 1) / 2: both clipped to norm 2


def test_the_metrics_file_stays_valid_json_whatever_reaches_it(tmp_path):
    from fx_cli.aggregator.metrics import append_jsonl
    import json

    path = tmp_path / "m.jsonl"
    append_jsonl(path, {"metrics": {"a": math.inf, "b": math.nan, "c": 0.5}, "list": [1.0, -math.inf]})
    assert json.loads(path.read_text()) == {"metrics": {"a": None, "b": None, "c": 0.5}, "list": [1.0, None]}


@pytest.mark.parametrize("lie", LIES)
def test_the_summed_data_size_a_region_reports_upstream_uses_the_bounded_claims(lie):
    from fx_cli.aggregator.combine import task_data_sizes

    records = [_rec("liar", lie), _rec("a", 100), _rec("b", 200), _rec("a", 50, "val")]
    bounded = task_data_sizes(records, ClaimPolicy("clip_to_median", 10.0))
    assert bounded["train"] <= 10 * 200 + 300 and bounded["val"] == 50
    assert task_data_sizes(records)["train"] == lie + 300  # without a policy: the claims as sent


def test_norm_bound_relative_to_a_zero_median_does_not_erase_the_real_updates():
    updates = [np.zeros(4, np.float32), np.zeros(4, np.float32), np.full(4, 2.0, np.float32)]
    fn = NormBoundedAverage(median_multiple=3.0)
    fn.prepare([("w", np.zeros(4, np.float32), contributions(updates, [1, 1, 1]))], 0)
    out = fn.aggregate("w", np.zeros(4, np.float32), contributions(updates, [1, 1, 1]), 0)
    np.testing.assert_allclose(out, np.full(4, 2.0 / 3), rtol=1e-6)
