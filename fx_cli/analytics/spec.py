"""A query as the plan states it, checked: which estimator, on which column, grouped, filtered, noised."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from fx_cli.analytics.query import QueryFilter
from fx_cli.errors import FxError

# estimator -> (statistics each cell carries, needs a column, needs a group-by column)
ESTIMATORS: dict[str, tuple[tuple[str, ...], bool, bool]] = {
    "count": (("n",), False, False),
    "group_count": (("n",), False, True),
    "sum": (("n", "s"), True, False),
    "mean": (("n", "s"), True, False),
    "group_mean": (("n", "s"), True, True),
    "variance": (("n", "s", "ss"), True, False),
    "std": (("n", "s", "ss"), True, False),
    "histogram": (("n",), True, False),
    "quantiles": ((), True, False),
}
ALIASES = {"groupcount": "group_count", "groupmean": "group_mean", "var": "variance", "stddev": "std",
           "quantile": "quantiles", "hist": "histogram"}
MECHANISMS = ("laplace", "gaussian")
KEYS = {"name", "estimator", "column", "by", "groups", "filters", "noise", "bounds", "bins", "range", "q", "ddof",
        "masked"}


@dataclass(frozen=True)
class Noise:
    """Noise the site adds to its own release: Laplace (ε) or Gaussian (ε, δ)."""

    mechanism: str
    epsilon: float
    delta: float = 0.0


@dataclass(frozen=True)
class QuerySpec:
    """One checked query."""

    name: str
    estimator: str
    column: str | None = None
    by: str | None = None
    groups: tuple[str, ...] | None = None
    filters: tuple[QueryFilter, ...] = ()
    noise: Noise | None = None
    bounds: tuple[float, float] | None = None
    bins: int = 10
    range: tuple[float, float] | None = None
    q: tuple[float, ...] = (0.25, 0.5, 0.75)
    ddof: int = 1
    masked: bool = False
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def stats(self) -> tuple[str, ...]:
        """The statistics each released cell carries."""
        return ESTIMATORS[self.estimator][0]


def _pair(value: Any, where: str) -> tuple[float, float]:
    if not (isinstance(value, (list, tuple)) and len(value) == 2):
        raise FxError(f"{where}: expected [low, high], got {value!r}")
    low, high = float(value[0]), float(value[1])
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise FxError(f"{where}: need finite low < high, got {value!r}")
    return low, high


def _noise(raw: Any, where: str) -> Noise | None:
    if raw in (None, False, "off"):
        return None
    if not isinstance(raw, dict):
        raise FxError(f"{where}: expected {{mechanism: laplace|gaussian, epsilon: E, delta: D}}, got {raw!r}")
    mech = str(raw.get("mechanism", "laplace")).lower()
    if mech not in MECHANISMS:
        raise FxError(f"{where}.mechanism: {mech!r} is not one of {', '.join(MECHANISMS)}")
    eps, delta = float(raw.get("epsilon", 0)), float(raw.get("delta", 0) or 0)
    if not (math.isfinite(eps) and eps > 0):
        raise FxError(f"{where}.epsilon: must be > 0, got {raw.get('epsilon')!r}")
    if mech == "gaussian" and not 0 < delta < 1:
        raise FxError(f"{where}.delta: the Gaussian mechanism needs 0 < delta < 1, got {raw.get('delta')!r}")
    if mech == "laplace" and delta:
        raise FxError(f"{where}.delta: the Laplace mechanism takes no delta", "drop delta or use gaussian")
    return Noise(mech, eps, delta)


def parse_query(raw: Any, index: int) -> QuerySpec:
    """Check one query from the plan (``analytics.queries[index]``)."""
    where = f"queries[{index}]"
    if not isinstance(raw, dict):
        raise FxError(f"{where}: a query is a mapping with at least 'estimator', got {raw!r}")
    unknown = sorted(set(raw) - KEYS)
    if unknown:
        raise FxError(f"{where}: unknown key(s) {', '.join(unknown)}", "known keys: " + ", ".join(sorted(KEYS)))
    est = str(raw.get("estimator", "")).lower()
    est = ALIASES.get(est, est)
    if est not in ESTIMATORS:
        raise FxError(f"{where}.estimator: {raw.get('estimator')!r} is not one of {', '.join(ESTIMATORS)}")
    _, needs_column, needs_by = ESTIMATORS[est]
    column, by = raw.get("column"), raw.get("by")
    if needs_column and not isinstance(column, str):
        raise FxError(f"{where}: {est} needs 'column'")
    if needs_by and not isinstance(by, str):
        raise FxError(f"{where}: {est} needs 'by' (the column to group on)")
    spec = QuerySpec(
        name=str(raw.get("name") or f"{est}" + (f"({column})" if column else "") + (f" by {by}" if by else "")),
        estimator=est, column=column, by=by,
        groups=tuple(str(g) for g in raw["groups"]) if raw.get("groups") is not None else None,
        filters=tuple(QueryFilter.parse(f, f"{where}.filters[{i}]") for i, f in enumerate(raw.get("filters") or [])),
        noise=_noise(raw.get("noise"), f"{where}.noise"),
        bounds=_pair(raw["bounds"], f"{where}.bounds") if raw.get("bounds") is not None else None,
        bins=int(raw.get("bins", 10)),
        range=_pair(raw["range"], f"{where}.range") if raw.get("range") is not None else None,
        q=tuple(float(x) for x in raw.get("q", (0.25, 0.5, 0.75))),
        ddof=int(raw.get("ddof", 1)), masked=bool(raw.get("masked", False)), raw=dict(raw))
    _check(spec, where)
    return spec


def _check(spec: QuerySpec, where: str) -> None:
    if spec.estimator == "histogram" and spec.range is None:
        raise FxError(f"{where}: histogram needs 'range: [low, high]'",
                      "a range computed from the data would release its minimum and maximum")
    if spec.bins < 1:
        raise FxError(f"{where}.bins: must be >= 1")
    if not all(0 <= x <= 1 for x in spec.q) or not spec.q:
        raise FxError(f"{where}.q: quantiles must lie in [0, 1]")
    if spec.masked and spec.by and spec.groups is None:
        raise FxError(f"{where}: a masked query grouped by {spec.by!r} needs 'groups: [...]'",
                      "masks cancel only when every site releases the same cells; list the group values")
    if spec.masked and spec.estimator == "quantiles":
        raise FxError(f"{where}: quantiles cannot be masked (they are found from minima and maxima, not sums)")
    if spec.noise and spec.estimator in ("sum", "mean", "group_mean", "variance", "std") and spec.bounds is None:
        raise FxError(f"{where}: noise on {spec.estimator} needs 'bounds: [low, high]' for {spec.column!r}",
                      "values are clipped to the bounds; the noise scale follows from them")


def parse_queries(raw: Any) -> list[QuerySpec]:
    """Check every query; names must be unique."""
    if not isinstance(raw, list) or not raw:
        raise FxError("analytics.queries: expected a non-empty list of queries")
    specs = [parse_query(q, i) for i, q in enumerate(raw)]
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise FxError("analytics.queries: duplicate query names: " + ", ".join(dupes), "give each query a 'name'")
    return specs
