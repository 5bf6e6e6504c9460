"""Rényi DP of the Poisson-subsampled Gaussian mechanism, and its conversion to (ε, δ).

The formulas are those of Mironov, Talwar and Zhang, "Rényi Differential Privacy of the Sampled
Gaussian Mechanism" (2019): integer orders by the finite binomial expansion, fractional orders by the
two infinite series with erfc terms. Everything is summed in log space (signed where the generalised
binomial coefficients alternate), so large orders, tiny sampling rates and small noise stay finite.
The (ε, δ) conversion is Proposition 12 of Canonne, Kamath and Steinke (2020), the tighter bound
that modern accountants use.
"""
from __future__ import annotations

import math
from typing import Sequence

# Orders at which the RDP curve is evaluated: dense near 1 (small ε), sparse far out (large ε).
DEFAULT_ORDERS: tuple[float, ...] = tuple(
    [1 + x / 10 for x in range(1, 100)] + [float(a) for a in range(11, 64)] + [128.0, 256.0, 512.0, 1024.0])
# Terms of the fractional series below exp(-_SERIES_CUTOFF) times the running sum are dropped.
_SERIES_CUTOFF = 36.0
_MAX_TERMS = 10_000


def _log_add(a: float, b: float) -> float:
    """log(exp(a) + exp(b)) without overflow."""
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    hi, lo = max(a, b), min(a, b)
    return hi + math.log1p(math.exp(lo - hi))


def _log_sub(a: float, b: float) -> float:
    """log(exp(a) - exp(b)) for a >= b."""
    if b == -math.inf:
        return a
    if a == b:
        return -math.inf
    if a < b:
        raise ValueError("log-space subtraction would be negative")
    return a + math.log(-math.expm1(b - a))


def log_erfc(x: float) -> float:
    """log(erfc(x)), finite far into the tail where erfc itself underflows."""
    if x < 20.0:
        return math.log(math.erfc(x))
    # Asymptotic expansion erfc(x) = exp(-x²)/(x√π) · (1 - 1/(2x²) + 3/(4x⁴) - 15/(8x⁶) + …).
    r = 1.0 / (x * x)
    series = 1.0 - r / 2 + 3 * r * r / 4 - 15 * r ** 3 / 8 + 105 * r ** 4 / 16
    return -x * x - math.log(x) - 0.5 * math.log(math.pi) + math.log(series)


def _log_binom(alpha: float, k: int) -> float:
    """log |C(alpha, k)| for real alpha >= 0 and integer k >= 0 (generalised binomial)."""
    return math.lgamma(alpha + 1) - math.lgamma(k + 1) - math.lgamma(alpha - k + 1)


def _log_a_int(q: float, sigma: float, alpha: int) -> float:
    """log A_α for integer α: Σ_k C(α,k) (1-q)^(α-k) q^k exp((k²-k)/(2σ²))."""
    total = -math.inf
    log_q, log_1q = math.log(q), math.log1p(-q)
    for k in range(alpha + 1):
        term = (math.lgamma(alpha + 1) - math.lgamma(k + 1) - math.lgamma(alpha - k + 1)
                + k * log_q + (alpha - k) * log_1q + (k * k - k) / (2 * sigma * sigma))
        total = _log_add(total, term)
    return total


def _log_a_frac(q: float, sigma: float, alpha: float) -> float:
    """log A_α for fractional α: the two erfc series, terms with alternating sign kept apart."""
    log_q, log_1q = math.log(q), math.log1p(-q)
    z0 = sigma * sigma * math.log(1 / q - 1) + 0.5
    pos = neg = -math.inf
    floor_alpha = math.floor(alpha)
    for i in range(_MAX_TERMS):
        log_coef = _log_binom(alpha, i)
        j = alpha - i
        s = math.sqrt(2) * sigma
        log_t0 = log_coef + i * log_q + j * log_1q + (i * i - i) / (2 * sigma ** 2) + math.log(0.5) \
            + log_erfc((i - z0) / s)
        log_t1 = log_coef + j * log_q + i * log_1q + (j * j - j) / (2 * sigma ** 2) + math.log(0.5) \
            + log_erfc((z0 - j) / s)
        term = _log_add(log_t0, log_t1)
        past = i - 1 - floor_alpha  # factors (α - j) < 0 in C(α, i): its sign alternates after i = ⌊α⌋ + 1
        negative = past > 0 and past % 2 == 1
        if negative:
            neg = _log_add(neg, term)
        else:
            pos = _log_add(pos, term)
        if i > alpha and term < max(pos, neg) - _SERIES_CUTOFF:
            break
    return _log_sub(pos, neg)


def rdp_subsampled_gaussian(q: float, noise_multiplier: float, order: float) -> float:
    """RDP ε(α) of one step of the Poisson-subsampled Gaussian mechanism (sensitivity 1, std = z)."""
    if not 0 <= q <= 1:
        raise ValueError(f"sampling rate must be in [0, 1], got {q}")
    if order <= 1:
        raise ValueError(f"RDP order must be > 1, got {order}")
    if q == 0:
        return 0.0
    if noise_multiplier <= 0:
        return math.inf
    if q == 1.0:
        return order / (2 * noise_multiplier ** 2)
    if float(order).is_integer():
        log_a = _log_a_int(q, noise_multiplier, int(order))
    else:
        log_a = _log_a_frac(q, noise_multiplier, order)
    return max(0.0, log_a / (order - 1))


def rdp_curve(q: float, noise_multiplier: float, steps: int,
              orders: Sequence[float] = DEFAULT_ORDERS) -> list[float]:
    """RDP at each order after ``steps`` compositions (RDP adds up linearly)."""
    return [steps * rdp_subsampled_gaussian(q, noise_multiplier, a) for a in orders]


def epsilon_from_rdp(rdp: Sequence[float], delta: float,
                     orders: Sequence[float] = DEFAULT_ORDERS) -> tuple[float, float]:
    """(ε, best order) for target δ: min over orders of ε(α) + log(1-1/α) - log(δα)/(α-1)."""
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    best, best_order = math.inf, math.nan
    for a, r in zip(orders, rdp):
        if r < 0 or math.isnan(r):
            continue
        if delta * delta + math.expm1(-r) > 0:
            eps = 0.0  # the KL bound alone gives δ ≥ sqrt(1 - exp(-r)): nothing to pay
        elif a > 1.01:
            eps = r + math.log1p(-1 / a) - math.log(delta * a) / (a - 1)
        else:
            continue
        if eps < best:
            best, best_order = eps, a
    return max(0.0, best), best_order
