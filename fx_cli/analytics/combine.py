"""The aggregator's side: add the sites' cells and turn totals into estimates (JSON-compatible)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from fx_cli.analytics.masking import from_fixed
from fx_cli.analytics.spec import QuerySpec

Totals = dict[tuple[str | None, int | None], np.ndarray]


def _add(releases: list[dict[str, Any]], spec: QuerySpec) -> Totals:
    masked = any(r.get("masked") for r in releases)
    totals: Totals = {}
    for rel in releases:
        for group, b, stats in rel["cells"]:
            arr = np.asarray(stats, dtype=np.uint64 if masked else np.float64)
            key = (group, b)
            if key in totals:
                with np.errstate(over="ignore"):
                    totals[key] = totals[key] + arr
            else:
                totals[key] = arr.copy()
    return {k: from_fixed(v, spec.stats) for k, v in totals.items()} if masked else totals


def _estimate(spec: QuerySpec, stats: np.ndarray) -> dict[str, Any]:
    n = float(stats[0])
    out: dict[str, Any] = {"n": n}
    if spec.estimator in ("count", "group_count"):
        out["value"] = n
    elif spec.estimator == "sum":
        out["value"] = float(stats[1])
    elif spec.estimator in ("mean", "group_mean"):
        out["value"] = float(stats[1]) / n if n > 0 else math.nan
    elif spec.estimator in ("variance", "std"):
        var = (float(stats[2]) - float(stats[1]) ** 2 / n) / (n - spec.ddof) if n > spec.ddof else math.nan
        out["value"] = var if spec.estimator == "variance" else math.sqrt(max(var, 0.0))
    return out


def _histogram(spec: QuerySpec, totals: Totals, group: str | None) -> dict[str, Any]:
    assert spec.range is not None
    edges = np.linspace(spec.range[0], spec.range[1], spec.bins + 1)
    counts = [float(totals[(group, i)][0]) if (group, i) in totals else None for i in range(spec.bins)]
    return {"edges": edges.tolist(), "counts": counts}


def combine(spec: QuerySpec, releases: list[dict[str, Any]]) -> dict[str, Any]:
    """One query's result from every site's release, with refusals and suppressed cells named."""
    answered = [r for r in releases if not r.get("refused")]
    out: dict[str, Any] = {"estimator": spec.estimator, "column": spec.column, "by": spec.by,
                           "sites": [r["site"] for r in answered],
                           "refused": {r["site"]: r["refused"] for r in releases if r.get("refused")},
                           "suppressed": {r["site"]: r["suppressed"] for r in answered if r.get("suppressed")},
                           "noise": next((r["noise"] for r in answered if r.get("noise")), None),
                           "masked": spec.masked}
    if spec.masked and out["refused"]:
        out["error"] = "a masked total needs every site; refused at " + ", ".join(sorted(out["refused"]))
        return out
    if not answered:
        out["error"] = "no site answered"
        return out
    totals = _add(answered, spec)
    hidden = {c[0] for r in answered for c in r.get("suppressed") or []}
    groups = sorted({k[0] for k in totals} | hidden, key=str) if spec.by else [None]
    if spec.estimator == "histogram":
        per = {g: _histogram(spec, totals, g) for g in groups}
    else:
        per = {g: _estimate(spec, totals[(g, None)]) if (g, None) in totals else {"n": None, "value": None}
               for g in groups}
    if spec.by:
        out["groups"] = {str(g): v for g, v in per.items()}
    elif None in per:
        out.update(per[None])
    return out
