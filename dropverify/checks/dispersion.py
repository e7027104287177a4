"""Per-call dispersion of the dropped count: does each call drop at the same rate?

Under the contract (one scalar p, independent units) a call's dropped count is Binomial(n, p):
its variance across calls is n p (1 - p). A layer whose per-call rate wanders (each call's p
drawn around p, a rate that depends on hidden state) keeps the mean rate right, so the rate
and per-position checks certify it; its count variance is larger than binomial. A layer that
drops exactly round(n p) units per call (sampling without replacement) has variance 0.

Statistic: R = s^2 / (n p (1 - p)), s^2 the sample variance of the per-call counts (centred
on their own mean, so a biased rate does not show as dispersion). Under the contract,
d s^2 / sigma^2 is close to chi^2_d with d = 2 / (2 / (T - 1) + kappa / T) (kappa the excess
kurtosis of the binomial, which corrects the chi^2 for small n p (1 - p)). FAIL: two-sided
p-value at the check's alpha (sequential looks). PASS: the interval of R lies within
1 ± ``dispersion_rel`` from at least ``calls_to_expose`` independent calls.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List

import numpy as np
from scipy import stats as sps

from ..stats import DESIGN_FACTOR, Interval, Look, SequentialPlan, hidden_fault_fraction
from ._calls import N_LOOKS, steps_to_expose
from ._core import CallCounter, CheckContext, CheckResult, run_sequential, unit_view, units_per_call

NAME = "per_call_rate_dispersion_by_chi_square"
MIN_VARIANCE = 5.0
"""Smallest binomial variance n p (1 - p) of a call's count for the chi^2 approximation."""


def applies(ctx: CheckContext) -> bool:
    c = ctx.contract
    if c.dropped_value is None or c.structure == "block":
        return False
    q = c.drop_probability(ctx.params, ctx.shape)
    if np.ndim(q) != 0 or not 0.0 < float(q) < 1.0:
        return False
    return units_per_call(ctx) * float(q) * (1 - float(q)) >= MIN_VARIANCE


def _effective_df(calls: int, kappa: float) -> float:
    return 2.0 / (2.0 / max(calls - 1, 1) + kappa / max(calls, 1))


def dispersion_look(counts: np.ndarray, n: int, q: float, alpha: float, margin: float, power: float,
                    n_min: int) -> Look:
    """One look: ratio of the sample variance of ``counts`` (per-call dropped counts of n
    units) to the binomial variance n q (1 - q); two-sided scaled chi^2 test and interval."""
    t = counts.size
    var0 = n * q * (1 - q)
    kappa = (1 - 6 * q * (1 - q)) / var0
    d = _effective_df(t, kappa)
    ratio = float(np.var(counts, ddof=1) / var0) if t > 1 else math.nan
    stat = d * ratio
    p = float(min(1.0, 2 * min(sps.chi2.cdf(stat, d), sps.chi2.sf(stat, d))))
    lo = stat / float(sps.chi2.isf(alpha / 2, d))
    hi = stat / float(sps.chi2.ppf(alpha / 2, d))
    # smallest ratio deviation detected with probability ``power`` (upper side, the usual fault)
    mdd = float(sps.chi2.isf(alpha / 2, d) / sps.chi2.ppf(1 - power, d)) - 1.0
    ci = Interval(lo, hi, 1 - alpha)
    within = ci.within(1.0, margin) and t >= n_min
    return Look(ratio, 1.0, p, ci, t, mdd, margin, alpha, equivalent=within)


def _calls_needed(margin: float, alpha: float, power: float) -> int:
    """Calls for the interval of R to fit 1 ± margin / DESIGN_FACTOR (chi^2 with T - 1 df)."""
    target = margin / DESIGN_FACTOR
    t = 8
    while t < 2**22:
        d = t - 1
        hi = d / float(sps.chi2.ppf(alpha / 2, d)) * float(sps.chi2.isf(1 - power, d)) / d
        if hi - 1 <= target:
            return t
        t = int(t * 1.25) + 1
    return t


def per_call_rate_dispersion_by_chi_square(ctx: CheckContext) -> List[CheckResult]:
    """The variance of the per-call dropped count equals the binomial n p (1 - p): see the
    module docstring for the statistic and its error rates (false alarm <= alpha, false pass
    <= alpha for a variance ratio outside 1 ± ``dispersion_rel``)."""
    q = float(ctx.contract.drop_probability(ctx.params, ctx.shape))
    margin = ctx.settings.dispersion_rel
    alpha_look = ctx.alpha_each / N_LOOKS
    n_min = steps_to_expose(ctx, alpha_look)
    needed = max(n_min, _calls_needed(margin, alpha_look, ctx.settings.power))
    plan = SequentialPlan.geometric(ctx.alpha_each, ctx.settings.power, min(ctx.settings.max_calls, needed),
                                    n_looks=N_LOOKS, min_calls=8)
    inputs, stream = ctx.shared_stream()
    counts: List[int] = []
    state: Dict[str, Any] = {"n": 0}

    def sink(y: np.ndarray) -> None:
        units = unit_view(ctx, ctx.dropped(inputs, y))
        counts.append(int(np.count_nonzero(units)))
        state["n"] = int(units.size)

    advance = CallCounter(stream, sink)
    last: Dict[str, Any] = {}

    def evaluate(alpha: float) -> Look:
        arr = np.asarray(counts, np.float64)
        look = dispersion_look(arr, state["n"], q, alpha, margin, ctx.settings.power, n_min)
        last.update(hidden=hidden_fault_fraction(arr.size, alpha), mean_rate=float(arr.mean() / max(state["n"], 1)))
        return look

    def details() -> Dict[str, Any]:
        out: Dict[str, Any] = {"units_per_call": state["n"], "binomial_variance": state["n"] * q * (1 - q),
                               "calls": len(counts), "calls_to_expose": n_min, "mean_rate": last.get("mean_rate"),
                               "hidden_fault_fraction": last.get("hidden"),
                               "statistic": "sample variance of per-call dropped counts / n p (1 - p); scaled chi^2",
                               "fault_fraction": ctx.settings.fault_fraction}
        if len(counts) < n_min:
            out["not_certified_because"] = f"{len(counts)} calls, fewer than the {n_min} that expose a rare fault"
        if counts:
            arr = np.asarray(counts, np.float64)
            out["variance_ratio"] = float(np.var(arr, ddof=1) / max(state["n"] * q * (1 - q), 1e-300)) \
                if arr.size > 1 else None
        return out

    return [run_sequential(ctx, NAME, "variance_ratio", plan, advance, evaluate, "calls", details=details)]
