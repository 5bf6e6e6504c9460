"""The data owner's limits (a YAML file at the site). A plan may ask for stricter, never looser.

    min_count: 10                # smallest cell a site releases
    max_epsilon_per_query: 1.0
    max_epsilon_total: 10.0      # over every run, kept in the site's ledger
    max_delta_per_query: 1.0e-5
    max_delta_total: 1.0e-4
    require_noise: false         # true: exact (noise-free) queries are refused
    max_bins_percent: 10         # a histogram may have at most this % of the site's row count as bins
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

from fx_cli.errors import FxError


@dataclass(frozen=True)
class SiteLimits:
    """What this site releases at most."""

    min_count: int = 10
    max_epsilon_per_query: float = 1.0
    max_epsilon_total: float = 10.0
    max_delta_per_query: float = 1e-5
    max_delta_total: float = 1e-4
    require_noise: bool = False
    max_bins_percent: float = 10.0

    def with_plan(self, min_count: int | None) -> SiteLimits:
        """The plan's minimum count applies only when it is stricter than the site's."""
        if min_count is None or min_count <= self.min_count:
            return self
        return replace(self, min_count=int(min_count))


def parse_limits(raw: Any, source: str) -> SiteLimits:
    """Check a limits mapping; every problem names the key."""
    if raw is None:
        return SiteLimits()
    if not isinstance(raw, dict):
        raise FxError(f"{source}: expected a mapping of limits, got {type(raw).__name__}")
    known = {f.name: f for f in fields(SiteLimits)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise FxError(f"{source}: unknown key(s) {', '.join(unknown)}", "known keys: " + ", ".join(sorted(known)))
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "require_noise":
            if not isinstance(value, bool):
                raise FxError(f"{source}: require_noise must be true or false, got {value!r}")
            values[key] = value
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise FxError(f"{source}: {key} must be a number >= 0, got {value!r}")
        values[key] = int(value) if key == "min_count" else float(value)
    return SiteLimits(**values)


def load_limits(path: str | Path | None) -> SiteLimits:
    """The site's limits file, or the defaults when there is none."""
    if path is None or not Path(path).exists():
        return SiteLimits()
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise FxError(f"{path}: not valid YAML: {exc}") from None
    return parse_limits(raw, str(path))
