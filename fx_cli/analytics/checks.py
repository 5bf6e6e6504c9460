"""What the aggregator accepts from a site: every release and answer checked against the query.

A site may send anything; one that does not fit is reported as refused ("malformed ..."), named by its
authenticated collaborator name, and left out — it never crashes the aggregation.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from fx_cli.analytics.spec import QuerySpec


class Malformed(Exception):
    """A site's message that does not fit its query."""


def _key(spec: QuerySpec, group: Any, b: Any) -> tuple[str | None, int | None]:
    if spec.by is None and group is not None or spec.by is not None and not isinstance(group, str):
        raise Malformed(f"group {group!r}")
    if spec.groups is not None and group not in spec.groups:
        raise Malformed(f"group {group!r} is not one of the query's groups")
    if spec.estimator == "histogram":
        if not (isinstance(b, int) and not isinstance(b, bool) and 0 <= b < spec.bins):
            raise Malformed(f"bin {b!r}")
    elif b is not None:
        raise Malformed(f"bin {b!r} for a {spec.estimator}")
    return group, b


def _stats(spec: QuerySpec, stats: Any) -> np.ndarray:
    if spec.masked:
        if not (isinstance(stats, np.ndarray) and stats.dtype == np.uint64 and stats.shape == (len(spec.stats),)):
            raise Malformed("masked cell is not a uint64 array of the query's statistics")
        return stats
    try:
        arr = np.asarray(stats, dtype=np.float64)
    except (TypeError, ValueError):
        raise Malformed("cell statistics are not numbers") from None
    if arr.shape != (len(spec.stats),) or not np.all(np.isfinite(arr)):
        raise Malformed(f"cell statistics {stats!r}")
    return arr


def release(spec: QuerySpec, site: str, raw: Any) -> dict[str, Any]:
    """A site's release for ``spec``, checked and rebuilt; a refusal or a malformed one as ``refused``."""
    try:
        if not isinstance(raw, dict):
            raise Malformed("not a mapping")
        if raw.get("refused") is not None:
            return {"site": site, "refused": str(raw["refused"])[:1000]}
        if bool(raw.get("masked")) != spec.masked:
            raise Malformed("masked or not, unlike the query")
        cells, seen = [], set()
        for cell in raw.get("cells") or []:
            if not (isinstance(cell, (list, tuple)) and len(cell) == 3):
                raise Malformed("a cell is not [group, bin, statistics]")
            key = _key(spec, cell[0], cell[1])
            if key in seen:
                raise Malformed(f"cell {key!r} sent twice")
            seen.add(key)
            cells.append([key[0], key[1], _stats(spec, cell[2])])
        suppressed = [list(_key(spec, *c)) for c in raw.get("suppressed") or []
                      if isinstance(c, (list, tuple)) and len(c) == 2]
        noise = raw.get("noise") if isinstance(raw.get("noise"), dict) else None
        return {"site": site, "refused": None, "cells": cells, "suppressed": suppressed, "noise": noise,
                "masked": spec.masked}
    except Malformed as exc:
        return {"site": site, "refused": f"malformed release: {exc}"}


def quantile_answer(site: str, raw: Any, probes: dict[str, list[list[float]]] | None) -> dict[str, Any] | None:
    """A site's quantile answer: one [n1, min1, max1, n2, min2, max2] per probe of each group it answers."""
    if raw is None:
        return None
    try:
        if not isinstance(raw, dict):
            raise Malformed("not a mapping")
        if raw.get("refused") is not None:
            return {"refused": str(raw["refused"])[:1000]}
        answers = {}
        for group, parts in (raw.get("answers") or {}).items():
            wanted = 1 if probes is None else len(probes.get(group, []))
            if not isinstance(group, str) or not isinstance(parts, list) or len(parts) != wanted:
                raise Malformed(f"answers for group {group!r}")
            rows = []
            for part in parts:
                values = [float(x) for x in part] if isinstance(part, (list, tuple)) and len(part) == 6 else []
                if not values or any(math.isnan(x) for x in values) or not all(
                        n >= 0 and math.isfinite(n) and n == int(n) for n in (values[0], values[3])):
                    raise Malformed(f"answer {part!r}")
                rows.append(values)
            answers[group] = rows
        suppressed = [str(g) for g in raw.get("suppressed") or []]
        return {"refused": None, "answers": answers, "suppressed": suppressed}
    except (Malformed, TypeError, ValueError) as exc:
        return {"refused": f"malformed quantile answer: {exc}"}


def public_key(raw: Any) -> np.ndarray | None:
    """A 32-byte X25519 public key, or None."""
    if isinstance(raw, np.ndarray) and raw.dtype == np.uint8 and raw.shape == (32,):
        return raw
    return None
