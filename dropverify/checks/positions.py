"""Per-position drop rates: every feature, channel, time step or map position of the mask.

One machinery serves two checks: ``drop_rate_per_position_by_binomial`` (variants with one
p for every unit: a layer that drops the first half of the features at 1.25 p and the second
at 0.75 p has the right mean rate and is caught here) and ``drop_map_matches_theory_by_binomial``
(DropBlock's exact map 1 - (1 - gamma)^K, a stochastic-depth network's per-block schedule).

A *position* is an index of the non-batch axes of the unit view (shared axes collapsed);
the batch items (and, for DropBlock, the channels drawn independently) are its units.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np
from scipy import stats as sps

from ..stats import Interval, Look, calls_to_expose, hidden_fault_fraction, position_binomial_look
from ._calls import call_plan
from ..results import CheckResult
from ._core import CheckContext, unit_view
from ._sequential import run_sequential
from ._stream import CallCounter
from .independence import OUTPUT_SHAPE

PER_POSITION = "drop_rate_per_position_by_binomial"
MAP = "drop_map_matches_theory_by_binomial"
MAX_POSITIONS = 4096


def _uniform_q(ctx: CheckContext) -> bool:
    return np.ndim(ctx.contract.drop_probability(ctx.params, ctx.shape)) == 0


def applies_per_position(ctx: CheckContext) -> bool:
    """Binary masks with one p everywhere, 0 < p < 1, and at least two positions."""
    c = ctx.contract
    if c.dropped_value is None or not _uniform_q(ctx) or ctx.contract.structure == "block":
        return False
    q = float(c.drop_probability(ctx.params, ctx.shape))
    return 0 < q < 1 and _layout(ctx)[1] >= 2


def _layout(ctx: CheckContext) -> Tuple[int, int]:
    """(units per position per call, positions) of the unit view: axis 0 is the units axis."""
    view = unit_view(ctx, np.empty(ctx.output_shape(ctx.seeds(OUTPUT_SHAPE).probe()), bool), keepdims=False)
    if view.ndim == 0:
        return 1, 1
    return int(view.shape[0]), int(view.size // max(view.shape[0], 1))


def per_position_rows(ctx: CheckContext, dropped: np.ndarray) -> np.ndarray:
    """(units, positions) bool: one row per batch item, one column per unit position."""
    view = unit_view(ctx, dropped)
    return view.reshape(view.shape[0], -1) if view.ndim > 1 else view.reshape(-1, 1)


def position_rate_test(ctx: CheckContext, name: str, q: np.ndarray, margin: np.ndarray,
                       rows: Callable[[np.ndarray], np.ndarray], salt: int, units_per_call: int,
                       details: Optional[Callable[[Dict[str, Any]], Mapping[str, Any]]] = None,
                       observe: Optional[Callable[[np.ndarray], None]] = None,
                       quantity: str = "worst_position_drop_rate") -> CheckResult:
    """Every position's drop rate equals ``q`` (array over positions) within ``margin``.

    ``rows(dropped)`` maps one output's decoded mask to (independent units, positions). FAIL:
    per-position exact binomial tests on the pooled counts, Bonferroni over positions, plus
    the t-test across calls of the position with the worst t (Bonferroni); false alarm
    <= alpha. PASS: at every position the t interval of the per-call rate (independent
    calls) lies within q ± margin, Bonferroni over positions, from at least
    ``calls_to_expose`` calls.
    """
    q = np.asarray(q, np.float64).reshape(-1)
    margin = np.broadcast_to(np.asarray(margin, np.float64), q.shape)
    positions = q.size
    sd_null = float(np.max(np.sqrt(q * (1 - q) / max(units_per_call, 1))))
    plan = call_plan(ctx, sd_null, float(margin.min()), lanes=positions)
    inputs, stream = ctx.shared_stream()
    acc = {"counts": np.zeros(positions, np.int64), "n": 0, "sum": np.zeros(positions), "sq": np.zeros(positions),
           "calls": 0}

    def sink(y: np.ndarray) -> None:
        dropped = ctx.dropped(inputs, y)
        if observe is not None:
            observe(dropped)
        r = rows(dropped)
        k = r.sum(axis=0)
        frac = k / r.shape[0]
        acc["counts"] += k
        acc["n"] += r.shape[0]
        acc["sum"] += frac
        acc["sq"] += frac * frac
        acc["calls"] += 1

    n_min = calls_to_expose(ctx.settings.fault_fraction, plan.alpha_per_look)
    record: Dict[str, Any] = {}

    def evaluate(alpha_look: float) -> Look:
        a = alpha_look / 2 / positions  # two components, Bonferroni over positions
        counts, n, c = acc["counts"], acc["n"], acc["calls"]
        p_pool, lo_b, hi_b, mdd = position_binomial_look(counts, n, q, a, ctx.settings.power)
        mean = acc["sum"] / c
        var = np.maximum(acc["sq"] / c - mean * mean, 0.0) * c / max(c - 1, 1)
        se = np.sqrt(var / c)
        tcrit = float(sps.t.isf(a / 2, max(c - 1, 1)))
        lo, hi = mean - tcrit * se, mean + tcrit * se
        # The t statistic's variance is never below the contract's binomial variance of a per-call
        # rate (units independent): with few units per position and call (batch 1) and a rare
        # outcome, the observed 0/1 rates of a position that happened to drop once in 500 calls
        # have a tiny sample variance, and the plain t-test called p ~ 1e-13 where the exact
        # binomial gives 1e-3. A layer whose calls vary more than that still shows it.
        var_null = q * (1 - q) / max(n / max(c, 1), 1.0)
        se_t = np.sqrt(np.maximum(var, var_null) / c)
        with np.errstate(divide="ignore", invalid="ignore"):
            tstat = np.where((se > 0) & (se_t > 0), (mean - q) / se_t, 0.0)  # constant rates: no t evidence
        p_t = 2 * sps.t.sf(np.abs(tstat), max(c - 1, 1))
        p_pos = np.minimum(p_pool, p_t)
        worst = int(np.argmin(np.where(np.isfinite(p_pos), p_pos, 1.0) - 1e-12 * np.abs(mean - q)))
        p = float(min(1.0, 2 * positions * p_pos.min()))
        within = bool(np.all((lo >= q - margin) & (hi <= q + margin))) and c >= n_min and bool(np.all(se > 0))
        record.update({"p_pooled": float(min(1.0, positions * p_pool.min())),
                       "p_call_level": float(min(1.0, 2 * positions * p_t.min())),
                       "hidden_fault_fraction": hidden_fault_fraction(c, alpha_look),
                       "worst_position": int(worst), "calls_to_expose": n_min})
        if c < n_min:
            record["not_certified_because"] = f"{c} calls, fewer than the {n_min} that expose a rare fault"
        else:
            record.pop("not_certified_because", None)
        est, ci = float(mean[worst]), Interval(float(lo[worst]), float(hi[worst]), 1 - a)
        for key in ("rejected_by", "row_statistic", "t_estimate", "t_ci"):
            record.pop(key, None)
        if p <= alpha_look and p_pool[worst] <= p_t[worst]:
            # the exact binomial test rejected: the row shows its estimate and its Clopper-Pearson
            # interval at the same level, which excludes q exactly when that test rejects
            est, ci = float(counts[worst] / max(n, 1)), Interval(float(lo_b[worst]), float(hi_b[worst]), 1 - a)
            record["rejected_by"] = record["row_statistic"] = "the exact binomial test of the position's pooled count"
            record["t_estimate"], record["t_ci"] = float(mean[worst]), [float(lo[worst]), float(hi[worst])]
        return Look(est, float(q[worst]), p, ci, c, float(mdd.max()),
                    float(margin[worst]), alpha_look, equivalent=within)

    def all_details() -> Mapping[str, Any]:
        counts, n = acc["counts"], acc["n"]
        out: Dict[str, Any] = {"positions": positions, "units_per_position": n, "calls": acc["calls"],
                               "margin_rule": "position_rel x min(q, 1 - q) at every position",
                               "lowest_rate": float(counts.min() / max(n, 1)),
                               "highest_rate": float(counts.max() / max(n, 1)), **record}
        if details is not None:
            out.update(details({"counts": counts, "n": n, "alpha_look": plan.alpha_per_look}))
        return out

    advance = CallCounter(stream, sink)
    return run_sequential(ctx, name, quantity, plan, advance, evaluate, "calls",
                          details=all_details)


def drop_rate_per_position_by_binomial(ctx: CheckContext) -> List[CheckResult]:
    """Every position of the mask (each feature / channel / time step; batch items are the
    units) drops at rate p within ± position_rel x min(p, 1 - p); see
    :func:`position_rate_test` for the error rates."""
    q0 = float(ctx.contract.drop_probability(ctx.params, ctx.shape))
    upc, positions = _layout(ctx)
    # beyond MAX_POSITIONS, neighbouring positions are grouped (a skew over regions is still
    # seen); a remainder past the last whole group is left out
    group = int(math.ceil(positions / MAX_POSITIONS)) if positions > MAX_POSITIONS else 1
    n_groups = positions // group

    def rows(dropped: np.ndarray) -> np.ndarray:
        r = per_position_rows(ctx, dropped)
        if group == 1:
            return r
        r = r[:, :n_groups * group]
        return r.reshape(r.shape[0], n_groups, group).transpose(0, 2, 1).reshape(-1, n_groups)

    q = np.full(n_groups, q0)
    margin = ctx.settings.position_rel * min(q0, 1 - q0)
    return [position_rate_test(ctx, PER_POSITION, q, margin, rows, 12, upc * group,
                               details=lambda acc: {"grouped_positions": group})]
