"""A site's exact statistics for one query, cell by cell (a cell is a group and, for histograms, a bin).

Every estimator is answered from sums, so totals over sites are exact: count n, sum s, sum of squares ss.
"""
from __future__ import annotations

import numpy as np

from fx_cli.analytics.query import apply_filters
from fx_cli.analytics.spec import QuerySpec
from fx_cli.analytics.table import Table

CellKey = tuple[str | None, int | None]  # (group, bin)


def group_label(value: object) -> str:
    """A group value as text: 2.0 -> '2', 'a' -> 'a'."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def groups_of(spec: QuerySpec, table: Table) -> list[tuple[str | None, np.ndarray]]:
    """(group label, row mask) for each group (one group, None, without ``by``)."""
    if spec.by is None:
        return [(None, np.ones(table.n_rows, dtype=bool))]
    labels = np.array([group_label(v) for v in table.column(spec.by)], dtype=str)
    wanted = list(spec.groups) if spec.groups is not None else sorted(set(labels.tolist()))
    return [(g, labels == g) for g in wanted]


def values_of(spec: QuerySpec, table: Table) -> np.ndarray:
    """The query's column as float64 (clipped to ``bounds`` when given); NaN where missing."""
    assert spec.column is not None
    vals = table.numeric(spec.column)
    return np.clip(vals, *spec.bounds) if spec.bounds is not None else vals


def local_cells(spec: QuerySpec, table: Table) -> dict[CellKey, np.ndarray]:
    """Exact per-cell statistics (float64 vectors laid out as ``spec.stats``)."""
    rows = apply_filters(table, list(spec.filters))
    out: dict[CellKey, np.ndarray] = {}
    vals = values_of(spec, rows) if spec.column is not None else None
    for group, mask in groups_of(spec, rows):
        if vals is None:
            out[(group, None)] = np.array([float(mask.sum())])
            continue
        v = vals[mask]
        v = v[~np.isnan(v)]
        if spec.estimator == "histogram":
            assert spec.range is not None
            counts, _ = np.histogram(v, bins=spec.bins, range=spec.range)
            out.update({(group, i): np.array([float(c)]) for i, c in enumerate(counts)})
        elif spec.stats == ("n", "s"):
            out[(group, None)] = np.array([float(v.size), float(v.sum())])
        else:
            out[(group, None)] = np.array([float(v.size), float(v.sum()), float((v * v).sum())])
    return out


def sensitivities(spec: QuerySpec) -> np.ndarray:
    """How much adding or removing one row can change each statistic of the one cell it falls in."""
    bound = max(abs(spec.bounds[0]), abs(spec.bounds[1])) if spec.bounds is not None else 0.0
    per_stat = {"n": 1.0, "s": bound, "ss": bound * bound}
    return np.array([per_stat[s] for s in spec.stats])
