"""Stateless aggregation functions against independent reference computations."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from scipy.optimize import minimize

from fx_cli.aggregation import Contribution, FedAdam, GeometricMedian, Median, WeightedAverage
from fx_cli.aggregation import buffer
from fx_cli.aggregation.base import file_slice_reader
from fx_cli.errors import FxError
from tests.aggregation_helpers import LoadTracker, contributions

WEIGHTS = [100.0, 30.0, 250.0, 45.0, 75.0]


def _updates(shape=(7, 5), n=5, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=shape).astype(dtype) for _ in range(n)]


def test_weighted_average_matches_numpy_average_with_unequal_weights():
    ups = _updates()
    base = np.zeros((7, 5), np.float32)
    out = WeightedAverage().aggregate("w", base, contributions(ups, WEIGHTS), 1)
    expected = np.average(np.stack(ups).astype(np.float64), axis=0, weights=WEIGHTS)
    assert out.dtype == np.float32 and out.shape == (7, 5)
    np.testing.assert_allclose(out, expected, rtol=2e-6, atol=1e-7)


def test_weighted_average_in_float64_is_within_half_an_ulp_of_the_exact_average():
    ups = _updates(seed=3)
    out = WeightedAverage(accumulate_float64=True).aggregate("w", np.zeros((7, 5), np.float32),
                                                             contributions(ups, WEIGHTS), 1)
    expected = sum(np.float64(w) / sum(WEIGHTS) * u.astype(np.float64) for u, w in zip(ups, WEIGHTS))
    np.testing.assert_allclose(out, expected, rtol=2.0**-24, atol=0)


def test_weighted_average_keeps_base_dtype_and_rounds_integer_tensors():
    ints = [np.array([1, 2, 10]), np.array([2, 2, 11]), np.array([4, 3, 13])]
    out = WeightedAverage().aggregate("steps", np.zeros(3, np.int64), contributions(ints, [1, 1, 2]), 1)
    assert out.dtype == np.int64
    assert out.tolist() == [round(11 / 4), round(10 / 4), round(47 / 4)]
    halves = [np.ones((2, 2), np.float16), np.full((2, 2), 3, np.float16)]
    out16 = WeightedAverage().aggregate("h", np.zeros((2, 2), np.float16), contributions(halves, [1, 3]), 1)
    assert out16.dtype == np.float16 and np.all(out16 == 2.5)


def test_weighted_average_handles_scalars_and_empty_tensors():
    scalars = [np.array(1.0, np.float32), np.array(5.0, np.float32)]
    out = WeightedAverage().aggregate("s", np.array(0.0, np.float32), contributions(scalars, [3, 1]), 1)
    assert out.shape == () and float(out) == 2.0
    empty = [np.zeros((0, 4), np.float32)] * 2
    out = WeightedAverage().aggregate("e", np.zeros((0, 4), np.float32), contributions(empty, [1, 1]), 1)
    assert out.shape == (0, 4)


def test_weighted_average_loads_each_update_once_and_one_at_a_time():
    tracker = LoadTracker()
    ups = _updates(shape=(3000,), n=12)
    WeightedAverage().aggregate("w", np.zeros(3000, np.float32), contributions(ups, [1.0] * 12, tracker), 1)
    assert tracker.loads == 12 and set(tracker.per_name.values()) == {1}
    assert tracker.max_live == 1 and tracker.live == 0


def test_weighted_average_memory_does_not_grow_with_the_number_of_collaborators():
    size = 1 << 20  # 4 MiB of float32 per update
    ups = [np.full(size, i, np.float32) for i in range(16)]
    cs = contributions(ups, [1.0] * 16)
    base = np.zeros(size, np.float32)
    tracemalloc.start()
    try:
        out = WeightedAverage().aggregate("big", base, cs, 1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert float(out[0]) == pytest.approx(7.5)
    # accumulator + one loaded update + scratch slice: about 3 tensors, not 16
    assert peak < 3.5 * size * 4, peak


def test_weighted_average_is_deterministic_for_the_same_ordered_inputs():
    ups = _updates(shape=(999,), n=8, seed=9)
    first = WeightedAverage().aggregate("w", np.zeros(999, np.float32), contributions(ups, [3, 1, 4, 1, 5, 9, 2, 6]), 1)
    again = WeightedAverage().aggregate("w", np.zeros(999, np.float32), contributions(ups, [3, 1, 4, 1, 5, 9, 2, 6]), 1)
    assert first.tobytes() == again.tobytes()


def _reference_weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """Midpoint of the minimisers of sum_i w_i |x_i - z| over candidate points (brute force)."""
    costs = [float(np.sum(weights * np.abs(values - z))) for z in values]
    best = min(costs)
    minimisers = [z for z, c in zip(values, costs) if c <= best + 1e-12]
    return (min(minimisers) + max(minimisers)) / 2


def test_median_is_the_unweighted_coordinate_median():
    ups = _updates(n=5) + _updates(n=2, seed=1)
    out = Median().aggregate("m", np.zeros((7, 5), np.float32), contributions(ups, [1, 2, 3, 4, 5, 6, 7]), 1)
    ranked = np.sort(np.stack(ups), axis=0)  # 7 rows: the 4th is the median
    np.testing.assert_array_equal(out, ranked[3])


def test_weighted_median_minimises_the_weighted_absolute_deviation():
    ups = _updates(shape=(6, 4), n=5, seed=4)
    out = Median(weighted=True).aggregate("m", np.zeros((6, 4), np.float32), contributions(ups, WEIGHTS), 1)
    stack = np.stack(ups).reshape(5, -1).astype(np.float64)
    w = np.asarray(WEIGHTS) / sum(WEIGHTS)
    expected = [_reference_weighted_median(stack[:, j], w) for j in range(stack.shape[1])]
    np.testing.assert_allclose(out.reshape(-1), expected, rtol=1e-6)


def test_weighted_median_ties_take_the_midpoint_and_skip_zero_weights():
    ups = [np.array([1.0, 1.0], np.float32), np.array([2.0, 5.0], np.float32),
           np.array([4.0, 9.0], np.float32), np.array([8.0, 10.0], np.float32)]
    equal = Median(weighted=True).aggregate("t", np.zeros(2, np.float32), contributions(ups, [1, 1, 1, 1]), 1)
    np.testing.assert_array_equal(equal, np.median(np.stack(ups), axis=0))
    zero_middle = Median(weighted=True).aggregate("t", np.zeros(2, np.float32), contributions(ups, [2, 0, 1, 1]), 1)
    assert zero_middle.tolist() == [(1.0 + 4.0) / 2, (1.0 + 9.0) / 2]


def test_median_nan_in_an_update_makes_that_element_nan():
    ups = [np.array([1.0, np.nan], np.float32), np.array([2.0, 3.0], np.float32), np.array([3.0, 4.0], np.float32)]
    for fn in (Median(), Median(weighted=True)):
        out = fn.aggregate("n", np.zeros(2, np.float32), contributions(ups, [1, 1, 1]), 1)
        assert out[0] == 2.0 and np.isnan(out[1])


def test_median_spilled_to_disk_in_slices_equals_in_memory(monkeypatch):
    ups = _updates(shape=(33, 17), n=6, seed=5)
    base = np.zeros((33, 17), np.float32)
    in_memory = Median(weighted=True).aggregate("m", base, contributions(ups, [1, 2, 3, 4, 5, 6]), 1)
    monkeypatch.setattr(buffer, "SLICE_ELEMENTS", 50)  # many column slices
    spilled = Median(weighted=True, spill_mb=0).aggregate("m", base, contributions(ups, [1, 2, 3, 4, 5, 6]), 1)
    np.testing.assert_array_equal(in_memory, spilled)


def test_spill_matrix_is_a_disk_memory_map_above_the_threshold(tmp_path):
    ups = _updates(shape=(10,), n=3)
    cs = contributions(ups, [1, 1, 1])
    stack = buffer.stack_updates("m", (10,), np.dtype(np.float32), cs, spill_mb=0, spill_dir=str(tmp_path))
    assert isinstance(stack, np.memmap)
    np.testing.assert_array_equal(np.asarray(stack), np.stack(ups))
    assert list(tmp_path.iterdir()) == []  # anonymous: nothing is left behind


def _objective(z, points, w):
    return float(np.sum(w * np.linalg.norm(points - z, axis=1)))


def test_geometric_median_minimises_the_weighted_distance_sum():
    ups = _updates(shape=(2, 3), n=5, seed=6)
    fn = GeometricMedian(maxiter=1000, eps=1e-12, ftol=1e-14)
    out = fn.aggregate("g", np.zeros((2, 3), np.float32), contributions(ups, WEIGHTS), 1)
    points = np.stack(ups).reshape(5, -1).astype(np.float64)
    w = np.asarray(WEIGHTS) / sum(WEIGHTS)
    start = np.median(points, axis=0)
    ref = minimize(_objective, start, args=(points, w), method="Nelder-Mead",
                   options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 40000, "maxfev": 40000})
    assert _objective(out.reshape(-1).astype(np.float64), points, w) <= ref.fun + 1e-6
    np.testing.assert_allclose(out.reshape(-1), ref.x, atol=1e-4)


def _reference_weiszfeld(points, w, maxiter, eps):
    """Plain loop over collaborators, no early stop (ftol=0 on our side)."""
    z = sum(wi * p for wi, p in zip(w, points))
    for _ in range(maxiter):
        betas = [wi / max(eps, float(np.sqrt(np.sum((p - z) ** 2)))) for wi, p in zip(w, points)]
        z = sum(b * p for b, p in zip(betas, points)) / sum(betas)
    return z


def test_geometric_median_follows_weiszfeld_steps_exactly():
    ups = _updates(shape=(4, 4), n=5, seed=8)
    fn = GeometricMedian(maxiter=3, eps=1e-5, ftol=0.0)
    out = fn.aggregate("g", np.zeros((4, 4), np.float32), contributions(ups, WEIGHTS), 1)
    assert fn.last_iterations == 3
    w = [x / sum(WEIGHTS) for x in WEIGHTS]
    expected = _reference_weiszfeld([u.reshape(-1).astype(np.float64) for u in ups], w, 3, 1e-5)
    np.testing.assert_allclose(out.reshape(-1), expected, rtol=1e-6, atol=1e-7)


def test_geometric_median_resists_an_outlier_that_drags_the_mean(monkeypatch):
    rng = np.random.default_rng(2)
    honest = [np.ones(50, np.float32) + 0.01 * rng.normal(size=50).astype(np.float32) for _ in range(4)]
    attacker = [np.full(50, 1000.0, np.float32)]
    cs = lambda: contributions(honest + attacker, [1, 1, 1, 1, 1])  # noqa: E731
    mean = WeightedAverage().aggregate("g", np.zeros(50, np.float32), cs(), 1)
    monkeypatch.setattr(buffer, "SLICE_ELEMENTS", 20)
    geo = GeometricMedian(spill_mb=0).aggregate("g", np.zeros(50, np.float32), cs(), 1)
    assert np.all(mean > 150)
    assert np.all(np.abs(geo - 1.0) < 0.1)


def test_no_contributions_is_an_error_naming_the_tensor_and_round():
    for fn in (WeightedAverage(), Median(), GeometricMedian()):
        with pytest.raises(FxError, match="'dense/kernel' in round 4"):
            fn.aggregate("dense/kernel", np.zeros(3, np.float32), [], 4)


def test_update_with_the_wrong_shape_names_the_collaborator():
    cs = [Contribution("alice", 0.5, lambda: np.zeros(3, np.float32)),
          Contribution("bob", 0.5, lambda: np.zeros(4, np.float32))]
    for fn in (WeightedAverage(), Median(), GeometricMedian()):
        with pytest.raises(FxError, match=r"'bob' sent tensor 'w' with shape \(4,\)") as err:
            fn.aggregate("w", np.zeros(3, np.float32), cs, 1)
        assert err.value.hint


def test_negative_weight_is_refused():
    cs = [Contribution("alice", -1.0, lambda: np.zeros(3, np.float32))]
    with pytest.raises(FxError, match="'alice' has weight -1.0"):
        WeightedAverage().aggregate("w", np.zeros(3, np.float32), cs, 1)


def _spilled(tmp_path, updates, weights):
    """Contributions read slice by slice from raw spill files; ``load`` must never be called."""
    def never() -> np.ndarray:
        raise AssertionError("load() called although read_slice was given")

    total = sum(weights)
    out = []
    for i, (u, w) in enumerate(zip(updates, weights)):
        path = tmp_path / f"col_{i}.bin"
        u.astype("<f4").tofile(path)
        out.append(Contribution(f"col_{i}", w / total, never, file_slice_reader(path, np.float32)))
    return out


def test_sliced_reads_give_the_same_result_as_whole_loads(tmp_path):
    ups = _updates(shape=(123, 45), n=5, seed=11)
    base = np.zeros((123, 45), np.float32)
    for make in (WeightedAverage, Median, GeometricMedian, lambda: Median(weighted=True), FedAdam):
        whole = make().aggregate("w", base, contributions(ups, WEIGHTS), 1)
        sliced = make().aggregate("w", base, _spilled(tmp_path, ups, WEIGHTS), 1)
        assert whole.tobytes() == sliced.tobytes()


def test_sliced_weighted_average_never_holds_a_whole_update(tmp_path):
    size = 4 << 20  # 16 MiB per update, four fold slices
    ups = [np.full(size, i, np.float32) for i in range(3)]
    cs = _spilled(tmp_path, ups, [1, 1, 2])
    del ups
    base = np.zeros(size, np.float32)
    tracemalloc.start()
    try:
        out = WeightedAverage().aggregate("big", base, cs, 1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert float(out[-1]) == pytest.approx(1.25)
    # the accumulator (which becomes the result) plus one slice and the scratch slice
    assert peak < 1.6 * size * 4, peak


def test_short_spill_file_names_the_collaborator(tmp_path):
    cs = _spilled(tmp_path, [np.ones(10, np.float32), np.ones(10, np.float32)], [1, 1])
    (tmp_path / "col_1.bin").write_bytes(b"\0" * 12)
    with pytest.raises(FxError, match="spill file .*col_1.bin ends after 3 elements"):
        WeightedAverage().aggregate("w", np.zeros(10, np.float32), cs, 1)
    bad = [Contribution("carol", 1.0, lambda: np.zeros(4), lambda a, b: np.zeros(1))]
    with pytest.raises(FxError, match="'carol' update of tensor 'w' gave 1 elements for \\[0, 4\\)"):
        WeightedAverage().aggregate("w", np.zeros(4, np.float32), bad, 1)
