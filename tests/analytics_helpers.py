"""Tabular data for analytics tests: scikit-learn's diabetes table (shipped, raw units), split across sites."""
from __future__ import annotations

from pathlib import Path
from typing import Any

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


def make_analytics_workspace(root: Path, template: str, data: dict[str, str], **sections: dict[str, Any]) -> Path:
    """A workspace from an analytics template on a free port, initialised and certified (real mTLS) for ``data``."""
    from fx_cli.plan.participants import write_cols
    from tests.runtime_helpers import edit_plan, free_port, fx_in

    ws = root / "ws"
    root.mkdir(parents=True, exist_ok=True)
    fx_in(root, "workspace", "create", "--prefix", str(ws), "--template", template)
    network = {"agg_addr": "localhost", "agg_port": free_port(), "use_tls": True, "client_reconnect_interval": 0.1,
               "reconnect_deadline": 120}
    edit_plan(ws, network=network, aggregator={"join_deadline": 60, "heartbeat_timeout": 60},
              collaborator={"heartbeat_interval": 0.5}, **sections)
    (ws / "plan" / "data.yaml").write_text("".join(f"{n},{p}\n" for n, p in data.items()))
    fx_in(ws, "plan", "initialize", "-a", "localhost")
    fx_in(ws, "workspace", "certify")
    fx_in(ws, "aggregator", "generate-cert-request", "--fqdn", "localhost")
    fx_in(ws, "aggregator", "certify", "--fqdn", "localhost", "-s")
    for name in data:
        fx_in(ws, "collaborator", "generate-cert-request", "-n", name, "-s", "-x")
        fx_in(ws, "collaborator", "certify", "-n", name, "-s")
    write_cols(ws / "plan" / "cols.yaml", list(data))
    return ws
