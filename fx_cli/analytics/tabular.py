"""The built-in estimators as one STAR analyzer/aggregator pair, so they run wherever STAR runs.

Iteration 1: every site answers every plain query through its ``SiteGuard`` (quantile queries: the first
probe). Later iterations: the quantile searches still open, and for masked queries a three-step exchange
through the aggregator: it sends a fresh random nonce, each site answers with the X25519 public key it
derives from its own secret and that nonce, the aggregator sends all keys back, and each site answers the
masked queries with pairwise masks (``masking.py``). The aggregate carries the results so far, the search
and mask state and the next requests; it has converged when nothing is left to ask.
"""
from __future__ import annotations

import secrets
from typing import Any

import numpy as np

from fx_cli.analytics import checks
from fx_cli.analytics.combine import combine
from fx_cli.analytics.guard import Refused, SiteGuard, check_allowed
from fx_cli.analytics.masking import Masker, public_bytes, site_key
from fx_cli.analytics.quantiles import QuantileSearch, site_answer
from fx_cli.analytics.spec import QuerySpec, parse_queries
from fx_cli.analytics.table import Table
from fx_cli.star.flame import Flame
from fx_cli.star.nodes import StarAggregator, StarAnalyzer


class TabularAnalyzer(StarAnalyzer):
    """A site: answers the plan's queries on its table, within its own limits."""

    def __init__(self, flame: Flame, queries: list[dict[str, Any]], guard: SiteGuard,
                 min_count: int | None = None) -> None:
        super().__init__(flame)
        self.specs = parse_queries(queries)
        self.guard, self.plan_min_count = guard, min_count

    def analysis_method(self, data: Table, aggregator_results: Any) -> dict[str, Any]:
        """Releases (plain queries first, masked ones when the keys are in), quantile answers, a public key."""
        first = aggregator_results is None
        probes: dict[str, Any] = {} if first else aggregator_results["probes"]
        mask: dict[str, Any] = {} if first else aggregator_results.get("mask") or {}
        out: dict[str, Any] = {"site": self.id, "releases": {}, "quantiles": {}}
        if mask.get("want") == "keys":
            out["public_key"] = np.frombuffer(public_bytes(self._key(mask["nonce"])), dtype=np.uint8).copy()
        if mask.get("want") == "answers":
            peers = {s: np.asarray(k, dtype=np.uint8).tobytes() for s, k in mask["keys"].items()}
            self.guard.masker = Masker(self.id, self._key(mask["nonce"]), peers, mask["nonce"])
        for spec in self.specs:
            if spec.estimator == "quantiles":
                if first or spec.name in probes:
                    out["quantiles"][spec.name] = self._quantiles(spec, data, probes.get(spec.name))
            elif (first and not spec.masked) or (spec.masked and mask.get("want") == "answers"):
                out["releases"][spec.name] = self.guard.release(spec, data, self.plan_min_count)
        return out

    def _key(self, nonce: str) -> Any:
        return site_key(self.guard.ledger.path.parent / "mask_secret", nonce)

    def _quantiles(self, spec: QuerySpec, data: Table, probes: Any) -> dict[str, Any]:
        limits = self.guard.limits.with_plan(self.plan_min_count)
        try:
            check_allowed(spec, limits)
        except Refused as exc:
            return {"refused": str(exc)}
        return {"refused": None, **site_answer(spec, data, probes, limits.min_count)}


