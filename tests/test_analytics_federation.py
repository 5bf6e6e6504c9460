"""The analytics/tabular template in a real 3-site mutual-TLS federation: every estimator equals numpy on
the pooled data, small cells are suppressed at the site, and a site over its budget refuses with what is left."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tests.analytics_helpers import diabetes_columns, make_analytics_workspace, split_rows
from tests.runtime_helpers import run_federation

pytestmark = pytest.mark.slow

DATA = {"one": "data/site-1.csv", "two": "data/site-2.csv", "three": "data/site-3.csv"}
EXTRA = [{"name": "old patients", "estimator": "count", "filters": [["age", ">", 67]]},
         {"name": "masked variance", "estimator": "variance", "column": "progression", "masked": True},
         {"name": "masked by sex", "estimator": "group_mean", "column": "bmi", "by": "sex", "groups": ["1", "2"],
          "masked": True}]


def site_folders(ws: Path, root: Path) -> dict[str, Path]:
    """Each site in its own copy of the workspace, so each keeps its own data, limits and ledger."""
    folders = {}
    for name in DATA:
        folders[name] = root / f"site-{name}"
        shutil.copytree(ws, folders[name])
    return folders


def federate(ws: Path, sites: dict[str, Path]) -> dict[str, Any]:
    run = run_federation(ws, sites, timeout=300)
    assert run.ok, run.outputs
    assert "patients by sex" in run.outputs["aggregator"]  # the table is printed
    results: dict[str, Any] = json.loads((ws / "save" / "analytics.json").read_text())
    return results


def test_tabular_template_across_three_sites_equals_pooled_numpy(tmp_path: Path) -> None:
    template = Path(__file__).parent.parent / "plan_templates" / "analytics" / "tabular" / "plan" / "plan.yaml"
    queries = yaml.safe_load(template.read_text())["task_runner"]["settings"]["queries"] + EXTRA
    ws = make_analytics_workspace(tmp_path / "agg", "analytics/tabular", DATA,
                                  task_runner={"queries": queries},
                                  tasks={"analyze": {"function": "train_task", "kwargs": {}, "aggregation_type": {
                                      "template": "fx_cli.analytics.federated.TabularAggregation",
                                      "settings": {"queries": queries}}}})
    sites = site_folders(ws, tmp_path)
    (sites["three"] / "local_state" / "analytics").mkdir(parents=True)
    (sites["three"] / "local_state" / "analytics" / "limits.yaml").write_text("max_epsilon_total: 0.3\n")
    res = federate(ws, sites)

    cols = diabetes_columns()
    for name, folder in sites.items():  # each site wrote and read its own share
        assert (folder / DATA[name]).exists() and not (ws / DATA[name]).exists()
    exact = {
        "patients": len(cols["age"]),
        "mean bmi": cols["bmi"].mean(),
        "mean bmi over 50": cols["bmi"][cols["age"] > 50].mean(),
        "total progression": cols["progression"].sum(),
        "variance bp": np.var(cols["bp"], ddof=1),
        "std bmi": np.std(cols["bmi"], ddof=1),
    }
    for name, want in exact.items():
        assert res[name]["value"] == pytest.approx(want, rel=1e-9), name
        assert not res[name]["suppressed"] and not res[name]["refused"], name
    for sex in (1, 2):
        rows = cols["sex"] == sex
        assert res["patients by sex"]["groups"][str(sex)]["value"] == rows.sum()
        assert res["progression by sex"]["groups"][str(sex)]["value"] == pytest.approx(cols["progression"][rows].mean())
    assert res["age histogram"]["counts"] == np.histogram(cols["age"], bins=4, range=(19, 79))[0].tolist()
    assert list(res["bmi quartiles"]["quantiles"].values()) == pytest.approx(
        np.quantile(cols["bmi"], [0.25, 0.5, 0.75]), rel=1e-12)

    # Masked totals: the aggregator added masked site values; the totals are still exact (fixed point 2**-24).
    assert res["masked variance"]["masked"] and res["masked variance"]["value"] == pytest.approx(
        np.var(cols["progression"], ddof=1), rel=1e-8)
    for sex in (1, 2):
        assert res["masked by sex"]["groups"][str(sex)]["value"] == pytest.approx(
            cols["bmi"][cols["sex"] == sex].mean(), rel=1e-8)

    # Suppression end to end: site 'one' holds 3 patients over 67 and never sends them.
    per_site = [int((t.column("age") > 67).sum()) for t in split_rows(cols, 3).values()]
    assert per_site[0] < 10 <= min(per_site[1:])
    assert res["old patients"]["suppressed"] == {"one": [[None, None]]}
    assert res["old patients"]["value"] == sum(per_site[1:])

    # Budget end to end: 'three' allows epsilon 0.3 in total and refuses the 0.5 query, saying what is left.
    noisy = res["patients (noisy)"]
    assert list(noisy["refused"]) == ["three"] and "left at this site: epsilon=0.3 of 0.3" in noisy["refused"]["three"]
    assert noisy["sites"] == ["one", "two"] and noisy["noise"]["epsilon"] == 0.5


def test_aggregator_killed_during_the_quantile_search_resumes_to_the_exact_quantiles(tmp_path: Path) -> None:
    from tests.fault_helpers import processes

    queries = [{"name": "n", "estimator": "count"},
               {"name": "q", "estimator": "quantiles", "column": "s5", "q": [0.1, 0.5, 0.9]}]
    ws = make_analytics_workspace(tmp_path, "analytics/tabular", DATA, task_runner={"queries": queries},
                                  tasks={"analyze": {"function": "train_task", "kwargs": {}, "aggregation_type": {
                                      "template": "fx_cli.analytics.federated.TabularAggregation",
                                      "settings": {"queries": queries}}}})
    with processes(ws) as procs:
        agg = procs.aggregator(fault="aggregator:saving_model#7")  # iteration 3: model written, not committed
        sites = [procs.collaborator(name) for name in DATA]
        assert agg.wait(120) == -9, agg.output()
        agg = procs.aggregator()
        codes = [p.wait(240) for p in (agg, *sites)]
        assert codes == [0, 0, 0, 0], [p.output() for p in (agg, *sites)]
    assert "resuming at round 3" in " ".join(agg.output().split())
    res = json.loads((ws / "save" / "analytics.json").read_text())
    cols = diabetes_columns()
    assert res["n"]["value"] == len(cols["s5"])
    assert list(res["q"]["quantiles"].values()) == pytest.approx(np.quantile(cols["s5"], [0.1, 0.5, 0.9]), rel=1e-12)
