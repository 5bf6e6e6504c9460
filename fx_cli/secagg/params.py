"""Parameters of one secure-aggregation round (from the plan's ``secure_aggregation`` section)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SecAggParams:
    threshold: int  # t: shares needed to rebuild a secret; the round needs t survivors
    clipping_range: float = 8.0  # update values are clipped to [-r, r] before quantization
    quantization_bits: int = 22  # 2^b - 1 levels across [-r, r]
    modulus_bits: int = 64  # sums are taken mod 2^k (32 or 64)
    max_weight: int = 2 ** 20  # largest data-size weight a collaborator may use
