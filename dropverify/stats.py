"""Thin statistical layer over scipy.stats and statsmodels.

Every test here comes as a pair, in the manner of TensorFlow Probability's
``statistical_testing``: a *look* (p-value, confidence interval, equivalence decision) and
a *design* companion (the minimum detectable deviation at a sample size, and the sample
size needed for a deviation). Error rates:

* false alarm (type I): a look rejects "the contract holds" with probability <= its alpha
  when the contract holds;
* false pass: a look certifies "|deviation| <= margin" with probability <= its alpha when
  the true deviation exceeds the margin (TOST logic: the two-sided ``1 - alpha`` interval
  lies inside the margin);
* power: a deviation of at least ``mdd`` is detected with probability >= ``power``.

Sequential sampling uses Bonferroni alpha spending over ``K`` pre-planned looks: each look
is run at ``alpha / K``, so stopping at the first decisive look — at any data-dependent
time — keeps every error rate at or below ``alpha``; the sequential p-value is
``min(1, K * min_k p_k)``. Across a run, :func:`holm` controls the family-wise rate.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
from scipy import stats as sps

__all__ = [
    "Interval", "Look", "SequentialPlan", "binomial_look", "mean_look",
    "binomial_mdd", "mean_mdd", "t_test_power", "binomial_n_for", "mean_n_for",
    "position_binomial_look", "holm", "z_two_sided", "calls_to_expose", "hidden_fault_fraction",
    "per_call_binomial_p", "per_step_hypergeom_p", "DESIGN_FACTOR",
]

DESIGN_FACTOR = 1.5
"""Every sample size is planned so that the margin is DESIGN_FACTOR x the deviation the test
detects with the stated power: the interval then lies inside the margin with high probability
when the layer is exact. One constant for every check."""


@dataclass(frozen=True)
class Interval:
    """A two-sided confidence interval at ``level`` (e.g. 0.999999)."""

    low: float
    high: float
    level: float

    def within(self, center: float, margin: float) -> bool:
        return center - margin <= self.low and self.high <= center + margin


@dataclass(frozen=True)
class Look:
    """One look at the data: the test of "estimate == expected" and the equivalence
    certificate "|estimate - expected| <= margin", both at ``alpha``."""

    estimate: float
    expected: float
    p_value: float
    ci: Interval
    n: int
    mdd: float
    margin: float
    alpha: float
    equivalent: Optional[bool] = None  # set where equivalence is decided otherwise (maps)
    constant: bool = False  # every sample equal: the statistic carries no information

    @property
    def rejects(self) -> bool:
        return self.p_value <= self.alpha

    @property
    def certifies(self) -> bool:
        if self.equivalent is not None:
            return self.equivalent
        return self.ci.within(self.expected, self.margin)


def z_two_sided(alpha: float) -> float:
    return float(sps.norm.isf(alpha / 2.0))


# --------------------------------------------------------------------------- binomial

def binomial_mdd(n: int, p0: float, alpha: float, power: float) -> float:
    """Smallest |p1 - p0| the two-sided level-``alpha`` binomial test detects with
    probability ``power`` after ``n`` trials (arcsine / Cohen's h normal approximation, as
    statsmodels' ``NormalIndPower`` with ``ratio=0``). ``inf`` when n = 0."""
    if n <= 0:
        return math.inf
    h = (z_two_sided(alpha) + float(sps.norm.isf(1 - power))) / math.sqrt(n)
    base = math.asin(math.sqrt(min(max(p0, 0.0), 1.0)))
    up = math.sin(min(base + h / 2.0, math.pi / 2)) ** 2 - p0
    down = p0 - math.sin(max(base - h / 2.0, 0.0)) ** 2
    return float(max(up, down))


def binomial_n_for(deviation: float, p0: float, alpha: float, power: float) -> int:
    """Trials needed so that :func:`binomial_mdd` <= ``deviation``."""
    if deviation <= 0:
        return 2**62
    p1 = min(max(p0 + deviation, 0.0), 1.0) if p0 <= 0.5 else min(max(p0 - deviation, 0.0), 1.0)
    h = abs(2 * math.asin(math.sqrt(p1)) - 2 * math.asin(math.sqrt(p0)))
    if h == 0:
        return 2**62
    z = z_two_sided(alpha) + float(sps.norm.isf(1 - power))
    return int(math.ceil((z / h) ** 2))


def binomial_look(k: int, n: int, p0: float, alpha: float, margin: float, power: float) -> Look:
    """Exact binomial test (``scipy.stats.binomtest``) of rate == ``p0`` and a
    Clopper-Pearson interval at level ``1 - alpha``."""
    k, n = int(k), int(n)
    if n == 0:
        return Look(math.nan, p0, 1.0, Interval(0.0, 1.0, 1 - alpha), 0, math.inf, margin, alpha)
    res = sps.binomtest(k, n, p0)
    ci = res.proportion_ci(confidence_level=1 - alpha, method="exact")
    return Look(k / n, p0, float(res.pvalue), Interval(float(ci.low), float(ci.high), 1 - alpha), n,
                binomial_mdd(n, p0, alpha, power), margin, alpha)


def position_binomial_look(counts: np.ndarray, n: int, q: np.ndarray, alpha: float,
                           power: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-position exact binomial tests, vectorised.

    Returns (two-sided p-values by the doubling method — conservative, valid without
    independence between positions —, Clopper-Pearson low, high at ``1 - alpha``, and the
    per-position minimum detectable deviation at ``alpha``/``power``).
    """
    counts = np.asarray(counts, dtype=np.int64)
    q = np.broadcast_to(np.asarray(q, dtype=np.float64), counts.shape)
    cdf = sps.binom.cdf(counts, n, q)
    sf = sps.binom.sf(counts - 1, n, q)
    pvals = np.minimum(1.0, 2.0 * np.minimum(cdf, sf))
    a2 = alpha / 2.0
    low = np.where(counts > 0, sps.beta.ppf(a2, counts, n - counts + 1), 0.0)
    high = np.where(counts < n, sps.beta.ppf(1 - a2, counts + 1, n - counts), 1.0)
    z = z_two_sided(alpha) + float(sps.norm.isf(1 - power))
    base = np.arcsin(np.sqrt(np.clip(q, 0, 1)))
    h = z / math.sqrt(max(n, 1))
    mdd = np.maximum(np.sin(np.minimum(base + h / 2, np.pi / 2)) ** 2 - q,
                     q - np.sin(np.maximum(base - h / 2, 0.0)) ** 2)
    return pvals, np.nan_to_num(low), np.nan_to_num(high, nan=1.0), mdd


# --------------------------------------------------------------------------- means

def t_test_power(n: int, effect: float, alpha: float) -> float:
    """Power of the two-sided one-sample t-test with ``n`` samples against a standardised
    shift ``effect`` (noncentral t, ``scipy.stats.nct``)."""
    if n < 2:
        return 0.0
    df = n - 1
    crit = float(sps.t.isf(alpha / 2.0, df))
    nc = effect * math.sqrt(n)
    with np.errstate(all="ignore"):
        upper = float(sps.nct.sf(crit, df, nc))
        lower = float(sps.nct.cdf(-crit, df, nc))
    # scipy's nct returns NaN in far tails; there the normal limit is accurate enough
    if not math.isfinite(upper):
        upper = float(sps.norm.sf(crit - nc))
    if not math.isfinite(lower):
        lower = float(sps.norm.cdf(-crit - nc))
    return min(max(upper + lower, 0.0), 1.0)


def mean_mdd(n: int, sd: float, alpha: float, power: float) -> float:
    """Smallest |mean shift| a two-sided one-sample t-test detects with probability
    ``power`` from ``n`` samples, in the units of ``sd`` (solved on the noncentral t; from
    ``n`` >= 100 the t-quantile approximation (t_{alpha/2, n-1} + t_{power, n-1}) sd / sqrt(n)
    times (1 + 2/n), which is far cheaper and errs on the safe side: for alpha in [1e-8, 1e-2]
    it overstates the exact value by 0 to 2.1 % — tests/test_stats.py)."""
    if n < 3 or not np.isfinite(sd):
        return math.inf
    if sd == 0:
        return 0.0
    if n >= 100:
        return float(_t_quantile_sum(n, alpha, power) * sd / math.sqrt(n) * (1 + 2 / n))
    return _standardised_mdd(n, alpha, power) * sd


@functools.lru_cache(maxsize=4096)
def _t_quantile_sum(n: int, alpha: float, power: float) -> np.float64:
    """t_{alpha/2, n-1} + t_{power, n-1} (cached: every look of every check asks again)."""
    return sps.t.isf(alpha / 2, n - 1) + sps.t.isf(1 - power, n - 1)


@functools.lru_cache(maxsize=4096)
def _standardised_mdd(n: int, alpha: float, power: float) -> float:
    """:func:`mean_mdd` in units of sd for n < 100, solved on the noncentral t (cached)."""
    from scipy.optimize import brentq
    hi = 2.0 * (z_two_sided(alpha) + float(sps.norm.isf(1 - power))) / math.sqrt(n - 2) + 1.0
    while t_test_power(n, hi, alpha) < power:
        hi *= 2.0
    return float(brentq(lambda d: t_test_power(n, d, alpha) - power, 0.0, hi, xtol=1e-10))


def mean_n_for(deviation: float, sd: float, alpha: float, power: float) -> int:
    """Samples needed so that a one-sample t-test detects ``deviation`` with ``power``."""
    if sd == 0:
        return 3
    if deviation <= 0:
        return 2**62
    z = z_two_sided(alpha) + float(sps.norm.isf(1 - power))
    n = max(3, int(math.ceil((z * sd / deviation) ** 2)))
    if n > 100_000:
        return n
    effect = deviation / sd
    lo = n - 1
    while t_test_power(n, effect, alpha) < power:  # the t penalty: beyond the normal n
        lo, n = n, int(math.ceil(n * 1.05)) + 1
    while n - lo > 1:  # smallest n with enough power (power grows with n)
        mid = (lo + n) // 2
        lo, n = (lo, mid) if t_test_power(mid, effect, alpha) >= power else (mid, n)
    return n


def mean_look(samples: Sequence[float], expected: float, alpha: float, margin: float,
              power: float, exact_tol: float = 1e-9) -> Look:
    """One-sample t-test (``scipy.stats.ttest_1samp``) of mean == ``expected`` with a
    t interval at ``1 - alpha``. The samples are i.i.d. per-call statistics (the harness
    never assumes independence inside a call). A sample with zero spread is decided
    exactly (a statistic that is constant by algebra, up to rounding): all equal to
    ``expected`` within ``exact_tol`` -> p = 1, else p = 0."""
    x = np.asarray(samples, dtype=np.float64)
    n = int(x.size)
    if n < 3:
        return Look(float(np.mean(x)) if n else math.nan, expected, 1.0,
                    Interval(-math.inf, math.inf, 1 - alpha), n, math.inf, margin, alpha)
    m = float(np.mean(x))
    sd = float(np.std(x, ddof=1))
    if sd <= exact_tol:
        ok = abs(m - expected) <= exact_tol * max(1.0, abs(expected))
        return Look(m, expected, 1.0 if ok else 0.0, Interval(m, m, 1 - alpha), n, 0.0, margin, alpha,
                    equivalent=False, constant=True)
    res = sps.ttest_1samp(x, expected)
    ci = res.confidence_interval(confidence_level=1 - alpha)
    return Look(m, expected, float(res.pvalue), Interval(float(ci.low), float(ci.high), 1 - alpha), n,
                mean_mdd(n, sd, alpha, power), margin, alpha)


# --------------------------------------------------------------------------- call-level faults

def hidden_fault_fraction(n_calls: int, alpha: float) -> float:
    """Largest fraction f of calls a fault can strike and still be absent from all ``n_calls``
    independent calls with probability > ``alpha``: f = 1 - alpha^(1/n). A fault striking at
    least this fraction of calls shows up in at least one call with probability >= 1 - alpha."""
    if n_calls <= 0:
        return 1.0
    return float(-math.expm1(math.log(alpha) / n_calls))


def calls_to_expose(fault_fraction: float, alpha: float, calls_per_step: int = 1) -> int:
    """Independent steps (of ``calls_per_step`` calls each) needed so that a fault striking a
    fraction ``fault_fraction`` of calls appears in at least one of the calls seen with
    probability >= 1 - alpha: ceil(ln(1/alpha) / (-calls_per_step ln(1 - f)))."""
    if not 0 < fault_fraction < 1:
        return 1
    return int(math.ceil(math.log(1.0 / alpha) / (-max(calls_per_step, 1) * math.log1p(-fault_fraction))))


def per_call_binomial_p(counts: Sequence[int], n: int, q: float) -> float:
    """Bonferroni p-value of "no call is an outlier": every call's dropped count is
    Binomial(n, q) (units independent within a call under the contract). Per call, the
    two-sided doubling p-value (conservative); the result is min(1, C * min_c p_c).
    Catches faults that strike whole calls (a call at rate 0.8 when p = 0.5)."""
    k = np.asarray(counts, dtype=np.int64)
    if k.size == 0 or n <= 0 or not 0 < q < 1:
        return 1.0
    p = np.minimum(1.0, 2.0 * np.minimum(sps.binom.cdf(k, n, q), sps.binom.sf(k - 1, n, q)))
    return float(min(1.0, k.size * float(p.min())))


def per_step_hypergeom_p(both: Sequence[int], first: Sequence[int], second: Sequence[int], n: int,
                         exact_top: int = 8) -> float:
    """Bonferroni p-value of "no step shows dependence": per step, the conditional (Fisher)
    test of the 2x2 table of n pairs with ``both`` co-events, given the margins ``first`` and
    ``second`` (hypergeometric; two-sided by doubling, conservative); min(1, S * min p).
    The exact tail is computed for the ``exact_top`` steps with the largest standardised
    deviation only: the minimum over a subset is >= the minimum over all, so the result can
    only be larger (conservative), and the most extreme step is always among them."""
    a = np.asarray(both, dtype=np.int64)
    if a.size == 0 or n <= 0:
        return 1.0
    r = np.asarray(first, dtype=np.int64)
    c = np.asarray(second, dtype=np.int64)
    mean = r * c / n
    var = r * c * (n - r) * (n - c) / max(n * n * (n - 1), 1)
    with np.errstate(all="ignore"):
        z = np.where(var > 0, np.abs(a - mean) / np.sqrt(var), 0.0)
    top = np.argsort(-z)[:exact_top]
    a, r, c = a[top], r[top], c[top]
    with np.errstate(all="ignore"):
        p = np.minimum(1.0, 2.0 * np.minimum(sps.hypergeom.cdf(a, n, r, c), sps.hypergeom.sf(a - 1, n, r, c)))
    p = np.where(np.isfinite(p), p, 1.0)
    return float(min(1.0, len(both) * float(p.min())))


# --------------------------------------------------------------------------- planning

@dataclass(frozen=True)
class SequentialPlan:
    """Looks at cumulative sample sizes ``looks`` (in calls), each at ``alpha / len(looks)``.

    ``alpha`` is the false-alarm (and false-pass) budget of one check; ``power`` the
    detection probability that defines the minimum detectable deviation.
    """

    alpha: float
    power: float
    looks: Tuple[int, ...]

    @property
    def alpha_per_look(self) -> float:
        return self.alpha / len(self.looks)

    @classmethod
    def geometric(cls, alpha: float, power: float, max_calls: int, n_looks: int = 4,
                  min_calls: int = 3) -> "SequentialPlan":
        """Looks at max_calls / 2^(K-1), ..., max_calls / 2, max_calls (deduplicated)."""
        max_calls = max(int(max_calls), min_calls)
        looks = sorted({max(min_calls, int(math.ceil(max_calls / 2 ** (n_looks - 1 - i))))
                        for i in range(n_looks)})
        return cls(alpha=alpha, power=power, looks=tuple(looks))

    def sequential_p(self, p_values: Sequence[float]) -> float:
        """Bonferroni-spending sequential p-value: min(1, K * min p_k)."""
        return float(min(1.0, len(self.looks) * min(p_values))) if len(p_values) else 1.0


def holm(p_values: Sequence[float], alpha: float) -> Tuple[np.ndarray, np.ndarray]:
    """Holm step-down (``statsmodels.stats.multitest.multipletests``): (reject, adjusted p)."""
    p = np.asarray(list(p_values), dtype=np.float64)
    if p.size == 0:
        return np.zeros(0, bool), np.zeros(0)
    from statsmodels.stats.multitest import multipletests
    reject, adjusted, _, _ = multipletests(p, alpha=alpha, method="holm")
    return reject, adjusted


EXACT_CMH_SUPPORT = 4000
"""Largest total support (sum over steps of min(r, c)) for which :func:`cmh_p` convolves the
exact null distribution; beyond it the counts are large and the normal approximation holds."""


@functools.lru_cache(maxsize=65536)
def _hypergeom_pmf(n: int, r: int, c: int) -> np.ndarray:
    """P(a = k), k = 0..min(r, c), co-events among n pairs with r and c events (cached: the
    same margins recur across steps and looks)."""
    pmf = sps.hypergeom.pmf(np.arange(min(r, c) + 1), n, r, c)
    pmf.setflags(write=False)
    return pmf


def cmh_p(a: Sequence[float], r: Sequence[float], c: Sequence[float], n: Sequence[float]) -> float:
    """Two-sided p of the Cochran-Mantel-Haenszel statistic A = sum_s a_s over independent 2x2
    tables (co-events a_s among n_s pairs with r_s and c_s events): under independence each
    a_s is hypergeometric given its margins. Sparse tables (rare events: expected co-events
    far below 1 per step) are decided from the exact distribution of A (the convolution of
    the steps' hypergeometric laws), where the normal approximation is badly anti-conservative
    (one co-event with 0.06 expected gives z = 3.7); dense tables by the usual normal
    approximation. p = min(1, 2 min(P(A' >= A), P(A' <= A)))."""
    a, r, c, n = (np.asarray(v, np.float64) for v in (a, r, c, n))
    if a.size == 0:
        return 1.0
    sup = np.minimum(r, c)
    live = (sup > 0) & (r < n) & (c < n)
    total = float(np.sum(a[live]))
    if float(sup[live].sum()) <= EXACT_CMH_SUPPORT:
        pmf = np.ones(1)
        for rs, cs, ns in zip(r[live], c[live], n[live]):
            pmf = np.convolve(pmf, _hypergeom_pmf(int(ns), int(rs), int(cs)))
        A = int(round(total))
        upper = float(pmf[A:].sum()) if A < pmf.size else 0.0
        lower = float(pmf[:A + 1].sum())
        return float(min(1.0, 2 * min(upper, lower)))
    var = r * c * (n - r) * (n - c) / np.maximum(n * n * (n - 1), 1.0)
    if float(var.sum()) <= 0:
        return 1.0
    z = float(np.sum(a - r * c / n)) / math.sqrt(float(var.sum()))
    return float(2 * sps.norm.sf(abs(z)))


class RunningPearson:
    """Pearson's correlation test over data that arrives in batches, without keeping it.

    Merges per-batch centred moments (Chan et al.'s pairwise update, stable where raw sums
    of squares cancel); :meth:`p_value` is ``scipy.stats.pearsonr``'s two-sided p-value (r
    under independence of normal data is Beta(n/2 - 1, n/2 - 1) on (-1, 1)), 1.0 for fewer
    than 4 pairs or a constant input. Costs O(batch) per batch and O(1) per look, where
    re-running ``pearsonr`` on the pooled data costs O(all data) at every look.
    """

    def __init__(self) -> None:
        self.n = 0
        self.mean_u = self.mean_v = 0.0
        self.m2_u = self.m2_v = self.c_uv = 0.0
        self._first: Optional[Tuple[float, float]] = None
        self.constant_u = self.constant_v = True

    def add(self, u: np.ndarray, v: np.ndarray) -> float:
        """Add paired finite float64 samples ``u``, ``v`` (same length); returns the batch's
        own Pearson r (0.0 where either side is constant within the batch)."""
        nb = int(u.size)
        if nb == 0:
            return 0.0
        if self._first is None:
            self._first = (float(u[0]), float(v[0]))
        self.constant_u = self.constant_u and bool(np.all(u == self._first[0]))
        self.constant_v = self.constant_v and bool(np.all(v == self._first[1]))
        mu, mv = float(u.mean()), float(v.mean())
        du, dv = u - mu, v - mv
        # einsum, not BLAS dot: single-threaded, so a loaded machine's BLAS thread pool
        # (oversubscribed by parallel workers) does not stall the harness
        m2u, m2v, cuv = (float(np.einsum("i,i->", du, du)), float(np.einsum("i,i->", dv, dv)),
                         float(np.einsum("i,i->", du, dv)))
        n = self.n + nb
        delta_u, delta_v = mu - self.mean_u, mv - self.mean_v
        w = self.n * nb / n
        self.m2_u += m2u + delta_u * delta_u * w
        self.m2_v += m2v + delta_v * delta_v * w
        self.c_uv += cuv + delta_u * delta_v * w
        self.mean_u += delta_u * nb / n
        self.mean_v += delta_v * nb / n
        self.n = n
        return cuv / math.sqrt(m2u * m2v) if m2u > 0 and m2v > 0 else 0.0

    @property
    def r(self) -> float:
        if self.constant_u or self.constant_v or self.m2_u <= 0 or self.m2_v <= 0:
            return math.nan
        return float(np.clip(self.c_uv / math.sqrt(self.m2_u * self.m2_v), -1.0, 1.0))

    def p_value(self) -> float:
        r = self.r
        if self.n < 4 or math.isnan(r):
            return 1.0
        ab = self.n / 2 - 1
        return float(min(1.0, 2 * sps.beta.sf(abs(r), ab, ab, loc=-1, scale=2)))
