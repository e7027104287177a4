"""Effective drop rate: certified from independent calls, rejected by exact binomial tests."""
from __future__ import annotations

import math
from typing import List

import numpy as np

from ..stats import binomial_look, per_call_binomial_p
from ._calls import Lane, call_plan, run_call_level
from ..results import CheckResult
from ._core import CheckContext, unit_view, units_per_call
from ._stream import CallCounter

NAME = "drop_rate_matches_by_binomial"


def applies(ctx: CheckContext) -> bool:
    c = ctx.contract  # a per-position probability is tested position by position (drop map)
    return c.dropped_value is not None and np.ndim(c.drop_probability(ctx.params, ctx.shape)) == 0


def rate_margin(ctx: CheckContext, q: float) -> float:
    """The stated margin on a drop rate: ``rate_rel`` x min(q, 1 - q) (relative for every
    p, no floor: at p = 0.001 it is 5e-5 by default)."""
    return ctx.settings.rate_rel * min(q, 1 - q)


def drop_rate_matches_by_binomial(ctx: CheckContext) -> List[CheckResult]:
    """The fraction of dropped mask units equals the contract's p.

    Per call: the dropped fraction of its mask units (one representative element per unit).
    FAIL: Bonferroni over the pooled exact binomial test of all units, a per-call exact test
    (the most extreme call, Bonferroni over calls: catches a fault striking some calls) and
    the t-test across calls; false alarm <= alpha. PASS: the t interval of the per-call
    fraction lies within p ± margin from at least ``calls_to_expose`` independent calls;
    false pass <= alpha whenever calls are independent, whatever happens inside a call.
    ``mdd``: of the pooled binomial test (arcsine approximation) at the stated power.
    """
    p0 = float(np.mean(ctx.contract.drop_probability(ctx.params, ctx.shape)))
    upc = units_per_call(ctx)
    margin = rate_margin(ctx, p0)
    plan = call_plan(ctx, math.sqrt(p0 * (1 - p0) / max(upc, 1)), margin)
    inputs, stream = ctx.shared_stream()
    counts: List[int] = []
    lane = Lane("all units")
    state = {"n": 0}

    def sink(y: np.ndarray) -> None:
        units = unit_view(ctx, ctx.dropped(inputs, y))
        k = int(units.sum())
        counts.append(k)
        lane.samples.append(k / units.size)
        state["n"] = int(units.size)

    def pooled(alpha: float):
        lk = binomial_look(sum(counts), len(counts) * state["n"], p0, alpha, margin, ctx.settings.power)
        units = max(len(counts) * state["n"], 1)  # its own estimate and null error: a FAIL row shows them
        return lk.p_value, lk.mdd, sum(counts) / units, math.sqrt(p0 * (1 - p0) / units)

    def outlier(alpha: float):
        n = max(state["n"], 1)
        worst = max(counts, key=lambda k: abs(k / n - p0)) / n if counts else math.nan
        return per_call_binomial_p(counts, state["n"], p0), math.nan, worst, math.sqrt(p0 * (1 - p0) / n)

    lane.components["pooled"] = pooled
    lane.components["outlier_call"] = outlier
    advance = CallCounter(stream, sink)
    return [run_call_level(
        ctx, NAME, "drop_rate", plan, advance, [lane], p0, margin, "calls",
        details=lambda: {"nominal_p": p0, "units_per_call": upc, "units": len(counts) * state["n"],
                         "pooled_rate": sum(counts) / max(len(counts) * state["n"], 1),
                         "most_extreme_call_rate": (max(counts, key=lambda k: abs(k / state["n"] - p0))
                                                    / state["n"]) if counts else None})]
