"""STAR across real sites: the star/mean template over mutual TLS, and a site killed mid-iteration."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.analytics_helpers import make_analytics_workspace
from tests.fault_helpers import processes, wait_until
from tests.runtime_helpers import run_federation
from tests.test_star import plain_recomputation

pytestmark = pytest.mark.slow

DATA = {"one": "data/one.json", "two": "data/two.json"}


def test_star_mean_template_runs_the_seed_example_across_two_sites(tmp_path: Path) -> None:
    ws = make_analytics_workspace(tmp_path, "star/mean", DATA)
    run = run_federation(ws, list(DATA), timeout=240)
    assert run.ok, run.outputs
    saved = json.loads((ws / "save" / "analytics.json").read_text())
    expected, iterations = plain_recomputation([[1, 2, 3, 4], [5, 6, 7, 8]], stop_at=5)
    assert saved == {"iterations": iterations, "converged": True, "result": expected}


def test_aggregator_and_a_site_killed_mid_iteration_resume_to_the_same_result(tmp_path: Path) -> None:
    ws = make_analytics_workspace(tmp_path, "star/mean", DATA)
    with processes(ws) as procs:
        # The aggregator dies in iteration 2 after writing the next aggregate but before committing it;
        # site 'one' dies inside its 3rd analysis. Both are started again; the run completes.
        agg = procs.aggregator(fault="aggregator:saving_model#4")
        one = procs.collaborator("one", fault="collaborator:mid_train#3")
        two = procs.collaborator("two")
        assert agg.wait(120) == -9, agg.output()
        agg = procs.aggregator()
        assert one.wait(120) == -9, one.output()
        one = procs.collaborator("one")
        codes = {p.name: p.wait(240) for p in (agg, one, two)}
        assert codes == {"aggregator": 0, "one": 0, "two": 0}, [p.output() for p in (agg, one, two)]
        wait_until(lambda: (ws / "save" / "analytics.json").exists(), "the result file")
    saved = json.loads((ws / "save" / "analytics.json").read_text())
    expected, iterations = plain_recomputation([[1, 2, 3, 4], [5, 6, 7, 8]], stop_at=5)
    assert saved == {"iterations": iterations, "converged": True, "result": expected}
    assert "resuming at round 2" in agg.output().replace("\n", " ")
