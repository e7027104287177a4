"""Effective drop rate per independent mask unit, by the exact binomial test."""
from __future__ import annotations

from typing import List

import numpy as np

from ..stats import binomial_look, binomial_mdd, binomial_n_for
from ._core import (CallCounter, CheckContext, CheckResult, effective_margin, plan_for,
                    run_sequential, unit_view, units_per_call)

NAME = "drop_rate_matches_by_binomial"


def applies(ctx: CheckContext) -> bool:
    c = ctx.contract  # a per-position probability is tested position by position (drop map)
    return c.dropped_value is not None and np.ndim(c.drop_probability(ctx.params, ctx.shape)) == 0


def drop_rate_matches_by_binomial(ctx: CheckContext) -> List[CheckResult]:
    """The fraction of dropped mask units equals the contract's p.

    One representative element per mask unit (index 0 along the shared axes), pooled over
    calls; the units are independent by contract (checked by the independence checks).
    Exact two-sided binomial test and Clopper-Pearson interval at the check's alpha split
    over the sequential looks; false alarm <= alpha, false pass (|rate - p| > margin yet
    PASS) <= alpha; ``mdd`` from the arcsine approximation at the stated power.
    """
    p0 = float(np.mean(ctx.contract.drop_probability(ctx.params, ctx.shape)))
    upc = units_per_call(ctx)
    margin_req = ctx.settings.rate_rel * max(min(p0, 1 - p0), 0.01)
    alpha_look = ctx.alpha_each / 4
    needed = binomial_n_for(margin_req / 1.25, p0, alpha_look, ctx.settings.power)
    plan = plan_for(ctx, needed, upc)
    alpha_look = plan.alpha_per_look
    margin = effective_margin(margin_req, binomial_mdd(plan.looks[-1] * upc, p0, alpha_look, ctx.settings.power))
    inputs = ctx.probe(1)
    state = {"k": 0, "n": 0}

    def sink(y: np.ndarray) -> None:
        dropped = ctx.decode(inputs, y).dropped
        units = unit_view(ctx, dropped)
        state["k"] += int(units.sum())
        state["n"] += int(units.size)

    advance = CallCounter(ctx.stream(inputs, ctx.seed + 1, expect_shape=None), sink)
    return [run_sequential(
        ctx, NAME, "drop_rate", plan, advance,
        lambda a: binomial_look(state["k"], state["n"], p0, a, margin, ctx.settings.power),
        "mask units",
        details=lambda: {"nominal_p": p0, "requested_margin": margin_req, "units_per_call": upc,
                         "calls": advance.done, "n_max": plan.looks[-1] * upc})]
