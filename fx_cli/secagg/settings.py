"""The plan's ``secure_aggregation`` section (used when ``aggregator.settings.secure_aggregation: true``).

Importing this module is cheap (no numpy, no cryptography): plan validation runs it for every plan.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping, Optional

# Aggregations that need only the (weighted) sum of updates, which is all secure aggregation reveals.
SUM_ONLY = ("fx_cli.aggregation.WeightedAverage", "fx_cli.aggregation.fedavg.WeightedAverage",
            "openfl.interface.aggregation_functions.WeightedAverage")


@dataclass(frozen=True)
class SecAggSettings:
    # Shares needed to unmask (t of n); None: two thirds of the collaborators, rounded up.
    threshold: Optional[int] = None
    # Update values (deltas from the global model) are clipped to [-clipping_range, clipping_range].
    clipping_range: float = 8.0
    # 2^quantization_bits - 1 integer levels across the clipping range.
    quantization_bits: int = 22
    # Masked sums are taken mod 2^modulus_bits.
    modulus_bits: Literal[32, 64] = 64
    # Largest data-size weight of one collaborator (larger ones are refused when they upload).
    max_weight: int = 2 ** 20
    # The overflow check at plan validation assumes at most this many collaborators.
    max_collaborators: int = 1024


def overflow_problem(n: int, max_weight: int, quantization_bits: int, modulus_bits: int) -> str | None:
    """Why a sum of ``n`` weighted vectors could wrap around (None when it cannot)."""
    worst = n * max_weight * (2 ** quantization_bits - 1)
    if worst < 2 ** modulus_bits:
        return None
    return (f"{n} collaborators × max_weight {max_weight} × (2^{quantization_bits} - 1) quantization levels needs "
            f"{worst.bit_length()} bits, more than modulus_bits {modulus_bits}")


def secagg_of(config: Mapping[str, Any]) -> SecAggSettings | None:
    """The settings when ``aggregator.settings.secure_aggregation`` is true, else None."""
    if not ((config.get("aggregator") or {}).get("settings") or {}).get("secure_aggregation"):
        return None
    values = (config.get("secure_aggregation") or {}).get("settings") or {}
    known = set(SecAggSettings.__dataclass_fields__)
    return SecAggSettings(**{k: v for k, v in values.items() if k in known})


def check_secagg(config: Mapping[str, Any], file: str) -> list[str]:
    """Value problems of the section and its conflicts with the rest of the plan."""
    try:
        s = secagg_of(config)
    except TypeError:
        return []
    if s is None:
        return []
    where = f"{file}: secure_aggregation.settings"
    problems = []
    if not (isinstance(s.clipping_range, (int, float)) and s.clipping_range > 0):
        problems.append(f"{where}.clipping_range: expected a number > 0, got {s.clipping_range!r}")
    for key, low, high in (("quantization_bits", 1, 62), ("max_weight", 1, 2 ** 40), ("max_collaborators", 2, 10 ** 6)):
        value = getattr(s, key)
        if not (isinstance(value, int) and low <= value <= high):
            problems.append(f"{where}.{key}: expected an integer from {low} to {high}, got {value!r}")
    if s.threshold is not None and not (isinstance(s.threshold, int) and 2 <= s.threshold <= s.max_collaborators):
        problems.append(f"{where}.threshold: expected an integer >= 2 (or null), got {s.threshold!r}")
    if not problems:
        overflow = overflow_problem(s.max_collaborators, s.max_weight, s.quantization_bits, s.modulus_bits)
        if overflow:
            problems.append(f"{where}: the masked sum can overflow: {overflow}; lower quantization_bits, max_weight "
                            "or max_collaborators, or use modulus_bits: 64")
    for task, spec in (config.get("tasks") or {}).items():
        agg = spec.get("aggregation_type") if isinstance(spec, dict) else None
        template = agg if isinstance(agg, str) else (agg or {}).get("template") if isinstance(agg, dict) else None
        if template and template not in SUM_ONLY:
            problems.append(f"{file}: tasks.{task}.aggregation_type: {template} cannot be used with secure "
                            "aggregation: the aggregator only learns the weighted sum of the updates, and this "
                            "aggregation needs each update itself; use fx_cli.aggregation.WeightedAverage")
    privacy = (config.get("privacy") or {}).get("settings") or {}
    if config.get("privacy") is not None and privacy.get("mode", "central") == "central":
        problems.append(f"{file}: privacy.settings.mode: central needs the aggregator to clip each update, which "
                        "secure aggregation hides from it; use mode: local (each site clips and noises its own "
                        "update)")
    return problems
