"""The site's privacy guard: everything a site releases for a query goes through ``SiteGuard.release``.

Order: the site's limits refuse what they forbid; exact cells are computed; cells under the minimum
count are suppressed (never sent); noise is added; the release and its cost go into the ledger in one
transaction (a repeat gets the stored release); masks, if asked, are added last.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from fx_cli.analytics.budget import Ledger
from fx_cli.analytics.cells import CellKey, local_cells, sensitivities
from fx_cli.analytics.limits import SiteLimits
from fx_cli.analytics.masking import Masker, to_fixed
from fx_cli.analytics.spec import Noise, QuerySpec
from fx_cli.analytics.table import Table
from fx_cli.errors import FxError
from fx_cli.privacy.noise import gaussian, gaussian_std_for, laplace, laplace_scale, noise_generator
from fx_cli.star import wire


class Refused(FxError):
    """The site will not answer this query."""


def check_allowed(spec: QuerySpec, limits: SiteLimits) -> None:
    """Refuse what the site's limits forbid, naming the limit."""
    if spec.noise is None:
        if limits.require_noise:
            raise Refused("this site releases only noisy results (require_noise: true) and the query has no noise",
                          "add noise: {mechanism: laplace, epsilon: ...} to the query")
        return
    if spec.estimator == "quantiles":
        raise Refused("quantiles are released exact (they are data values); this site will not add noise to them",
                      "use a histogram with noise instead")
    if spec.noise.epsilon > limits.max_epsilon_per_query:
        raise Refused(f"epsilon={spec.noise.epsilon:g} is above this site's max_epsilon_per_query="
                      f"{limits.max_epsilon_per_query:g}", "ask for a smaller epsilon")
    if spec.noise.delta > limits.max_delta_per_query:
        raise Refused(f"delta={spec.noise.delta:g} is above this site's max_delta_per_query="
                      f"{limits.max_delta_per_query:g}", "ask for a smaller delta")


def release_key(run: str, spec: QuerySpec) -> str:
    """Ledger key of a query: the run, its name and a digest of everything it asks (same query, same release)."""
    digest = hashlib.sha256(json.dumps(spec.raw, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return f"{run}/{spec.name}/{digest}"


def noise_scale(spec: QuerySpec, noise: Noise) -> float:
    """Laplace scale (L1 sensitivity / ε) or Gaussian σ (analytic, L2 sensitivity) for one row's cell."""
    sens = sensitivities(spec)
    if noise.mechanism == "laplace":
        return laplace_scale(float(sens.sum()), noise.epsilon)
    return gaussian_std_for(noise.epsilon, noise.delta, float(np.sqrt((sens * sens).sum())))


def _noised(cells: dict[CellKey, np.ndarray], mechanism: str, scale: float) -> dict[CellKey, np.ndarray]:
    rng = noise_generator()
    draw = laplace if mechanism == "laplace" else gaussian
    return {k: v + draw(v.shape, scale, rng) for k, v in cells.items()}


@dataclass
class SiteGuard:
    """Limits, ledger and (optionally) masks of one site for one run."""

    site: str
    limits: SiteLimits
    ledger: Ledger
    run: str
    masker: Masker | None = None

    def release(self, spec: QuerySpec, table: Table, plan_min_count: int | None = None) -> dict[str, Any]:
        """What this site sends for ``spec``: a refusal, or cells with the suppressed ones named."""
        try:
            body = self._release(spec, table, self.limits.with_plan(plan_min_count))
        except Refused as exc:
            return {"site": self.site, "query": spec.name, "refused": str(exc)}
        return self._masked(spec, body) if spec.masked else body

    def _release(self, spec: QuerySpec, table: Table, limits: SiteLimits) -> dict[str, Any]:
        check_allowed(spec, limits)
        key = release_key(self.run, spec)
        if spec.noise is not None and (stored := self.ledger.stored(key)) is not None:
            stored_body: dict[str, Any] = wire.decode(stored)
            return stored_body
        cells = local_cells(spec, table)
        self._check_bins(spec, cells, limits)
        kept = {k: v for k, v in cells.items() if v[0] >= limits.min_count}
        suppressed = sorted((k for k in cells if k not in kept), key=lambda k: (str(k[0]), k[1] or 0))
        body: dict[str, Any] = {"site": self.site, "query": spec.name, "refused": None, "min_count": limits.min_count,
                                "suppressed": [list(k) for k in suppressed], "noise": None}
        if spec.noise is not None:
            scale = noise_scale(spec, spec.noise)
            kept = _noised(kept, spec.noise.mechanism, scale)
            body["noise"] = {"mechanism": spec.noise.mechanism, "epsilon": spec.noise.epsilon,
                             "delta": spec.noise.delta, "scale": scale}
        body["cells"] = [[k[0], k[1], v] for k, v in kept.items()]
        if spec.noise is not None:
            try:
                self.ledger.charge(key, spec.noise.epsilon, spec.noise.delta, wire.encode(body),
                                   limits.max_epsilon_total, limits.max_delta_total)
            except FxError as exc:
                raise Refused(exc.message, exc.hint) from None
        return body

    @staticmethod
    def _check_bins(spec: QuerySpec, cells: dict[CellKey, np.ndarray], limits: SiteLimits) -> None:
        if spec.estimator != "histogram":
            return
        n = sum(float(v[0]) for v in cells.values())
        allowed = math.floor(n * limits.max_bins_percent / 100)
        if spec.bins > allowed:
            raise Refused(f"{spec.bins} histogram bins for {int(n)} rows: this site allows at most "
                          f"{limits.max_bins_percent:g}% of its rows as bins ({allowed})", "ask for fewer bins")

    def _masked(self, spec: QuerySpec, body: dict[str, Any]) -> dict[str, Any]:
        """Every expected cell, suppressed ones as zeros, as fixed-point values with masks added."""
        if body.get("refused"):
            return body
        if self.masker is None:
            raise FxError(f"query {spec.name!r} asks for masked totals but this run set up no masks")
        have = {(c[0], c[1]): np.asarray(c[2], dtype=np.float64) for c in body["cells"]}
        bins: list[int | None] = list(range(spec.bins)) if spec.estimator == "histogram" else [None]
        groups: list[str | None] = list(spec.groups) if spec.groups is not None else [None]
        cells = []
        for g in groups:
            for b in bins:
                fixed = to_fixed(have.get((g, b), np.zeros(len(spec.stats))), spec.stats)
                label = json.dumps([spec.name, g, b])
                cells.append([g, b, self.masker.mask(fixed, label)])
        return {**body, "cells": cells, "masked": True}
