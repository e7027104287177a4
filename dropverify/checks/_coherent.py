"""Coherent FAIL rows: the estimate and interval a FAIL shows are those of the statistic that
rejected.

A call-level check rejects by Bonferroni over several statistics (the t-test across calls,
the Cochran-Mantel-Haenszel test pooled over calls, the most extreme call, the count of
calls whose pairs are all identical). When one of the pooled or per-call statistics rejects
at the first look, the t interval over a handful of calls can still span the null: a row
"CI -2.5 .. 2.6, p = 0" contradicts itself. :func:`implied_interval` gives the rejecting
statistic's own estimate the interval its p-value implies (the normal interval whose standard
error is |estimate - null| / z(p/2), Altman & Bland, BMJ 2011;343:d2090): it excludes the
null exactly when p is below the interval's alpha, so the row reads one statistic throughout.
It is an approximate interval (normal shape, the test's own standard error), not a second
test: the verdict and the p-value are unchanged.
"""
from __future__ import annotations

import math
from typing import Sequence, Tuple

import numpy as np
from scipy import stats as sps

REJECTED_BY = {
    "t_across_calls": "the t-test across calls",
    "pooled": "the Cochran-Mantel-Haenszel test pooled over calls",
    "outlier_call": "the most extreme call",
    "outlier_step": "the most extreme step",
    "identical_step": "the steps whose pairs are all identical",
}
"""Component names of :mod:`._calls` lanes in words (a row says which statistic rejected)."""


def implied_interval(estimate: float, centre: float, p: float, alpha: float,
                     se: float = math.nan) -> Tuple[float, float]:
    """(low, high) of the level-(1 - alpha) normal interval around ``estimate`` whose standard
    error is implied by the two-sided p-value ``p`` of the test of ``centre``: it excludes
    ``centre`` if and only if p < alpha. Where p underflows to 0 the statistic's own null
    standard error ``se`` is used (an interval that still excludes ``centre`` unless the
    deviation is below z(alpha/2) of them); without it, the estimate itself."""
    d = abs(estimate - centre)
    if not (math.isfinite(estimate) and d > 0):
        return -math.inf, math.inf
    if p > 0:
        se = d / float(sps.norm.isf(p / 2))
    elif not (math.isfinite(se) and se >= 0):
        se = 0.0
    half = float(sps.norm.isf(alpha / 2)) * se
    return estimate - half, estimate + half


def pooled_excess(a: Sequence[float], r: Sequence[float], c: Sequence[float], n: Sequence[float],
                  weight: Sequence[float]) -> Tuple[float, float]:
    """(estimate, null standard error) of the Mantel-Haenszel-type pooled deviation
    sum_s (a_s - r_s c_s / n_s) / sum_s w_s of the 2x2 tables the CMH test reads (w_s: the
    step's scale, e.g. n_s q_e^2 for an excess relative risk, r_s (n_s - r_s) / n_s for a
    difference of two rates; the error from the hypergeometric variances, the CMH test's
    own); (nan, nan) without tables."""
    a, r, c, n, w = (np.asarray(v, np.float64) for v in (a, r, c, n, weight))
    if a.size == 0 or float(w.sum()) <= 0:
        return math.nan, math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        dev = np.where(n > 0, a - r * c / np.where(n > 0, n, 1), 0.0)
        var = r * c * (n - r) * (n - c) / np.maximum(n * n * (n - 1), 1.0)
    return float(dev.sum() / w.sum()), float(math.sqrt(max(float(var.sum()), 0.0)) / w.sum())


def most_extreme(a: Sequence[float], r: Sequence[float], c: Sequence[float], n: Sequence[float]) -> int:
    """Index of the table with the largest standardised deviation |a - rc/n| / sd (the step
    the per-step outlier test reads); -1 without tables."""
    a, r, c, n = (np.asarray(v, np.float64) for v in (a, r, c, n))
    if a.size == 0:
        return -1
    with np.errstate(divide="ignore", invalid="ignore"):
        var = r * c * (n - r) * (n - c) / np.maximum(n * n * (n - 1), 1.0)
        z = np.where(var > 0, np.abs(a - r * c / np.where(n > 0, n, 1)) / np.sqrt(var), 0.0)
    return int(np.argmax(z))
