"""Shamir t-of-n secret sharing of 32-byte secrets over GF(p), p = 2^521 - 1 (a Mersenne prime)."""
from __future__ import annotations

import secrets
from typing import Mapping

PRIME = 2 ** 521 - 1
SHARE_BYTES = 66  # 521 bits


def split(secret: bytes, threshold: int, xs: list[int]) -> dict[int, int]:
    """Shares ``{x: f(x)}`` of ``secret`` for each nonzero ``x``; any ``threshold`` of them rebuild it."""
    if not 1 <= threshold <= len(xs):
        raise ValueError(f"threshold {threshold} must be between 1 and the number of shares {len(xs)}")
    if len(set(xs)) != len(xs) or any(not 0 < x < PRIME for x in xs):
        raise ValueError("share points must be distinct and nonzero")
    coefficients = [int.from_bytes(secret, "big")] + [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
    return {x: _evaluate(coefficients, x) for x in xs}


def _evaluate(coefficients: list[int], x: int) -> int:
    result = 0
    for c in reversed(coefficients):
        result = (result * x + c) % PRIME
    return result


def combine(shares: Mapping[int, int], length: int = 32) -> bytes:
    """The secret from ``shares`` (at least the threshold of them; fewer give an unrelated value)."""
    xs = list(shares)
    total = 0
    for j in xs:
        num, den = 1, 1
        for m in xs:
            if m != j:
                num = num * m % PRIME
                den = den * (m - j) % PRIME
        total = (total + shares[j] * num * pow(den, -1, PRIME)) % PRIME
    if total >= 2 ** (8 * length):
        raise ValueError("the shares do not rebuild a secret of this length (too few or inconsistent shares)")
    return total.to_bytes(length, "big")
