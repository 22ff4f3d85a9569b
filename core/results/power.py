"""How many seeds a comparison needs: the power of Welch's test across seeds.

Across seeds, a model's gain is judged against its seed-to-seed spread; with a small gain and few
seeds the test cannot reach p < 0.01 even when the gain is real (on Sports ECL-SR's gain over SASRec
was two thirds of one seed's spread). Before spending an hour a seed, a researcher wants to know how
many seeds a side the difference needs. This module answers it under the usual planning
assumption: the observed difference and spreads are the true ones. That makes it a plan for more
seeds, never evidence: power computed from the data that were tested only restates their p-value.

Welch's statistic with ``n_a`` and ``n_b`` seeds follows approximately a noncentral t with the
Welch–Satterthwaite degrees of freedom and noncentrality ``diff / sqrt(s_a²/n_a + s_b²/n_b)``.
Its tail is computed here by quadrature (no scipy needed; tests check it against
``scipy.stats.nct``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from eclsr.errors import EclsrError
from eclsr.results.stats import betainc

POWER_TARGET = 0.8  # the conventional planning target
MAX_SEEDS = 1000  # beyond this a plan is no plan; reported as "more than"


@dataclass(frozen=True)
class SeedPlan:
    """Welch's test across seeds for one metric, now and with more seeds."""

    diff: float  # mean(B) - mean(A) over the seeds so far
    sd_a: float
    sd_b: float
    power_now: float  # at the present seed counts
    seeds_needed: int | None  # per side, for ``target`` power at ``alpha``; None: > MAX_SEEDS
    alpha: float
    target: float


def student_sf(t: float, df: float) -> float:
    """``P(T > t)`` for Student's t with ``df`` degrees of freedom."""
    if math.isinf(df):
        return 0.5 * math.erfc(t / math.sqrt(2.0))
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


def student_isf(p: float, df: float) -> float:
    """The ``t`` with ``P(T > t) = p`` (0 < p < 0.5), by bisection on :func:`student_sf`."""
    low, high = 0.0, 1.0
    while student_sf(high, df) > p:
        high *= 2.0
    for _ in range(200):
        middle = 0.5 * (low + high)
        if student_sf(middle, df) > p:
            low = middle
        else:
            high = middle
        if high - low < 1e-12 * max(1.0, high):
            break
    return 0.5 * (low + high)


def noncentral_t_sf(t: float, df: float, shift: float) -> float:
    """``P(T' > t)`` for a noncentral t: ``T' = (Z + shift) / sqrt(V / df)``, ``V ~ chi²(df)``.

    Conditioning on ``S = sqrt(V / df)`` gives ``P(Z > t·S − shift)``; the expectation over S is
    taken on a grid wide enough to hold all but ~1e-12 of S's mass (its spread is
    ``1 / sqrt(2 df)`` around 1), accurate to 1e-6 or better for every df ≥ 1.
    """
    if math.isinf(df):
        return 0.5 * math.erfc((t - shift) / math.sqrt(2.0))
    spread = 1.0 / math.sqrt(2.0 * df)
    upper = 1.0 + 16.0 * spread + 4.0
    # s = upper·x²: S's density grows like s^(df−1) from 0, which a plain grid in s integrates
    # badly for df < 2 (two seeds a side); in x the integrand grows like the smooth x^(2df−1).
    x = np.linspace(0.0, 1.0, 20_001)[1:]
    s = upper * x * x
    half = df / 2.0
    # log density of S: V = df·S², so f(s) = f_V(df s²) · 2 df s
    log_density = (
        math.log(2.0) + half * math.log(half) - math.lgamma(half) + (df - 1.0) * np.log(s)
    ) - half * s * s
    weight = np.exp(log_density) * 2.0 * upper * x  # f(s) ds/dx
    tail = 0.5 * _erfc((t * s - shift) / math.sqrt(2.0))
    return float(np.clip(np.trapezoid(weight * tail, x), 0.0, 1.0))


def _erfc(x: np.ndarray) -> np.ndarray:
    return np.array([math.erfc(v) for v in x.tolist()])


def welch_power(
    diff: float, sd_a: float, sd_b: float, n_a: int, n_b: int, alpha: float = 0.01
) -> float:
    """Power of the two-sided Welch test at ``alpha`` when the truth is ``diff`` with these spreads."""
    if n_a < 2 or n_b < 2:
        msg = f"Welch's test needs two seeds a side, got {n_a} and {n_b}."
        raise EclsrError(msg)
    var_a, var_b = sd_a * sd_a / n_a, sd_b * sd_b / n_b
    spread = var_a + var_b
    if spread == 0.0:
        return 0.0 if diff == 0.0 else 1.0
    df = spread**2 / (var_a**2 / (n_a - 1) + var_b**2 / (n_b - 1))
    shift = abs(diff) / math.sqrt(spread)
    critical = student_isf(alpha / 2.0, df)
    return noncentral_t_sf(critical, df, shift) + noncentral_t_sf(critical, df, -shift)


def seeds_for_power(
    diff: float, sd_a: float, sd_b: float, alpha: float = 0.01, target: float = POWER_TARGET
) -> int | None:
    """The fewest seeds per side giving ``target`` power; None when more than MAX_SEEDS."""
    if welch_power(diff, sd_a, sd_b, MAX_SEEDS, MAX_SEEDS, alpha) < target:
        return None
    low, high = 2, MAX_SEEDS  # power grows with n: bisect for the first n that reaches target
    while low < high:
        middle = (low + high) // 2
        if welch_power(diff, sd_a, sd_b, middle, middle, alpha) >= target:
            high = middle
        else:
            low = middle + 1
    return low


def plan_seeds(
    values_a: Sequence[float],
    values_b: Sequence[float],
    alpha: float = 0.01,
    target: float = POWER_TARGET,
) -> SeedPlan | None:
    """The plan for one metric from each seed's value on both sides; None without two a side."""
    a, b = np.asarray(values_a, dtype=np.float64), np.asarray(values_b, dtype=np.float64)
    if a.size < 2 or b.size < 2:
        return None
    diff, sd_a, sd_b = float(b.mean() - a.mean()), float(a.std(ddof=1)), float(b.std(ddof=1))
    return SeedPlan(
        diff,
        sd_a,
        sd_b,
        welch_power(diff, sd_a, sd_b, a.size, b.size, alpha),
        seeds_for_power(diff, sd_a, sd_b, alpha, target),
        alpha,
        target,
    )
