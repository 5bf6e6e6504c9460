"""The site's guards: minimum count, noise, a budget kept across runs, limits the plan cannot loosen, masks."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fx_cli.analytics.budget import Ledger
from fx_cli.analytics.guard import SiteGuard
from fx_cli.analytics.limits import SiteLimits, load_limits
from fx_cli.analytics.local import run_local
from fx_cli.analytics.masking import Masker, public_bytes, site_key, to_fixed
from fx_cli.analytics.spec import parse_query
from fx_cli.analytics.tabular import TabularAnalyzer
from fx_cli.analytics.table import from_columns
from fx_cli.errors import FxError
from tests.analytics_helpers import diabetes_columns, split_rows

COLS = diabetes_columns()
TABLES = split_rows(COLS, 3)


def test_small_cells_are_suppressed_at_the_site_never_sent_and_reported(tmp_path: Path) -> None:
    # Ages over 75 are few: some sites hold fewer than 10 such rows in some sex group.
    query = {"estimator": "group_count", "by": "sex", "filters": [["age", ">", 70]], "name": "old"}
    spec = parse_query(query, 0)
    exact = {s: {g: int(((t.column("age") > 70) & (t.column("sex") == float(g))).sum()) for g in "12"}
             for s, t in TABLES.items()}
    small = {(s, g) for s, per in exact.items() for g, n in per.items() if 0 < n < 10}
    assert small, exact  # the data must contain a small cell for this test to mean anything
    for site, table in TABLES.items():
        guard = SiteGuard(site, SiteLimits(), Ledger(tmp_path / site / "ledger.db"), "run-1")
        body = guard.release(spec, table)
        sent = {c[0] for c in body["cells"]}
        assert all((site, g) not in small for g in sent)
        assert {(site, s[0]) for s in body["suppressed"]} == {(site, g) for g in "12" if (site, g) in small}
    res = run_local(TABLES, [query], tmp_path)["old"]
    assert {(s, g[0]) for s, cells in res["suppressed"].items() for g in cells} == small
    for g in "12":
        kept = [per[g] for s, per in exact.items() if (s, g) not in small and per[g] > 0]
        assert res["groups"][g]["value"] == (sum(kept) if kept else None)


def test_the_plan_can_tighten_but_not_loosen_the_minimum_count(tmp_path: Path) -> None:
    query = [{"estimator": "count", "filters": [["age", ">", 67]], "name": "c"}]
    n_old = [int((t.column("age") > 67).sum()) for t in TABLES.values()]
    assert min(n_old) < 10 <= max(n_old) and len(set(n_old)) == 3
    loose = run_local(TABLES, query, tmp_path, min_count=1)["c"]
    assert loose["value"] == sum(n for n in n_old if n >= 10)
    strict = run_local(TABLES, query, tmp_path, min_count=max(n_old))["c"]
    assert strict["value"] == max(n_old) and len(strict["suppressed"]) == 2


def test_noise_is_added_at_each_site_with_the_stated_epsilon(tmp_path: Path) -> None:
    queries = [{"estimator": "mean", "column": "bmi", "bounds": [15, 45], "name": "lap",
                "noise": {"mechanism": "laplace", "epsilon": 0.5}},
               {"estimator": "count", "name": "gau", "noise": {"mechanism": "gaussian", "epsilon": 0.5, "delta": 1e-6}}]
    res = run_local(TABLES, queries, tmp_path, limits={s: SiteLimits(max_epsilon_total=5) for s in TABLES})
    lap, gau = res["lap"], res["gau"]
    assert lap["noise"]["epsilon"] == 0.5 and lap["noise"]["scale"] == pytest.approx((1 + 45) / 0.5)  # L1 of (n, s)
    assert gau["noise"]["mechanism"] == "gaussian" and gau["noise"]["delta"] == 1e-6
    assert gau["value"] != 442.0 and abs(gau["value"] - 442) < 60  # σ ≈ 7.5 per site
    for site in TABLES:
        eps, delta = Ledger(tmp_path / site / "ledger.db").spent()
        assert eps == pytest.approx(1.0) and delta == pytest.approx(1e-6)


def test_budget_is_kept_across_runs_and_a_query_over_it_is_refused_with_what_is_left(tmp_path: Path) -> None:
    limits = {s: SiteLimits(max_epsilon_total=1.0) for s in TABLES}
    query = [{"estimator": "count", "name": "c", "noise": {"mechanism": "laplace", "epsilon": 0.6}}]
    first = run_local(TABLES, query, tmp_path, run="run-1", limits=limits)["c"]
    assert not first["refused"]
    replay = run_local(TABLES, query, tmp_path, run="run-1", limits=limits)["c"]
    assert replay["value"] == first["value"]  # the same stored release, not a fresh draw and not charged again
    second = run_local(TABLES, query, tmp_path, run="run-2", limits=limits)["c"]
    assert set(second["refused"]) == set(TABLES) and second["error"] == "no site answered"
    assert "left at this site: epsilon=0.4 of 1" in second["refused"]["site-1"]
    assert Ledger(tmp_path / "site-1" / "ledger.db").spent()[0] == pytest.approx(0.6)
    # The same name asking something else is a new query, charged (and here refused), not the stored answer.
    changed = [{**query[0], "filters": [["age", ">", 30]], "noise": {"mechanism": "laplace", "epsilon": 0.3}}]
    other = run_local(TABLES, changed, tmp_path, run="run-1", limits=limits)["c"]
    assert not other["refused"] and other["value"] != first["value"]
    assert Ledger(tmp_path / "site-1" / "ledger.db").spent()[0] == pytest.approx(0.9)


def test_site_limits_file_refuses_what_it_forbids(tmp_path: Path) -> None:
    limits_file = tmp_path / "limits.yaml"
    limits_file.write_text("min_count: 20\nmax_epsilon_per_query: 0.2\nrequire_noise: true\n")
    limits = load_limits(limits_file)
    assert limits == SiteLimits(min_count=20, max_epsilon_per_query=0.2, require_noise=True)
    per_site = {"site-1": limits, "site-2": SiteLimits(), "site-3": SiteLimits()}
    res = run_local(TABLES, [{"estimator": "count", "name": "exact"},
                             {"estimator": "count", "name": "big", "noise": {"epsilon": 0.5}},
                             {"estimator": "quantiles", "column": "bmi", "name": "q"}], tmp_path, limits=per_site)
    assert list(res["exact"]["refused"]) == ["site-1"] and "require_noise" in res["exact"]["refused"]["site-1"]
    assert res["exact"]["value"] == sum(t.n_rows for s, t in TABLES.items() if s != "site-1")
    assert "max_epsilon_per_query=0.2" in res["big"]["refused"]["site-1"]
    assert list(res["q"]["refused"]) == ["site-1"]
    for text, message in [("min_count: -1\n", "must be a number >= 0"), ("max_epsilon: 1\n", "unknown key"),
                          ("require_noise: 1\n", "true or false"), ("[1, 2]\n", "expected a mapping")]:
        limits_file.write_text(text)
        with pytest.raises(FxError, match=message):
            load_limits(limits_file)


def test_noisy_quantiles_and_too_many_histogram_bins_are_refused(tmp_path: Path) -> None:
    res = run_local(TABLES, [{"estimator": "quantiles", "column": "bmi", "name": "q", "noise": {"epsilon": 0.1}},
                             {"estimator": "histogram", "column": "age", "range": [19, 79], "bins": 20, "name": "h"}],
                    tmp_path)
    assert "will not add noise" in res["q"]["refused"]["site-1"]
    assert "20 histogram bins for 148 rows" in res["h"]["refused"]["site-1"]


def test_masked_releases_hide_site_values_with_fresh_masks_per_group(tmp_path: Path) -> None:
    tables = {s: from_columns({"g": ["a"] * 12 + ["b"] * 12, "v": [1.0] * 24}) for s in ("s1", "s2")}
    spec = parse_query({"estimator": "group_count", "by": "g", "groups": ["a", "b"], "masked": True, "name": "m"}, 0)
    (tmp_path / "keys").mkdir()
    keys = {s: site_key(tmp_path / "keys" / s, "nonce-1") for s in tables}
    assert public_bytes(site_key(tmp_path / "keys" / "s1", "nonce-1")) == public_bytes(keys["s1"])  # restart
    assert public_bytes(site_key(tmp_path / "keys" / "s1", "nonce-2")) != public_bytes(keys["s1"])  # next run
    assert (tmp_path / "keys" / "s1").stat().st_mode & 0o777 == 0o600
    pubs = {s: public_bytes(k) for s, k in keys.items()}
    bodies = [SiteGuard(s, SiteLimits(), Ledger(tmp_path / s / "l.db"), "r", Masker(s, keys[s], pubs, "r"))
              .release(spec, tables[s]) for s in tables]
    plain = to_fixed(np.array([12.0]), ("n",))
    for body in bodies:
        cells = {c[0]: c[2] for c in body["cells"]}
        assert not np.array_equal(cells["a"], plain) and not np.array_equal(cells["a"], cells["b"])
    with np.errstate(over="ignore"):
        total = bodies[0]["cells"][0][2] + bodies[1]["cells"][0][2]
    assert int(total[0]) == 24
    res = run_local(tables, [{**spec.raw}], tmp_path)["m"]
    assert res["groups"] == {"a": {"n": 24.0, "value": 24.0}, "b": {"n": 24.0, "value": 24.0}}


def test_a_masked_total_with_a_refusing_site_fails_instead_of_being_wrong(tmp_path: Path) -> None:
    limits = {"site-1": SiteLimits(require_noise=True), "site-2": SiteLimits(), "site-3": SiteLimits()}
    res = run_local(TABLES, [{"estimator": "sum", "column": "bmi", "masked": True, "name": "m"}], tmp_path,
                    limits=limits)["m"]
    assert "value" not in res and "needs every site" in res["error"]


class Liar(TabularAnalyzer):
    """A site that sends garbage for some queries and claims to be another site."""

    def analysis_method(self, data: Any, aggregator_results: Any) -> dict[str, Any]:
        out = super().analysis_method(data, aggregator_results)
        out["site"] = "site-1"
        out["releases"]["mean"] = {"refused": None, "cells": [[None, None, [1e9]]]}  # wrong length
        out["releases"]["hist"] = {"refused": None, "cells": [[None, 99, [5.0]]]}  # no such bin
        if aggregator_results is not None:
            out["quantiles"]["q"] = {"refused": None, "answers": {"": [[-1, 0, 0, 0, 0, 0]]}}
        return out


def test_a_lying_site_is_named_left_out_and_never_crashes_the_aggregation(tmp_path: Path) -> None:
    from fx_cli.analytics.tabular import TabularAggregator
    from fx_cli.star.flame import Flame
    from fx_cli.star.loop import run_star
    from fx_cli.star.tester import local_site

    queries = [{"estimator": "mean", "column": "bmi", "name": "mean"},
               {"estimator": "histogram", "column": "age", "range": [19, 79], "bins": 4, "name": "hist"},
               {"estimator": "quantiles", "column": "bmi", "name": "q"}]
    ids = sorted(TABLES)
    sites = []
    for sid in ids:
        cls = Liar if sid == "site-3" else TabularAnalyzer
        guard = SiteGuard(sid, SiteLimits(), Ledger(tmp_path / sid / "l.db"), "r")
        sites.append(local_site(cls(Flame(sid, "default", ids), queries, guard), TABLES[sid]))
    agg = TabularAggregator(Flame("aggregator", "aggregator", ids), queries)
    res = run_star(sites, agg, simple_analysis=False).result["results"]
    honest = np.concatenate([TABLES[s].column("bmi") for s in ("site-1", "site-2")])
    assert res["mean"]["sites"] == ["site-1", "site-2"] and res["mean"]["value"] == pytest.approx(honest.mean())
    assert "malformed release" in res["mean"]["refused"]["site-3"] and "bin 99" in res["hist"]["refused"]["site-3"]
    assert "site-3" in res["q"]["error"]
