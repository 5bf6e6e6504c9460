"""Every built-in estimator, noise off, equals numpy on the pooled data (3 sites by rows, 2 by a column)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fx_cli.analytics.limits import SiteLimits
from fx_cli.analytics.local import run_local
from fx_cli.analytics.table import from_columns
from fx_cli.errors import FxError
from tests.analytics_helpers import diabetes_columns, split_rows

COLS = diabetes_columns()
OLD = COLS["age"] > 50


def open_limits(tables: dict[str, Any]) -> dict[str, SiteLimits]:
    """Sites that release every cell (min_count 0: the plan alone cannot lower it)."""
    return {s: SiteLimits(min_count=0) for s in tables}


def pooled_group(values: np.ndarray, fn: Any) -> dict[str, float]:
    return {str(int(g)): float(fn(values[COLS["sex"] == g])) for g in (1.0, 2.0)}


QUERIES: list[tuple[dict[str, Any], Any]] = [
    ({"estimator": "count"}, len(COLS["age"])),
    ({"estimator": "count", "filters": [["age", ">", 50], ["sex", "==", 2]]}, int((OLD & (COLS["sex"] == 2)).sum())),
    ({"estimator": "group_count", "by": "sex"}, pooled_group(COLS["age"], len)),
    ({"estimator": "sum", "column": "progression"}, COLS["progression"].sum()),
    ({"estimator": "mean", "column": "bmi"}, COLS["bmi"].mean()),
    ({"estimator": "mean", "column": "bmi", "filters": [{"column": "age", "operator": "greater_equal", "value": 50}]},
     COLS["bmi"][COLS["age"] >= 50].mean()),
    ({"estimator": "group_mean", "column": "bp", "by": "sex"}, pooled_group(COLS["bp"], np.mean)),
    ({"estimator": "variance", "column": "s1"}, np.var(COLS["s1"], ddof=1)),
    ({"estimator": "variance", "column": "s1", "ddof": 0}, np.var(COLS["s1"])),
    ({"estimator": "std", "column": "progression", "filters": [["sex", "in", [1]]]},
     np.std(COLS["progression"][COLS["sex"] == 1], ddof=1)),
    ({"estimator": "std", "column": "bmi", "by": "sex"}, pooled_group(COLS["bmi"], lambda v: np.std(v, ddof=1))),
    ({"estimator": "histogram", "column": "age", "bins": 4, "range": [19, 79]},
     np.histogram(COLS["age"], bins=4, range=(19, 79))[0]),
    ({"estimator": "quantiles", "column": "bmi", "q": [0, 0.1, 0.25, 0.5, 0.9, 1]},
     np.quantile(COLS["bmi"], [0, 0.1, 0.25, 0.5, 0.9, 1])),
    ({"estimator": "quantiles", "column": "s5", "q": [0.33, 0.5]}, np.quantile(COLS["s5"], [0.33, 0.5])),
]


def value_of(result: dict[str, Any], spec: dict[str, Any]) -> Any:
    assert not result["refused"] and not result["suppressed"], result
    if spec["estimator"] == "histogram":
        return np.array(result["counts"])
    if spec["estimator"] == "quantiles":
        return np.array(list(result["quantiles"].values()))
    if "groups" in result:
        return {g: v["value"] for g, v in result["groups"].items()}
    return result["value"]


def check(results: dict[str, Any], masked: bool = False) -> None:
    rtol = 1e-8 if masked else 1e-9  # masked sums are fixed-point with 2**-24 resolution
    for i, (spec, expected) in enumerate(QUERIES):
        if masked and spec["estimator"] == "quantiles":
            continue
        got = value_of(results[f"q{i}"], spec)
        if isinstance(expected, dict):
            assert got.keys() == expected.keys()
            for g in expected:
                assert math.isclose(got[g], expected[g], rel_tol=rtol), (spec, g)
        else:
            np.testing.assert_allclose(got, expected, rtol=rtol, err_msg=str(spec))


def named(masked: bool = False) -> list[dict[str, Any]]:
    out = []
    for i, (spec, _) in enumerate(QUERIES):
        if masked and spec["estimator"] == "quantiles":
            continue
        extra = {"masked": True} if masked else {}
        if masked and spec.get("by"):
            extra["groups"] = ["1", "2"]
        out.append({**spec, "name": f"q{i}", **extra})
    return out


def test_every_estimator_equals_numpy_on_pooled_data_three_sites_by_rows(tmp_path: Path) -> None:
    check(run_local(split_rows(COLS, 3), named(), tmp_path))


def test_every_estimator_equals_numpy_with_sites_split_by_a_column(tmp_path: Path) -> None:
    tables = {f"site-{int(g)}": from_columns({k: v[COLS["sex"] == g] for k, v in COLS.items()}) for g in (1.0, 2.0)}
    check(run_local(tables, named(), tmp_path, limits=open_limits(tables)))


def test_masked_totals_equal_numpy(tmp_path: Path) -> None:
    check(run_local(split_rows(COLS, 3), named(masked=True), tmp_path), masked=True)


def test_quantile_search_is_exact_with_ties_and_many_sites(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.integers(0, 5, 200).astype(float), rng.normal(size=300), [1e9, -1e9]])
    tables = split_rows({"x": values}, 5)
    q = [0, 0.01, 0.2, 0.5, 0.77, 0.999, 1]
    res = run_local(tables, [{"estimator": "quantiles", "column": "x", "q": q, "name": "x"}], tmp_path)
    np.testing.assert_allclose(list(res["x"]["quantiles"].values()), np.quantile(values, q), rtol=1e-12)


def test_text_filters_and_unknown_columns(tmp_path: Path) -> None:
    tables = {"a": from_columns({"ward": ["x", "y", "x"], "v": [1.0, 2.0, 4.0]}),
              "b": from_columns({"ward": ["y", "x"], "v": [8.0, 16.0]})}
    res = run_local(tables, [{"estimator": "sum", "column": "v", "filters": [["ward", "==", "x"]], "name": "s"},
                             {"estimator": "count", "filters": [["ward", "not in", ["x"]]], "name": "c"}],
                    tmp_path, limits=open_limits(tables))
    assert res["s"]["value"] == 21.0 and res["c"]["value"] == 2.0
    with pytest.raises(FxError, match="no column 'wrd'"):
        run_local(tables, [{"estimator": "count", "filters": [["wrd", "==", "x"]]}], tmp_path)
    with pytest.raises(FxError, match="text columns only support"):
        run_local(tables, [{"estimator": "count", "filters": [["ward", "<", "x"]]}], tmp_path)


@pytest.mark.parametrize("query, message", [
    ({"estimator": "median"}, "is not one of"),
    ({"estimator": "mean"}, "needs 'column'"),
    ({"estimator": "group_mean", "column": "bmi"}, "needs 'by'"),
    ({"estimator": "histogram", "column": "bmi"}, "needs 'range"),
    ({"estimator": "mean", "column": "bmi", "noise": {"epsilon": 1}}, "needs 'bounds"),
    ({"estimator": "count", "noise": {"mechanism": "gaussian", "epsilon": 1}}, "needs 0 < delta < 1"),
    ({"estimator": "count", "by": "sex", "masked": True}, "needs 'groups"),
    ({"estimator": "count", "colour": 1}, "unknown key"),
    ({"estimator": "count", "filters": [["age", "~", 1]]}, "unknown operator"),
])
def test_bad_queries_are_named(tmp_path: Path, query: dict[str, Any], message: str) -> None:
    with pytest.raises(FxError, match=message):
        run_local(split_rows(COLS, 2), [query], tmp_path)