class TabularAggregator(StarAggregator):
    """Adds the sites' releases, runs the quantile searches and the mask key exchange."""

    saved_attributes: tuple[str, ...] = ()  # everything it needs after a restart is in its aggregate

    def __init__(self, flame: Flame, queries: list[dict[str, Any]]) -> None:
        super().__init__(flame)
        self.specs = parse_queries(queries)
        self.results: dict[str, Any] = {}
        self.searches = {s.name: QuantileSearch(s) for s in self.specs if s.estimator == "quantiles"}
        self.quantile_notes: dict[str, dict[str, Any]] = {}
        self.mask: dict[str, Any] = {}

    def aggregation_method(self, analysis_results: list[dict[str, Any]]) -> dict[str, Any]:
        """Fold one iteration; the aggregate holds the results so far, the state and the next requests."""
        first = self.num_iterations == 0
        if not first and not self.results and not self.mask:
            self._restore(self.latest_result)  # a restarted aggregator: pick up from the saved aggregate
        answering = self.mask.get("want") == "answers"
        sites = self._sites(analysis_results)
        results = [r if isinstance(r, dict) else {} for r in analysis_results]
        for spec in self.specs:
            if spec.estimator == "quantiles":
                self._quantiles(spec, sites, results, first)
            elif (first and not spec.masked) or (spec.masked and answering):
                releases = [checks.release(spec, site, _part(r, "releases", spec.name))
                            for site, r in zip(sites, results)]
                missing = sorted(set(sites) - set(self.mask.get("keys", {}))) if spec.masked else []
                self.results[spec.name] = combine(spec, releases) if not missing else {
                    "estimator": spec.estimator, "masked": True, "refused": {},
                    "error": "a masked total needs a public key from every site; none from " + ", ".join(missing)}
        self._next_mask_step(sites, results, first)
        probes = {name: p for name, s in self.searches.items() if (p := s.probes())}
        return {"results": dict(self.results), "probes": probes, "notes": dict(self.quantile_notes),
                "searches": {name: s.state for name, s in self.searches.items()}, "mask": dict(self.mask)}

    def _sites(self, analysis_results: list[Any]) -> list[str]:
        """Who sent each result: the authenticated names the engine gives, in order (never a self-reported one)."""
        ids = self.flame.get_participant_ids()
        return ids if len(ids) == len(analysis_results) else [f"site-{i + 1}" for i in range(len(analysis_results))]

    def _next_mask_step(self, sites: list[str], results: list[dict[str, Any]], first: bool) -> None:
        if first and any(s.masked for s in self.specs):
            self.mask = {"want": "keys", "nonce": secrets.token_hex(16)}
        elif self.mask.get("want") == "keys":
            keys = {site: key for site, r in zip(sites, results) if (key := checks.public_key(r.get("public_key")))
                    is not None}
            self.mask = {"want": "answers", "nonce": self.mask["nonce"], "keys": keys}
        elif self.mask.get("want") == "answers":
            self.mask = {"want": None, "nonce": self.mask["nonce"]}

    def _restore(self, aggregate: dict[str, Any]) -> None:
        self.results = dict(aggregate["results"])
        self.quantile_notes = dict(aggregate.get("notes", {}))
        self.mask = dict(aggregate.get("mask") or {})
        for name, state in aggregate.get("searches", {}).items():
            self.searches[name].state = state

    def _quantiles(self, spec: QuerySpec, sites: list[str], results: list[dict[str, Any]], first: bool) -> None:
        search = self.searches[spec.name]
        probes = None if first else search.probes()
        if not first and not probes:
            return
        parts = [(site, checks.quantile_answer(site, _part(r, "quantiles", spec.name), probes))
                 for site, r in zip(sites, results)]
        if first:
            self.quantile_notes[spec.name] = {
                "refused": {s: a["refused"] for s, a in parts if a and a.get("refused")},
                "suppressed": {s: a["suppressed"] for s, a in parts if a and a.get("suppressed")},
                "answering": [s for s, a in parts if a and not a.get("refused")]}
        else:
            gone = [s for s, a in parts if s in self.quantile_notes[spec.name]["answering"] and
                    (a is None or a.get("refused"))]
            if gone:  # counts without that site would give a wrong quantile: stop the search instead
                search.state = {}
                self.results[spec.name] = {"estimator": "quantiles", "column": spec.column, "by": spec.by,
                                           "error": "stopped answering the search: " + ", ".join(gone)}
                return
        search.update([a["answers"] for _, a in parts if a and not a.get("refused")], first)
        self.results[spec.name] = {"estimator": "quantiles", "column": spec.column, "by": spec.by,
                                   "q": list(spec.q), **self.quantile_notes[spec.name], **self._quantile_values(spec)}

    def _quantile_values(self, spec: QuerySpec) -> dict[str, Any]:
        search = self.searches[spec.name]
        if search.probes():
            return {"pending": True}
        per = search.result()
        if spec.by:
            return {"groups": per}
        found: dict[str, Any] = per.get("", {"error": "no site answered"})
        return found

    def has_converged(self, result: Any, last_result: Any) -> bool:
        """Done when no quantile search is open and no masked query is waiting."""
        return not result["probes"] and not result["mask"].get("want")


def _part(result: dict[str, Any], section: str, name: str) -> Any:
    inner = result.get(section)
    return inner.get(name) if isinstance(inner, dict) else None


def iterative(specs: list[QuerySpec]) -> bool:
    """Whether a set of queries needs more than one iteration (quantiles, masked totals)."""
    return any(s.estimator == "quantiles" or s.masked for s in specs)
