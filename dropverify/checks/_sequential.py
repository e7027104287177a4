"""Results and the sequential driver: how a check's looks become a :class:`CheckResult`.

Promises: :func:`run_sequential` stops at the first look that rejects or certifies, turns
target failures into an ERROR and a spent budget into one last valid look (or an
INCONCLUSIVE); :func:`two_stage_t_plan` sizes a t-test from a discarded pilot. The
``*_result`` constructors are the only way checks build results.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, List, Mapping, Optional, Sequence

import numpy as np

from ..results import ERROR, FAIL, INCONCLUSIVE, PASS, CheckResult, fmt
from ..stats import Look, SequentialPlan
from ._stream import BudgetExhausted, CallCounter, set_first_look_pending
from ._worker import TargetError

if TYPE_CHECKING:
    from ._core import CheckContext


class NotInformative(Exception):
    """The check's statistic carries no information at this configuration (constant by
    algebra under the contract, e.g. the variance of a two-valued output at p = 0.5): the
    runner reports the check as not applicable, with this reason, instead of a PASS."""


def exact_result(ctx: CheckContext, check: str, ok: bool, observed: str, expected: str,
                 details: Optional[Mapping[str, Any]] = None, seconds: float = 0.0) -> CheckResult:
    """A deterministic check's result: what was observed against what the contract requires."""
    text = f"{observed}, as required: {expected}" if ok else f"{observed}, but should be {expected}"
    return CheckResult(check=check, target=ctx.spec.name, variant=ctx.contract.name,
                       verdict=PASS if ok else FAIL, text=text, label=ctx.label, statistical=False,
                       details=dict(details or {}), seconds=seconds)


def error_result(ctx: CheckContext, check: str, reason: str, statistical: bool = False) -> CheckResult:
    return CheckResult(check=check, target=ctx.spec.name, variant=ctx.contract.name, verdict=ERROR,
                       text=reason, label=ctx.label, statistical=statistical)


def skipped_result(ctx: CheckContext, check: str, reason: str) -> CheckResult:
    """A check that cannot run on this target (e.g. no gradients): INCONCLUSIVE, with why."""
    return CheckResult(check=check, target=ctx.spec.name, variant=ctx.contract.name,
                       verdict=INCONCLUSIVE, text=f"not run: {reason}", label=ctx.label)


def statistical_result(ctx: CheckContext, check: str, quantity: str, look: Look, plan: SequentialPlan,
                       p_values: Sequence[float], n_unit: str, looks_used: int, seconds: float,
                       details: Optional[Mapping[str, Any]] = None) -> CheckResult:
    """Turn the last look of a sequential test into a result (verdict before Holm)."""
    p_seq = plan.sequential_p(p_values)
    info = dict(details or {})
    info["planned_looks"] = len(plan.looks)
    if look.rejects:
        verdict = FAIL
    elif look.certifies:
        verdict = PASS
    else:
        verdict = INCONCLUSIVE
    ci = (look.ci.low, look.ci.high)
    certifiable = max(abs(ci[0] - look.expected), abs(ci[1] - look.expected)) \
        if all(math.isfinite(v) for v in ci) else math.inf
    info["certifiable_margin"] = certifiable
    if verdict == FAIL:
        inside = abs(look.estimate - look.expected) <= look.margin if math.isfinite(look.estimate) else False
        info["estimate_inside_margin"] = bool(inside)
    return CheckResult(check=check, target=ctx.spec.name, variant=ctx.contract.name, verdict=verdict,
                       label=ctx.label, statistical=True, quantity=quantity, look_verdict=verdict,
                       estimate=look.estimate, ci=ci,
                       ci_level=look.ci.level, expected=look.expected, margin=look.margin, n=look.n,
                       n_unit=n_unit, p_value=p_seq, alpha=plan.alpha, power=plan.power, mdd=look.mdd,
                       looks=looks_used, stopped_early=looks_used < len(plan.looks) and verdict != INCONCLUSIVE,
                       seconds=seconds, certified=look.certifies, details=info)


