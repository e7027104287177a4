"""Expectation and variance of the output, by t-tests on per-sample statistics.

A sample is the mean of a statistic over one or more whole calls (at least
``Settings.min_units_per_sample`` mask units), so nothing is assumed about dependence
inside a call (shared masks, DropBlock overlaps, batch-wide renormalisation); calls are
independent by contract (the fresh-mask check tests that).
"""
from __future__ import annotations

import math
from typing import Callable, List, Optional

import numpy as np

from ..contracts import Inputs
from ._calls import Lane, run_call_level
from ..results import CheckResult
from ._core import CheckContext, units_per_call
from ._sequential import PILOT, NotInformative, error_result, two_stage_t_plan
from ._stream import CallCounter
from ._worker import TargetError

MEAN = "expectation_matches_by_t_test"
VARIANCE = "variance_matches_by_t_test"


def applies_mean(ctx: CheckContext) -> bool:
    c = ctx.contract
    if c.mean_scope == "none":
        return False
    return c.mean_scope == "aggregate" or c.output_mean is not None


def applies_variance(ctx: CheckContext) -> bool:
    p = ctx.params.get("p", 0.5)
    return ctx.contract.output_variance is not None and 0 < p < 1


def variance_informative(ctx: CheckContext) -> bool:
    """The variance adds information only where the output is not two-valued: continuous
    noise (Gaussian dropout) or contracts that say so (DropConnect's sums, depth networks).
    For a two-valued output (kept value / dropped value) the variance is a function of the
    drop rate alone (at p = 0.5 |y - mu| is even constant), so it repeats the rate check."""
    c = ctx.contract
    return c.dropped_value is None or bool(c.extra.get("variance_informative", False))


def _mean_statistic(ctx: CheckContext, inputs: Inputs) -> Callable[[np.ndarray], float]:
    """Per-call statistic whose expectation is 0 under the contract.

    Signed, so that a bias moves it the same way whatever the sign of the input (the probe is
    signed): multiplicative contracts use the relative error (y - E[y]) / E[y] (a 2 % scale
    bug shifts it by 0.02 on inputs of either sign; with |E[y]| it would cancel). Others: the
    standardised error (y - E[y]) / (sd[y] * sign(E[y] - dropped value)) (a rate bias of
    zoneout moves every element towards its dropped value). Aggregate contracts (DropBlock):
    mean of y / x - 1 over the call.
    """
    c = ctx.contract
    x = np.asarray(inputs[0], np.float64)
    if c.output_mean is None:  # aggregate promise only
        return lambda y: float(np.mean(np.asarray(y, np.float64) / x - 1.0))
    mu = np.asarray(c.output_mean(inputs, ctx.params), np.float64)
    if c.multiplicative:
        scale = mu
    else:
        var = c.output_variance(inputs, ctx.params) if c.output_variance is not None else None
        scale = np.sqrt(np.asarray(var, np.float64)) if var is not None else mu
        if var is not None and c.dropped_value is not None:
            side = np.sign(mu - np.asarray(c.dropped_value(inputs, ctx.params), np.float64))
            scale = scale * np.where(side < 0, -1.0, 1.0)
    ok = scale != 0
    mu, scale = np.broadcast_to(mu, x.shape if mu.ndim == 0 else mu.shape), np.where(ok, scale, 1.0)
    return lambda y: float(np.mean(((np.asarray(y, np.float64) - mu) / scale)[np.broadcast_to(ok, mu.shape)]))


def _variance_statistic(ctx: CheckContext, inputs: Inputs) -> Callable[[np.ndarray], float]:
    """Mean over the call of (y - E[y])^2 / Var[y] - 1 (expectation 0 under the contract)."""
    c = ctx.contract
    mu = np.asarray(c.output_mean(inputs, ctx.params), np.float64)
    var = np.asarray(c.output_variance(inputs, ctx.params), np.float64)
    ok = np.broadcast_to(var > 0, np.broadcast_shapes(mu.shape, var.shape))
    safe = np.where(var > 0, var, 1.0)
    return lambda y: float(np.mean((((np.asarray(y, np.float64) - mu) ** 2) / safe - 1.0)[ok]))


