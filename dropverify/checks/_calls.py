"""Certification from independent calls.

Real faults strike whole calls (a call dropping at 0.8, a stale mask reused on some calls),
so mask units pooled *within* a call are independent under the contract but not under the
alternatives that matter. Every certifying check therefore has two sides:

* FAIL (a deviation is established) from p-values valid under the contract: the pooled exact
  test over units (most powerful when the layer is close to right), a per-call outlier test
  (each call on its own, Bonferroni over calls), and the t-test across calls; combined by
  Bonferroni (p = k x min p_i), so the false-alarm rate stays at the check's alpha.
* PASS (the margin is certified) only from per-call statistics, which are independent under
  any alternative that keeps calls independent: the t interval of their mean lies inside the
  margin, AND enough independent steps were seen (``steps_to_expose``: a step of c calls
  counts c times) that a fault striking a fraction >= fault_fraction of calls was present in
  at least one of the calls with probability >= 1 - alpha, and at least MIN_SAMPLES steps.
  The report states the fraction that could still hide.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..stats import (DESIGN_FACTOR, Look, SequentialPlan, calls_to_expose, hidden_fault_fraction, mean_look,
                     mean_n_for)
from ..results import CheckResult
from ._core import CheckContext
from ._sequential import run_sequential
from ._stream import CallCounter

N_LOOKS = 4
MIN_SAMPLES = 20  # per-step samples a t interval needs at least (beside the fault-exposure count)

# a FAIL-side component: alpha -> (p-value, minimum detectable deviation or nan[, its own estimate
# on the lane's scale: a FAIL it decides shows that estimate, see checks/_coherent.py])
Component = Callable[[float], Tuple[float, ...]]


def steps_to_expose(ctx: CheckContext, alpha: float, calls_per_step: int = 1) -> int:
    """Independent steps a PASS needs: enough that a fault striking ``fault_fraction`` of calls
    was present in one of the calls seen (probability >= 1 - alpha), and MIN_SAMPLES at least
    (the t interval needs a few samples even when each step holds many calls)."""
    return max(MIN_SAMPLES, calls_to_expose(ctx.settings.fault_fraction, alpha, calls_per_step))


def call_plan(ctx: CheckContext, sd_null: float, margin: float, lanes: int = 1,
              steps_cap: Optional[int] = None, steps_per_sample: int = 1,
              calls_per_step: int = 1) -> SequentialPlan:
    """Looks (in independent steps) for a call-level test: enough steps that the t interval
    fits the margin when the per-step standard deviation is ``sd_null`` (planned for the
    margin / DESIGN_FACTOR), never fewer than the steps that expose a fault in
    ``fault_fraction`` of them, at most ``max_calls`` (or ``steps_cap``)."""
    alpha_look = ctx.alpha_each / N_LOOKS
    n_min = steps_to_expose(ctx, alpha_look, calls_per_step)
    if sd_null > 0 and math.isfinite(sd_null):
        needed = mean_n_for(margin / DESIGN_FACTOR, sd_null, alpha_look / lanes, ctx.settings.power)
        needed = max(needed, MIN_SAMPLES) * steps_per_sample
    else:
        needed = n_min
    cap = ctx.settings.max_calls if steps_cap is None else min(steps_cap, ctx.settings.max_calls)
    return SequentialPlan.geometric(ctx.alpha_each, ctx.settings.power, max(4, min(cap, max(n_min, needed))),
                                    n_looks=N_LOOKS)


@dataclass
class Lane:
    """One pairing / one statistic of a call-level check: per-step samples plus the FAIL-side
    components that read the pooled data (each returns (p, mdd) at a given alpha)."""

    name: str
    samples: List[float] = field(default_factory=list)
    components: Dict[str, Component] = field(default_factory=dict)
    identical: Optional[Callable[[], bool]] = None
    steps_per_sample: int = 1  # independent steps pooled into one sample (rare events)
    # half-width of the null around ``expected`` that rounding in the configuration's dtype
    # allows (FAIL only beyond it: H0 |mean - expected| <= null_halfwidth); 0 in float64
    null_halfwidth: float = 0.0
    # False where the samples cannot be near-normal within the budget (too few expected events
    # per sample): the t-test neither FAILs nor certifies; exact components still may FAIL
    t_valid: bool = True
    # a test of the same property conditioned on the marginal rates (``_conditioned``): the lane
    # FAILs only when it rejects too (intersection-union), except on ``standalone`` components
    condition: Optional[Callable[[], float]] = None
    standalone: Tuple[str, ...] = ("identical_step",)


def call_level_look(lane: Lane, expected: float, alpha: float, margin: float, power: float,
                    n_min: int, record: Dict[str, Any]) -> Look:
    """One look of one lane: t-test + interval on the per-step samples, Bonferroni with the
    lane's pooled components. Certifies only from the interval, with at least ``n_min``
    steps. Writes the component p-values into ``record``."""
    k = 1 + len(lane.components)
    centre = expected
    if lane.null_halfwidth > 0 and lane.samples:
        # test the nearest point of [expected - hw, expected + hw]: |mean - mu| >= |mean| - hw
        # for every mu in it, so the false-alarm rate stays <= alpha on the whole null interval
        d = float(np.mean(lane.samples)) - expected
        centre = expected + math.copysign(min(abs(d), lane.null_halfwidth), d)
    t = mean_look(lane.samples, centre, alpha / k, margin, power)
    # a constant per-call statistic carries no evidence for the t-test (the exact components decide)
    ps = {"t_across_calls": 1.0 if ((t.constant and lane.components) or not lane.t_valid) else t.p_value}
    mdd = t.mdd
    own = {}  # the components' own estimates
    for name, comp in lane.components.items():
        res = comp(alpha / k)
        p, m = res[0], res[1]
        ps[name] = p
        if len(res) > 2:
            own[name] = (float(res[2]), float(res[3]) if len(res) > 3 else math.nan)
        if name == "pooled" and math.isfinite(m):
            mdd = m
    p = min(1.0, k * min(ps.values()))
    if lane.condition is not None:
        # intersection-union: a FAIL needs the marginal-conditioned test as well (p >= the
        # unconditioned p, so the false alarm under the contract cannot grow); evidence of
        # identical steps stands on its own
        p_cond = float(lane.condition())
        alone = min([ps[c] for c in lane.standalone if c in ps], default=1.0)
        record["p_unconditioned"], record["p_conditioned"] = p, p_cond
        p = min(min(1.0, k * alone), max(p, p_cond))
    estimate, ci = t.estimate, t.ci
    if p <= alpha:  # the row shows the statistic that rejected (checks/_coherent.py)
        from ..stats import Interval
        from ._coherent import REJECTED_BY, implied_interval
        by = min(ps, key=lambda c: ps[c])
        record["rejected_by"] = REJECTED_BY.get(by, by)
        lo, hi = t.ci.low, t.ci.high
        if by != "t_across_calls" and math.isfinite(own.get(by, (math.nan,))[0]) and lo <= centre <= hi:
            record["t_estimate"], record["t_ci"] = t.estimate, [t.ci.low, t.ci.high]
            record["row_statistic"] = REJECTED_BY.get(by, by)
            estimate, se = own[by]
            ci = Interval(*implied_interval(estimate, centre, ps[by], alpha / k, se), t.ci.level)
    n = t.n * lane.steps_per_sample
    within = t.ci.within(expected, margin) and not t.constant and t.n >= 3 and lane.t_valid
    if not lane.t_valid:
        record["not_certified_because"] = "too few expected events per sample within the call budget for a valid " \
                                          "t interval (raise --max-calls)"
    record.update({f"p_{name}": v for name, v in ps.items()})
    record["p_call_level"] = min(1.0, k * ps["t_across_calls"])
    # components that read one call (or one step) at a time, Bonferroni over them: valid
    # even when calls are not independent of each other (a stale or cached RNG)
    single = [v for name, v in ps.items() if name.startswith("outlier_")]
    record["p_single_call"] = min(1.0, k * min(single)) if single else 1.0
    if n < n_min and within:
        record["not_certified_because"] = f"{n} independent calls, fewer than the {n_min} that expose " \
                                          f"a fault in 1 call in {1 / record.get('fault_fraction', 1):.0f}"
    return Look(estimate, expected, p, ci, n, mdd, margin, alpha, equivalent=within and n >= n_min,
                constant=t.constant and all(v >= 1.0 for v in ps.values()))


def run_call_level(ctx: CheckContext, name: str, quantity: str, plan: SequentialPlan, advance: CallCounter,
                   lanes: Sequence[Lane], expected: float, margin: float, n_unit: str,
                   details: Optional[Callable[[], Mapping[str, Any]]] = None, calls_per_step: int = 1) -> CheckResult:
    """Drive a call-level check over its looks; several lanes are combined by Bonferroni
    (p = L x min lane p; certified when every lane is; the worst lane is shown)."""
    n_min = steps_to_expose(ctx, plan.alpha_per_look, calls_per_step)
    record: Dict[str, Any] = {"fault_fraction": ctx.settings.fault_fraction, "calls_to_expose": n_min}

    def evaluate(alpha_look: float) -> Look:
        a = alpha_look / len(lanes)
        lane_records: List[Dict[str, Any]] = [{"fault_fraction": ctx.settings.fault_fraction} for _ in lanes]
        looks = [call_level_look(ln, expected, a, margin, ctx.settings.power, n_min, rec)
                 for ln, rec in zip(lanes, lane_records)]
        worst = min(range(len(looks)), key=lambda i: (looks[i].p_value, -abs(looks[i].estimate - expected)
                                                      if math.isfinite(looks[i].estimate) else 0))
        w = looks[worst]
        record.clear()
        record.update({"fault_fraction": ctx.settings.fault_fraction, "steps_to_expose": n_min,
                       "calls_per_step": calls_per_step,
                       "worst_lane": lanes[worst].name, **lane_records[worst]})
        record["p_call_level"] = min(1.0, len(lanes) * min(r["p_call_level"] for r in lane_records))
        record["p_single_call"] = min(1.0, len(lanes) * min(r["p_single_call"] for r in lane_records))
        record["hidden_fault_fraction"] = hidden_fault_fraction(w.n * calls_per_step, alpha_look)
        ident = [ln.name for ln in lanes if ln.identical is not None and ln.identical()]
        if ident:
            record["identical"] = ", ".join(ident)
        if lanes[worst].steps_per_sample > 1:
            record["steps_per_sample"] = lanes[worst].steps_per_sample
        return Look(w.estimate, expected, min(1.0, len(lanes) * w.p_value), w.ci, w.n, max(lk.mdd for lk in looks),
                    margin, alpha_look, equivalent=all(lk.certifies for lk in looks),
                    constant=all(lk.constant for lk in looks))

    def all_details() -> Mapping[str, Any]:
        out = dict(details() if details else {})
        out.update(record)
        if len(lanes) > 1:
            out["lanes"] = ", ".join(ln.name for ln in lanes)
        return out

    return run_sequential(ctx, name, quantity, plan, advance, evaluate, n_unit, details=all_details)
