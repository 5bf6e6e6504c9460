"""Exact quantiles over sites, by narrowing an interval around each needed order statistic.

Every pass, the aggregator sends per group a list of probes (lo, hi, t); each site answers, for its
values in (lo, t] and in (t, hi], how many there are and their minimum and maximum. The aggregator keeps
the half holding the wanted rank; when the smallest and largest value in it are equal, that is the order
statistic. Quantiles then interpolate linearly between order statistics floor(h) and ceil(h),
h = (N - 1)·q (numpy's default), so the result equals numpy on the pooled data. A site whose group has
fewer rows than its minimum count takes no part (and says so).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from fx_cli.analytics.cells import groups_of, values_of
from fx_cli.analytics.query import apply_filters
from fx_cli.analytics.spec import QuerySpec
from fx_cli.analytics.table import Table

INF = math.inf
FIRST_PROBE = [-INF, INF, INF]


def _part(v: np.ndarray) -> list[float]:
    return [float(v.size), float(v.min()) if v.size else INF, float(v.max()) if v.size else -INF]


def site_answer(spec: QuerySpec, table: Table, probes: dict[str, list[list[float]]] | None,
                min_count: int) -> dict[str, Any]:
    """This site's counts and extremes for each probe (``probes`` None: the first pass, every group)."""
    rows = apply_filters(table, list(spec.filters))
    vals = values_of(spec, rows)
    answers: dict[str, list[list[float]]] = {}
    suppressed: list[str] = []
    for group, mask in groups_of(spec, rows):
        label = "" if group is None else group
        v = vals[mask]
        v = v[~np.isnan(v)]
        if v.size < min_count:
            suppressed.append(label)
            continue
        wanted = [FIRST_PROBE] if probes is None else probes.get(label, [])
        answers[label] = [_part(v[(v > lo) & (v <= t)]) + _part(v[(v > t) & (v <= hi)]) for lo, hi, t in wanted]
    return {"answers": answers, "suppressed": suppressed}


def _pivot(low: float, high: float) -> float:
    t = low + (high - low) / 2
    return t if low <= t < high else low


def _narrow(state: dict[str, Any], n1: float, min1: float, max1: float, n2: float, min2: float,
            max2: float) -> None:
    """Keep the half of the interval that holds the wanted rank; stop when it holds one value."""
    if state["below"] + n1 >= state["rank"] + 1:
        state.update(hi=state["t"], min=min1, max=max1)
    else:
        state.update(lo=state["t"], below=state["below"] + n1, min=min2, max=max2)
    if state["min"] == state["max"]:
        state["value"] = state["min"]
    else:
        state["t"] = _pivot(state["min"], state["max"])


def _sum_parts(parts: list[list[float]]) -> list[float]:
    a = np.array(parts, dtype=np.float64).reshape(-1, 6)
    return [a[:, 0].sum(), a[:, 1].min(), a[:, 2].max(), a[:, 3].sum(), a[:, 4].min(), a[:, 5].max()]


class QuantileSearch:
    """The aggregator's search state for one query (JSON-compatible, so it can be saved)."""

    def __init__(self, spec: QuerySpec, state: dict[str, Any] | None = None) -> None:
        self.spec = spec
        self.state: dict[str, Any] = state if state is not None else {}

    def probes(self) -> dict[str, list[list[float]]]:
        """What the sites are asked next (empty when done)."""
        return {g: [[r["lo"], r["hi"], r["t"]] for r in s["ranks"] if r["value"] is None]
                for g, s in self.state.items() if any(r["value"] is None for r in s["ranks"])}

    def update(self, answers: list[dict[str, list[list[float]]]], first: bool) -> None:
        """Fold one pass of every site's answers into the search."""
        groups = sorted({g for a in answers for g in a}) if first else list(self.state)
        for g in groups:
            per_site = [a[g] for a in answers if g in a]
            if first:
                self._start(g, _sum_parts([p[0] for p in per_site]))
                continue
            open_ranks = [r for r in self.state[g]["ranks"] if r["value"] is None]
            for i, r in enumerate(open_ranks):
                _narrow(r, *_sum_parts([p[i] for p in per_site]))

    def _start(self, group: str, first: list[float]) -> None:
        n, low, high = int(first[0]), first[1], first[2]
        if n == 0:
            return
        ranks = sorted({int(math.floor((n - 1) * q)) for q in self.spec.q} |
                       {int(math.ceil((n - 1) * q)) for q in self.spec.q})
        self.state[group] = {"n": n, "ranks": [
            {"rank": k, "lo": -INF, "hi": INF, "below": 0.0, "min": low, "max": high,
             "t": _pivot(low, high), "value": low if low == high else None} for k in ranks]}

    def result(self) -> dict[str, Any]:
        """Per group: the quantiles, keyed by q."""
        out: dict[str, Any] = {}
        for g, s in self.state.items():
            values = {r["rank"]: r["value"] for r in s["ranks"]}
            qs = {}
            for q in self.spec.q:
                h = (s["n"] - 1) * q
                lo_v, hi_v = values[int(math.floor(h))], values[int(math.ceil(h))]
                qs[f"{q:g}"] = lo_v + (h - math.floor(h)) * (hi_v - lo_v)
            out[g] = {"n": float(s["n"]), "quantiles": qs}
        return out
