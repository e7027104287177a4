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

DropBlock has no binomial null (overlapping blocks): its null variance is simulated from the
numpy reference at the same parameters and inputs (:data:`NULL_CALLS` calls), and R is tested
with the two-sample F test and interval (both counts are sums over many positions, near
normal).
"""
from __future__ import annotations

import math
from typing import Any, Dict, List

import numpy as np
from scipy import stats as sps

from ..stats import DESIGN_FACTOR, Interval, Look, SequentialPlan, hidden_fault_fraction
from ._calls import N_LOOKS, steps_to_expose
from ..results import CheckResult
from ._core import CheckContext, unit_view, units_per_call
from ._sequential import NotInformative, run_sequential
from ._stream import CallCounter

NAME = "per_call_rate_dispersion_by_chi_square"
MIN_VARIANCE = 5.0
"""Smallest binomial variance n p (1 - p) of a call's count for the chi^2 approximation."""


def applies(ctx: CheckContext) -> bool:
    c = ctx.contract
    if c.structure == "block":
        return _block_null_available(ctx)
    if c.dropped_value is None:
        return False
    q = c.drop_probability(ctx.params, ctx.shape)
    if np.ndim(q) != 0 or not 0.0 < float(q) < 1.0:
        return False
    return units_per_call(ctx) * float(q) * (1 - float(q)) >= MIN_VARIANCE


NULL_CALLS = 2000
"""Calls of the numpy reference simulated for a DropBlock null (fewer on large probes)."""
NULL_ELEMENTS = 200_000_000
"""Elements simulated at most for a DropBlock null (NULL_CALLS x probe size, capped)."""


def _block_null_available(ctx: CheckContext) -> bool:
    from ..variants import variant_names
    p = float(ctx.params.get("p", 0.0))
    return ctx.contract.name in variant_names() and ctx.contract.dropped_value is not None and 0.0 < p < 1.0


def simulated_null_counts(ctx: CheckContext, inputs) -> np.ndarray:
    """Per-call dropped counts of the numpy reference of the contract at the same parameters and
    inputs, ``NULL_CALLS`` calls (fewer on large probes), from a seed of the check's own."""
    from ..variants import variant_class
    numel = int(np.prod(np.shape(inputs[0]), dtype=np.int64))
    calls = int(max(200, min(NULL_CALLS, NULL_ELEMENTS // max(numel, 1))))
    layer = variant_class(ctx.contract.name)(**ctx.params, seed=ctx.seeds(NAME).seed())
    out = np.empty(calls, np.float64)
    for i in range(calls):  # one reference call per sample: the null's own independent draws
        y = layer.forward(*inputs)
        out[i] = np.count_nonzero(unit_view(ctx, ctx.dropped(inputs, y)))
    return out


def null_look(counts: np.ndarray, null: np.ndarray, alpha: float, margin: float, power: float, n_min: int) -> Look:
    """One look against a simulated null: F test of var(counts) / var(null), two-sided, with
    the F interval of the ratio (both samples near-normal: sums over many positions)."""
    t, s = counts.size, null.size
    v0 = float(np.var(null, ddof=1))
    ratio = float(np.var(counts, ddof=1) / v0) if t > 1 and v0 > 0 else math.nan
    d1, d2 = t - 1, s - 1
    p = float(min(1.0, 2 * min(sps.f.cdf(ratio, d1, d2), sps.f.sf(ratio, d1, d2)))) if math.isfinite(ratio) else 1.0
    lo = ratio / float(sps.f.isf(alpha / 2, d1, d2))
    hi = ratio / float(sps.f.ppf(alpha / 2, d1, d2))
    mdd = float(sps.f.isf(alpha / 2, d1, d2) / sps.f.ppf(1 - power, d1, d2)) - 1.0
    ci = Interval(lo, hi, 1 - alpha)
    return Look(ratio, 1.0, p, ci, t, mdd, margin, alpha, equivalent=ci.within(1.0, margin) and t >= n_min)


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
    block = ctx.contract.structure == "block"
    q = float(np.mean(ctx.contract.drop_probability(ctx.params, ctx.shape)))
    margin = ctx.settings.dispersion_rel
    alpha_look = ctx.alpha_each / N_LOOKS
    n_min = steps_to_expose(ctx, alpha_look)
    needed = max(n_min, _calls_needed(margin, alpha_look, ctx.settings.power))
    plan = SequentialPlan.geometric(ctx.alpha_each, ctx.settings.power, min(ctx.settings.max_calls, needed),
                                    n_looks=N_LOOKS, min_calls=8)
    inputs, stream = ctx.shared_stream()
    null = simulated_null_counts(ctx, inputs) if block else None
    if null is not None and float(np.var(null)) == 0:
        raise NotInformative("the reference's dropped count does not vary at this configuration")
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
        if null is not None:
            look = null_look(arr, null, alpha, margin, ctx.settings.power, n_min)
        else:
            look = dispersion_look(arr, state["n"], q, alpha, margin, ctx.settings.power, n_min)
        last.update(hidden=hidden_fault_fraction(arr.size, alpha), mean_rate=float(arr.mean() / max(state["n"], 1)))
        return look

    def details() -> Dict[str, Any]:
        var0 = float(np.var(null, ddof=1)) if null is not None else state["n"] * q * (1 - q)
        out: Dict[str, Any] = {"units_per_call": state["n"], "null_variance": var0,
                               "null": (f"{null.size} calls of the numpy reference (simulated)" if null is not None
                                        else "binomial n p (1 - p)"),
                               "calls": len(counts), "calls_to_expose": n_min, "mean_rate": last.get("mean_rate"),
                               "hidden_fault_fraction": last.get("hidden"),
                               "statistic": ("sample variance of per-call dropped counts / the simulated null's; F test"
                                             if null is not None else
                                             "sample variance of per-call dropped counts / n p (1 - p); scaled chi^2"),
                               "fault_fraction": ctx.settings.fault_fraction}
        if len(counts) < n_min:
            out["not_certified_because"] = f"{len(counts)} calls, fewer than the {n_min} that expose a rare fault"
        if counts:
            arr = np.asarray(counts, np.float64)
            out["variance_ratio"] = float(np.var(arr, ddof=1) / max(var0, 1e-300)) if arr.size > 1 else None
        return out

    return [run_sequential(ctx, NAME, "variance_ratio", plan, advance, evaluate, "calls", details=details)]
