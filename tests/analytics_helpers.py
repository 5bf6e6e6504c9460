"""Tabular data for analytics tests: scikit-learn's diabetes table (shipped, raw units), split across sites."""
from __future__ import annotations

import numpy as np

from fx_cli.analytics.table import Table, from_columns


def diabetes_columns() -> dict[str, np.ndarray]:
    """age, sex (1/2), bmi, bp, s1..s6 and the target as 'progression'; 442 rows."""
    from sklearn.datasets import load_diabetes

    d = load_diabetes(scaled=False)
    cols = {name: np.asarray(d.data[:, i], dtype=np.float64) for i, name in enumerate(d.feature_names)}
    cols["progression"] = np.asarray(d.target, dtype=np.float64)
    return cols


def split_rows(cols: dict[str, np.ndarray], sites: int) -> dict[str, Table]:
    """Contiguous row blocks, one per site: site-1, site-2, ..."""
    parts = np.array_split(np.arange(len(next(iter(cols.values())))), sites)
    return {f"site-{i + 1}": from_columns({k: v[p] for k, v in cols.items()}) for i, p in enumerate(parts)}
