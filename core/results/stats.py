"""Paired significance tests over per-user metrics (the paper's paired t-test, p < 0.01).

Per-user metrics come from the target ranks saved in every run's ``ranks.npz``:
``recall@K = [rank <= K]``, ``ndcg@K = 1/log2(rank + 1)`` if ``rank <= K`` else 0,
``mrr@K = 1/rank`` if ``rank <= K`` else 0. Two runs on the same protocol rank the same users, so
the values pair up user by user.

Tests use ``scipy.stats`` when it is installed (the ``stats`` or ``dev`` extra). Without scipy, the
paired t-test is computed here exactly (Student's t distribution through the regularised
incomplete beta function) and the Wilcoxon signed-rank test by its normal approximation (zeros
dropped, tie-corrected, no continuity correction — scipy's ``asymptotic`` method, which scipy's
default also uses above 50 pairs or with ties).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from eclsr.errors import EclsrError

_METRIC = re.compile(r"^(recall|hit|ndcg|mrr)@([1-9]\d*)$")


def have_scipy() -> bool:
    """True when ``scipy.stats`` can be imported."""
    try:
        import scipy.stats  # noqa: F401
    except ImportError:
        return False
    return True


def per_user_metric(ranks: np.ndarray, metric: str) -> np.ndarray:
    """``[U]`` float64 values of ``metric`` (``recall@10``, ``hit@10``, ``ndcg@20``, ``mrr@5``)."""
    match = _METRIC.match(metric.strip().lower())
    if not match:
        msg = f"unknown metric {metric!r}; use recall@K (= hit@K), ndcg@K or mrr@K, e.g. ndcg@10."
        raise EclsrError(msg)
    name, k = match.group(1), int(match.group(2))
    ranks = np.asarray(ranks, dtype=np.float64)
    hit = ranks <= k
    if name in ("recall", "hit"):
        return hit.astype(np.float64)
    if name == "ndcg":
        return np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0)
    return np.where(hit, 1.0 / ranks, 0.0)


@dataclass(frozen=True)
class PairedTest:
    """Outcome of the paired tests for one metric (B − A)."""

    metric: str
    n: int
    mean_a: float
    mean_b: float
    t: float
    p_t: float
    w: float
    p_w: float
    exact_scipy: bool

    @property
    def diff(self) -> float:
        """``mean_b - mean_a``."""
        return self.mean_b - self.mean_a


def paired_tests(a: np.ndarray, b: np.ndarray, metric: str = "") -> PairedTest:
    """Paired t-test and Wilcoxon signed-rank test of ``b`` against ``a`` (two-sided).

    Identical samples give ``t = 0`` and ``p = 1`` for both tests.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size < 2:
        msg = f"paired tests need two 1-d samples of the same length >= 2, got {a.shape} and {b.shape}."
        raise EclsrError(msg)
    scipy_ok = have_scipy()
    if np.all(a == b):
        t, p_t, w, p_w = 0.0, 1.0, 0.0, 1.0
    elif scipy_ok:
        t, p_t, w, p_w = _scipy_tests(a, b)
    else:
        (t, p_t), (w, p_w) = ttest_rel(a, b), wilcoxon_normal(a, b)
    return PairedTest(
        metric, int(a.size), float(a.mean()), float(b.mean()), t, p_t, w, p_w, scipy_ok
    )


def _scipy_tests(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float, float]:
    from scipy import stats

    t = stats.ttest_rel(b, a)
    w = stats.wilcoxon(b, a)
    return float(t.statistic), float(t.pvalue), float(w.statistic), float(w.pvalue)


def ttest_rel(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Paired t statistic of ``b - a`` and its two-sided p-value (no scipy needed)."""
    d = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    n = d.size
    sd = float(d.std(ddof=1))
    if sd == 0.0:
        mean = float(d.mean())
        return (0.0, 1.0) if mean == 0.0 else (math.copysign(math.inf, mean), 0.0)
    t = float(d.mean()) / (sd / math.sqrt(n))
    df = n - 1
    return t, min(1.0, betainc(df / 2.0, 0.5, df / (df + t * t)))


def welch_ttest(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Welch's unequal-variance t-test of ``mean(b) - mean(a)``: ``(t, df, two-sided p)``.

    Used across seeds, where each sample holds one value per seed (say, each seed's test
    Recall@10): the per-user tests treat one training run as fixed and ignore how much the
    metric moves from seed to seed; this one asks whether the difference exceeds that spread.
    Needs at least two values on each side. When neither side varies the difference is
    certain (p 0) or absent (p 1).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or b.ndim != 1 or a.size < 2 or b.size < 2:
        msg = f"a test across seeds needs at least two seeds per model, got {a.size} and {b.size}."
        raise EclsrError(msg)
    diff = float(b.mean() - a.mean())
    var_a, var_b = float(a.var(ddof=1)) / a.size, float(b.var(ddof=1)) / b.size
    spread = var_a + var_b
    if spread == 0.0:
        return (
            (0.0, math.inf, 1.0) if diff == 0.0 else (math.copysign(math.inf, diff), math.inf, 0.0)
        )
    t = diff / math.sqrt(spread)
    df = spread**2 / (var_a**2 / (a.size - 1) + var_b**2 / (b.size - 1))
    return t, df, min(1.0, betainc(df / 2.0, 0.5, df / (df + t * t)))


def wilcoxon_normal(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Wilcoxon signed-rank statistic ``min(R+, R-)`` of ``b - a`` and its normal-approximation p."""
    d = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    d = d[d != 0]
    n = d.size
    if n == 0:
        return 0.0, 1.0
    ranks, tie_sizes = _average_ranks(np.abs(d))
    r_plus = float(ranks[d > 0].sum())
    r_minus = float(ranks[d < 0].sum())
    mean = n * (n + 1) / 4.0
    var = (n * (n + 1) * (2 * n + 1) - float((tie_sizes**3 - tie_sizes).sum()) / 2.0) / 24.0
    z = (r_plus - mean) / math.sqrt(var)
    return min(r_plus, r_minus), math.erfc(abs(z) / math.sqrt(2.0))


def _average_ranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """1-based ranks with ties averaged, and the size of every group of ties."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    sizes = np.diff(np.r_[starts, values.size])
    average = starts + (sizes + 1) / 2.0  # mean of ranks start+1 .. start+size
    ranks = np.empty(values.size)
    ranks[order] = np.repeat(average, sizes)
    return ranks, sizes.astype(np.float64)


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta ``I_x(a, b)`` by Lentz's continued fraction."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def _beta_fraction(a: float, b: float, x: float, steps: int = 100_000) -> float:
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, steps):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return result