def run_sequential(ctx: CheckContext, check: str, quantity: str, plan: SequentialPlan,
                   advance: Callable[[int], None], evaluate: Callable[[float], Look], n_unit: str,
                   details: Optional[Callable[[], Mapping[str, Any]]] = None) -> CheckResult:
    """Drive one sequential test: ``advance(k)`` draws calls up to cumulative ``k``;
    ``evaluate(alpha_look)`` returns the look on everything drawn so far. Stops at the
    first look that rejects or certifies; target failures become an ERROR result."""
    start = time.perf_counter()
    p_values: List[float] = []
    look: Optional[Look] = None
    budget_note = ""
    at = -1  # calls drawn at the last look
    set_first_look_pending(True)  # a time share does not end the sampling before the first look
    try:
        for i, k in enumerate(plan.looks):
            try:
                advance(k)
            except BudgetExhausted as why:
                # a stopping time that does not depend on the data (a call or time budget):
                # one more look at alpha / K on what was drawn keeps the sequential p valid
                budget_note = str(why)
                done = getattr(advance, "done", None)
                if look is not None and done == at:
                    break
            look = evaluate(plan.alpha_per_look)
            set_first_look_pending(False)
            at = getattr(advance, "done", None)
            p_values.append(look.p_value)
            if look.rejects or look.certifies or budget_note:
                break
    except BudgetExhausted as why:  # a look could not be evaluated on the calls drawn
        look, budget_note = None, str(why)
    except TargetError as exc:
        return error_result(ctx, check, str(exc), statistical=True)
    finally:
        set_first_look_pending(False)
    if look is not None and budget_note and not look.rejects and \
            not (look.n and all(math.isfinite(v) for v in (look.estimate, look.ci.low, look.ci.high))):
        look = None  # too few calls for an estimate and an interval: nothing was assessed
    if look is None:
        return CheckResult(check=check, target=ctx.spec.name, variant=ctx.contract.name, verdict=INCONCLUSIVE,
                           text=f"not assessed: {budget_note or 'no calls drawn'} before its first look; "
                                "nothing certified",
                           label=ctx.label, statistical=True, details={"budget": budget_note})
    if look.constant and not look.rejects:
        raise NotInformative(f"{quantity} took one value in every one of {look.n} samples "
                             f"({fmt(look.estimate)}): a statistic that never varies gives no evidence either way "
                             "(by algebra at this configuration, or because the masks never change; see "
                             "masks_never_repeat_by_hash)")
    info = dict(details() if details else {})
    if budget_note:
        info["budget"] = budget_note
        if not (look.rejects or look.certifies):
            info.setdefault("not_certified_because", budget_note)
    return statistical_result(ctx, check, quantity, look, plan, p_values, n_unit, len(p_values),
                              time.perf_counter() - start, info)


PILOT = 20  # samples that size a t-test from their spread


@dataclass(frozen=True)
class TPlan:
    plan: SequentialPlan
    sd: float
    margin: float  # the requested margin (never widened)
    n_max: int  # samples at the last look


def two_stage_t_plan(ctx: CheckContext, advance: "CallCounter", samples: Sequence[List[float]], tol: float,
                     lanes: int = 1, calls_per_sample: int = 1, calls_per_step: int = 1) -> TPlan:
    """Two-stage design for the t-tests: a pilot of PILOT samples sizes the test from its
    spread, then is DISCARDED, so the test sees only fresh samples whose number does not
    depend on them (the t-test's level is exact given n). Raises TargetError from the pilot.
    ``samples`` are the lists the sink appends to (one per lane); they are cleared."""
    from ..stats import mean_n_for
    pilot_calls = PILOT * calls_per_sample
    set_first_look_pending(True)  # the pilot is part of the minimum (run_sequential clears it)
    advance(pilot_calls)
    sd = max((float(np.std(s, ddof=1)) for s in samples if len(s) > 1), default=1.0) or 1e-12
    for s in samples:
        s.clear()
    from ..stats import DESIGN_FACTOR, calls_to_expose
    alpha_look = ctx.alpha_each / 4 / lanes
    needed = max(mean_n_for(tol / DESIGN_FACTOR, sd, alpha_look, ctx.settings.power),
                 calls_to_expose(ctx.settings.fault_fraction, ctx.alpha_each / 4, calls_per_sample * calls_per_step),
                 20)
    base = SequentialPlan.geometric(ctx.alpha_each, ctx.settings.power,
                                    min(ctx.settings.max_calls, max(needed, PILOT) * calls_per_sample))
    looks = tuple(sorted({pilot_calls + max(k, PILOT * calls_per_sample) for k in base.looks}))
    plan = SequentialPlan(base.alpha, base.power, looks)
    n_max = (looks[-1] - pilot_calls) // calls_per_sample
    return TPlan(plan, sd, tol, n_max)
