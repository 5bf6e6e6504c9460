"""The built-in estimators across real sites: STAR's runner and aggregation with the tabular pair.

At each site the guard's state lives in the site's own workspace, where no plan can move it:
``local_state/analytics/limits.yaml`` (the data owner's limits; defaults when absent) and
``local_state/analytics/<collaborator>/ledger.db`` (the privacy budget, kept across runs).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from fx_cli.analytics.budget import Ledger
from fx_cli.analytics.guard import SiteGuard
from fx_cli.analytics.limits import load_limits
from fx_cli.analytics.report import format_table, write_results
from fx_cli.analytics.spec import parse_queries
from fx_cli.analytics.table import Table, from_columns, read_csv
from fx_cli.analytics.tabular import TabularAnalyzer, iterative
from fx_cli.errors import FxError
from fx_cli.star.federated import StarAggregation, StarRunner
from fx_cli.star.flame import ANALYZER_ROLE, Flame
from fx_cli.star.nodes import StarAnalyzer

LOG = logging.getLogger("fx.analytics")
SITE_DIR = Path("local_state") / "analytics"
LIMITS_FILE = SITE_DIR / "limits.yaml"
DEMO_DATASETS = ("diabetes",)


def demo_columns(dataset: str) -> dict[str, np.ndarray]:
    """A table shipped with scikit-learn (raw units): diabetes = age, sex, bmi, bp, s1..s6, progression."""
    if dataset not in DEMO_DATASETS:
        raise FxError(f"data_loader.settings.demo_dataset: {dataset!r} is not one of {', '.join(DEMO_DATASETS)}")
    from sklearn.datasets import load_diabetes

    d = load_diabetes(scaled=False)
    cols = {name: np.asarray(d.data[:, i], dtype=np.float64) for i, name in enumerate(d.feature_names)}
    cols["progression"] = np.asarray(d.target, dtype=np.float64)
    return cols


def demo_shard(cols: dict[str, np.ndarray], shard: int, shards: int, split_by: str | None) -> dict[str, np.ndarray]:
    """Rows of site ``shard`` (1-based): contiguous blocks of rows, or the rows of one value of ``split_by``."""
    if split_by is None:
        rows = np.array_split(np.arange(len(next(iter(cols.values())))), shards)[shard - 1]
    else:
        values = sorted(set(cols[split_by].tolist()))
        if shard > len(values):
            raise FxError(f"{split_by!r} has {len(values)} values; there is no site {shard}")
        rows = np.flatnonzero(cols[split_by] == values[shard - 1])
    return {k: v[rows] for k, v in cols.items()}


def write_csv(path: Path, cols: dict[str, np.ndarray]) -> None:
    """A CSV with a header row (numbers written with repr precision)."""
    from fx_cli.atomic import atomic_write

    names = list(cols)
    lines = [",".join(names)] + [",".join(repr(float(cols[n][i])) for n in names)
                                 for i in range(len(cols[names[0]]))]
    with atomic_write(path) as fh:
        fh.write(("\n".join(lines) + "\n").encode())


class TabularData:
    """A site's CSV (its ``data.yaml`` path). With ``demo_dataset``, a missing ``...site-K.csv`` is first
    written from scikit-learn's shipped copy: site K's share of ``demo_sites`` (by rows, or by ``demo_split_by``)."""

    def __init__(self, data_path: str | None = None, demo_dataset: str | None = None, demo_sites: int = 3,
                 demo_split_by: str | None = None) -> None:
        self.path = Path(data_path) if data_path else None
        self.demo = (demo_dataset, demo_sites, demo_split_by)

    def load(self) -> Table:
        """The site's table."""
        if self.path is None:
            return from_columns({})
        dataset, sites, split_by = self.demo
        if not self.path.exists() and dataset is not None:
            digits = "".join(ch for ch in self.path.stem.rsplit("-", 1)[-1] if ch.isdigit())
            if not digits:
                raise FxError(f"{self.path}: a demo data file is named ...-K.csv with K the site number")
            write_csv(self.path, demo_shard(demo_columns(dataset), int(digits), sites, split_by))
            LOG.info("wrote %s from scikit-learn's %s data (site %s of %d)", self.path, dataset, digits, sites)
        return read_csv(self.path)

    def train_size(self) -> int:
        return 1


class TabularRunner(StarRunner):
    """A site answering the plan's queries through its own guard."""

    def __init__(self, data_loader: Any = None, queries: list[dict[str, Any]] | None = None,
                 min_count: int | None = None, max_result_kib: int = 256) -> None:
        super().__init__(data_loader, analyzer="fx_cli.analytics.tabular.TabularAnalyzer",
                         max_result_kib=max_result_kib)
        self.queries = list(queries or [])
        self.min_count = min_count
        parse_queries(self.queries)

    def make_node(self) -> StarAnalyzer:
        site_dir = SITE_DIR / self.site
        guard = SiteGuard(self.site, load_limits(LIMITS_FILE), Ledger(site_dir / "ledger.db"), run="fx")
        return TabularAnalyzer(Flame(self.site, ANALYZER_ROLE), self.queries, guard, self.min_count)


class TabularAggregation(StarAggregation):
    """Adds the sites' releases; writes save/analytics.json and prints the results as a table."""

    def __init__(self, queries: list[dict[str, Any]] | None = None, max_iterations: int = 100,
                 max_result_kib: int = 256, result_path: str = "save/analytics.json") -> None:
        specs = parse_queries(list(queries or []))
        super().__init__(aggregator="fx_cli.analytics.tabular.TabularAggregator",
                         aggregator_kwargs={"queries": list(queries or [])},
                         simple_analysis=not iterative(specs),
                         max_iterations=max_iterations, max_result_kib=max_result_kib, result_path=result_path)

    def write_result(self, result: Any, converged: bool) -> None:
        results = result["results"]
        write_results(self.result_path, results)
        for line in format_table(results).splitlines():
            LOG.info("%s", line)
        LOG.info("analytics results written to %s", self.result_path)
