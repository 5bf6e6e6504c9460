"""Eligibility rules: ``aggregator.settings.eligibility: {min_samples, fx_versions, max_update_norm, max_data_size}``.

Checked when a collaborator reports its capabilities (a second Join, once its data is loaded) and on every
training result. Every refusal names the rule, so the collaborator and the audit log say which one failed.
A collaborator's claims (sample counts, data sizes) are unverified; the update norm is measured here.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from fx_cli.errors import PlanError

WHERE = "aggregator.settings.eligibility"
KEYS = ("min_samples", "fx_versions", "max_update_norm", "max_data_size")
_CLAUSE = re.compile(r"^(>=|<=|==|!=|>|<)\s*(\d+(?:\.\d+)*)$")


@dataclass(frozen=True)
class Eligibility:
    min_samples: int | None = None
    fx_versions: str | None = None  # e.g. ">=0.1,<2"
    max_update_norm: float | None = None
    max_data_size: int | None = None

    @classmethod
    def from_settings(cls, raw: Any) -> Eligibility | None:
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise PlanError([f"{WHERE}: expected a mapping with keys {', '.join(KEYS)}, got {raw!r}"])
        problems = [f"{WHERE}.{k}: unknown key (known: {', '.join(KEYS)})" for k in raw if k not in KEYS]
        for key in ("min_samples", "max_data_size"):
            v = raw.get(key)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                problems.append(f"{WHERE}.{key}: expected a whole number >= 1, got {v!r}")
        norm = raw.get("max_update_norm")
        if norm is not None and (isinstance(norm, bool) or not isinstance(norm, (int, float)) or not norm > 0
                                 or not math.isfinite(norm)):
            problems.append(f"{WHERE}.max_update_norm: expected a number > 0, got {norm!r}")
        spec = raw.get("fx_versions")
        if spec is not None and (not isinstance(spec, str) or not _clauses(spec)):
            problems.append(f"{WHERE}.fx_versions: expected clauses like '>=0.1,<2', got {spec!r}")
        if problems:
            raise PlanError(problems)
        return cls(raw.get("min_samples"), spec, None if norm is None else float(norm), raw.get("max_data_size"))

    def check_join(self, train_samples: int, fx_version: str) -> str:
        """'' when eligible, else the refusal naming the rule."""
        if self.min_samples is not None and train_samples < self.min_samples:
            return (f"not eligible: rule min_samples: {train_samples} training samples, at least "
                    f"{self.min_samples} required")
        if self.fx_versions is not None and not version_allowed(fx_version, self.fx_versions):
            return f"not eligible: rule fx_versions: fx {fx_version or '(unknown)'} is outside {self.fx_versions}"
        return ""

    def check_claim(self, data_size: int) -> str:
        """'' when a training result's claimed data size is acceptable, else the refusal naming the rule."""
        if self.min_samples is not None and data_size < self.min_samples:
            return f"not eligible: rule min_samples: the result claims {data_size} samples, at least " \
                   f"{self.min_samples} required"
        if self.max_data_size is not None and data_size > self.max_data_size:
            return f"not eligible: rule max_data_size: the result claims {data_size} samples, at most " \
                   f"{self.max_data_size} allowed"
        return ""

    def check_norm(self, norm: float) -> str:
        if self.max_update_norm is not None and not norm <= self.max_update_norm:
            return f"not eligible: rule max_update_norm: the update moves the model by {norm:.4g} (L2), at most " \
                   f"{self.max_update_norm:g} allowed"
        return ""


def update_norm(model: Any, path: Any, crcs: tuple[int, ...]) -> float:
    """L2 norm of (spilled update − global model), read one tensor at a time."""
    from fx_cli.aggregator.intake import load_spilled

    total = 0.0
    for entry, crc in zip(model.entries, crcs):
        diff = load_spilled(path, model, entry.name, crc).astype(np.float64) - model.read(entry.name)
        total += float(np.dot(diff.ravel(), diff.ravel()))
    return math.sqrt(total)


def _clauses(spec: str) -> list[tuple[str, tuple[int, ...]]] | None:
    out = []
    for part in spec.split(","):
        m = _CLAUSE.match(part.strip())
        if not m:
            return None
        out.append((m.group(1), _version(m.group(2))))
    return out


def _version(text: str) -> tuple[int, ...]:
    nums = [int(x) for x in re.findall(r"\d+", text.split("+")[0])[:4]]
    while len(nums) > 1 and nums[-1] == 0:
        nums.pop()
    return tuple(nums)


def version_allowed(version: str, spec: str) -> bool:
    """Whether ``version`` satisfies every clause of ``spec`` (numeric release parts only)."""
    if not re.match(r"^\d+(\.\d+)*", version or ""):
        return False
    v = _version(version)
    for op, bound in _clauses(spec) or []:
        ok = {">=": v >= bound, "<=": v <= bound, ">": v > bound, "<": v < bound, "==": v == bound,
              "!=": v != bound}[op]
        if not ok:
            return False
    return True


def refusal_of(rules: Eligibility | None, model: Any, data_size: int, spilled: Any) -> str:
    """The rule a received training result breaks ('' when none; results without tensors are not checked)."""
    if rules is None or spilled.path is None:
        return ""
    problem = rules.check_claim(data_size)
    if not problem and rules.max_update_norm is not None:
        problem = rules.check_norm(update_norm(model, spilled.path, spilled.crcs))
    return problem


def discard_spill(spilled: Any) -> None:
    if spilled.path is not None:
        spilled.path.unlink(missing_ok=True)
