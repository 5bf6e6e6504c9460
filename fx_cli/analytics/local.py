"""Run the estimators on in-memory tables, one virtual site per table, through the STAR loop."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from fx_cli.analytics.budget import Ledger
from fx_cli.analytics.guard import SiteGuard
from fx_cli.analytics.limits import SiteLimits
from fx_cli.analytics.spec import parse_queries
from fx_cli.analytics.table import Table
from fx_cli.analytics.tabular import TabularAggregator, TabularAnalyzer, iterative
from fx_cli.star.flame import AGGREGATOR_ROLE, ANALYZER_ROLE, Flame
from fx_cli.star.loop import DEFAULT_MAX_ITERATIONS, run_star
from fx_cli.star.tester import local_site


def run_local(tables: dict[str, Table], queries: list[dict[str, Any]], state_dir: str | Path, run: str = "local",
              limits: dict[str, SiteLimits] | None = None, min_count: int | None = None,
              max_iterations: int = DEFAULT_MAX_ITERATIONS) -> dict[str, Any]:
    """Results of ``queries`` over ``tables`` (site name -> table); each site keeps its ledger in ``state_dir``."""
    specs = parse_queries(queries)
    ids = sorted(tables)
    sites = []
    for sid in ids:
        guard = SiteGuard(sid, (limits or {}).get(sid, SiteLimits()), Ledger(Path(state_dir) / sid / "ledger.db"),
                          run)
        analyzer = TabularAnalyzer(Flame(sid, ANALYZER_ROLE, ids), queries, guard, min_count)
        sites.append(local_site(analyzer, tables[sid]))
    aggregator = TabularAggregator(Flame("aggregator", AGGREGATOR_ROLE, ids), queries)
    outcome = run_star(sites, aggregator, simple_analysis=not iterative(specs), max_iterations=max_iterations)
    results: dict[str, Any] = outcome.result["results"]
    return results