def _t_check(ctx: CheckContext, name: str, quantity: str, statistic_for: Callable, tol: float,
             salt: int, pilot_sd: Optional[float] = None) -> List[CheckResult]:
    inputs, stream = ctx.shared_stream()
    statistic = statistic_for(ctx, inputs)
    upc = units_per_call(ctx)
    calls_per_sample = max(1, math.ceil(ctx.settings.min_units_per_sample / max(upc, 1)))
    # the pilot must leave room in the budget: at most half of max_calls
    calls_per_sample = min(calls_per_sample, max(1, ctx.settings.max_calls // (2 * PILOT)))
    lane = Lane("calls", null_halfwidth=rounding_allowance(ctx.dtype))
    samples = lane.samples
    pending: List[float] = []

    def sink(y: np.ndarray) -> None:
        pending.append(statistic(y))
        if len(pending) == calls_per_sample:
            samples.append(float(np.mean(pending)))
            pending.clear()

    advance = CallCounter(stream, sink)
    try:
        tp = two_stage_t_plan(ctx, advance, [samples], tol, calls_per_sample=calls_per_sample)
    except TargetError as exc:
        return [error_result(ctx, name, str(exc), statistical=True)]
    return [run_call_level(
        ctx, name, quantity, tp.plan, advance, [lane], 0.0, tp.margin,
        f"samples of {calls_per_sample} call(s)", calls_per_step=calls_per_sample,
        details=lambda: {"calls": advance.done, "calls_per_sample": calls_per_sample, "pilot_sd": tp.sd,
                         "requested_margin": tol, "n_max": tp.n_max,
                         "rounding_allowance": lane.null_halfwidth, "dtype": np.dtype(ctx.dtype).name})]


def rounding_allowance(dtype) -> float:
    """Relative bias that correct rounding in ``dtype`` can produce in a mean or variance
    statistic: machine epsilon (two roundings of half an ulp: the scale, then the product).
    float64: 2.2e-16; float32: 1.2e-7; float16: 9.8e-4; bfloat16: 7.8e-3."""
    from ..contracts import _finfo
    return float(_finfo(dtype).eps)


def expectation_matches_by_t_test(ctx: CheckContext) -> List[CheckResult]:
    """E[y] equals the contract's mean (aggregated over each call).

    Statistic: mean relative error of the output (or standardised error for
    non-multiplicative variants), expectation 0; one-sample t-test across independent
    samples at the check's alpha split over its looks; false pass <= alpha for |bias| >
    margin; ``mdd`` from statsmodels' TTestPower at the stated power.
    """
    if ctx.contract.mean_scope == "aggregate":
        raise NotInformative("the mean of y / x over a call is 1 by construction for a layer that renormalises "
                             "by numel / kept (DropBlock); multiplier_values_exact checks that scale exactly")
    return _t_check(ctx, MEAN, "relative_bias", _mean_statistic, ctx.settings.mean_tol, 2)


def variance_matches_by_t_test(ctx: CheckContext) -> List[CheckResult]:
    """Var[y] equals the contract's variance: mean of (y-mu)^2/var - 1 is 0 (t-test across
    independent samples; error rates as for the expectation check). Not applicable (with the
    reason) where the output is two-valued: see :func:`variance_informative`."""
    if not variance_informative(ctx):
        raise NotInformative("two-valued output (kept or dropped value): its variance is fixed by the drop rate, "
                             "which drop_rate_matches_by_binomial certifies; at p = 0.5 the statistic is 0 by algebra")
    return _t_check(ctx, VARIANCE, "relative_variance_error", _variance_statistic,
                    ctx.settings.variance_tol, 3)
