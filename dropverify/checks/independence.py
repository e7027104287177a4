"""Mask structure: constant along shared axes, independent along the others, fresh on every
call, independent across seeds, and reproducible under the same seed."""
from __future__ import annotations

import time
from typing import List, Tuple

import numpy as np

from typing import Sequence

from ..stats import Look, correlation_look, correlation_mdd, mean_look
from ._core import (two_stage_t_plan, CallCounter, CheckContext, CheckResult, TargetError, effective_margin,
                    error_result, exact_result, guarded, mask_values, plan_for, run_sequential,
                    unit_view)

CONSTANT = "mask_constant_along_shared_axes"
FRESH = "masks_fresh_across_calls_by_fisher"
SEEDS = "masks_independent_across_seeds_by_fisher"
OVERLAP = "seed_streams_do_not_overlap_by_fisher"
REPRO = "same_seed_reproduces"
_AXIS_NAMES = {0: "batch"}


def along_name(axis: int) -> str:
    return f"masks_independent_along_axis{axis}_by_fisher"


def independent_axes(ctx: CheckContext) -> Tuple[int, ...]:
    """Non-shared output axes with at least two units (candidates for pair tests)."""
    shared = set(ctx.contract.shared_axes(ctx.params, ctx.shape))
    out_shape = ctx.output_shape(ctx.probe(0))
    axes = tuple(a for a, s in enumerate(out_shape) if a not in shared and s >= 2)
    if ctx.contract.structure == "block":  # blocks span the spatial axes by design
        axes = tuple(a for a in axes if a < 2)
    return axes


def _nonuniform(ctx: CheckContext) -> bool:
    return np.ndim(ctx.contract.drop_probability(ctx.params, ctx.shape)) > 0


def randomness_is_observable(ctx: CheckContext) -> bool:
    """Masks carry information only when 0 < p < 1 (continuous variants: the noise level)."""
    if ctx.contract.dropped_value is None:
        return 0.0 < float(ctx.params.get("p", 0.0)) < 1.0
    p = float(np.mean(ctx.contract.drop_probability(ctx.params, ctx.shape)))
    return 0.0 < p < 1.0


def _required_pairs(ctx: CheckContext, lanes: int) -> Tuple[int, float]:
    from ..stats import z_two_sided
    from scipy.stats import norm
    tol = ctx.settings.correlation_tol
    z = z_two_sided(ctx.alpha_each / 4 / lanes) + float(norm.isf(1 - ctx.settings.power))
    return int((z / np.arctanh(tol / 1.25)) ** 2) + 4, tol


def _combine(looks: List[Look], lanes: Sequence[str], alpha_look: float) -> Look:
    """Bonferroni over lanes: p = L * min p, certified when every lane is, the worst lane's
    estimate and interval (each lane was run at alpha / L)."""
    worst = min(range(len(looks)), key=lambda i: looks[i].p_value)
    w = looks[worst]
    return Look(w.estimate, w.expected, min(1.0, len(looks) * w.p_value), w.ci, sum(lk.n for lk in looks),
                max(lk.mdd for lk in looks), w.margin, alpha_look,
                equivalent=all(lk.certifies for lk in looks))


def _pair_test(ctx: CheckContext, name: str, quantity: str, lanes: Sequence[str], pairs_per_step: int,
               step, n_unit: str) -> CheckResult:
    """Shared sequential driver over several *lanes* (pairings: offsets along an axis, lags
    between calls). ``step()`` returns, per lane, (u, v, binary[, q_u, q_v]) for one
    independent step. Each lane is tested at the look's alpha / L (Bonferroni), so a
    dependence at any of the lanes' offsets is caught at the check's stated error rate."""
    if _nonuniform(ctx):
        return _stratified_pair_test(ctx, name, quantity, lanes, step)
    needed, tol = _required_pairs(ctx, len(lanes))
    plan = plan_for(ctx, needed, max(pairs_per_step, 1))
    margin = effective_margin(tol, correlation_mdd(plan.looks[-1] * pairs_per_step,
                                                   plan.alpha_per_look / len(lanes), ctx.settings.power))
    us: List[List[np.ndarray]] = [[] for _ in lanes]
    vs: List[List[np.ndarray]] = [[] for _ in lanes]
    kind = {"binary": True}

    def sink(items) -> None:
        for i, item in enumerate(items):
            us[i].append(item[0].ravel()); vs[i].append(item[1].ravel()); kind["binary"] = item[2]

    def evaluate(alpha_look: float) -> Look:
        looks = [correlation_look(np.concatenate(us[i]), np.concatenate(vs[i]), alpha_look / len(lanes), margin,
                                  ctx.settings.power, kind["binary"]) for i in range(len(lanes))]
        return _combine(looks, lanes, alpha_look)

    advance = CallCounter(_Steps(step), sink)
    return run_sequential(ctx, name, quantity, plan, advance, evaluate, n_unit,
                          details=lambda: {"steps": advance.done, "requested_margin": tol,
                                           "pairings": ", ".join(lanes)})


class _Steps:
    def __init__(self, step) -> None:
        self.step = step

    def __iter__(self):
        return self

    def __next__(self):
        return self.step()


def _stratified_pair_test(ctx: CheckContext, name: str, quantity: str, lanes: Sequence[str], step) -> CheckResult:
    """Pair test for masks whose drop probability varies by position (DropBlock, depth
    schedules).

    Pooling a 2x2 table over positions with different rates would show a spurious positive
    correlation (Simpson), and positions inside a call are dependent (overlapping blocks).
    So each step (an independent pair of calls or of unit slices) gives, per lane, one
    statistic: the unbiased covariance of u and v across the independent units at each
    position, averaged over positions and divided by qbar (1 - qbar) (qbar the contract's
    mean rate, a constant) — exactly mean 0 under independence whatever the true per-position
    rates are, about the correlation otherwise. A t-test runs across steps (Bonferroni over
    lanes). Needs at least two units per position and step.
    """
    q = np.asarray(ctx.contract.drop_probability(ctx.params, ctx.shape), np.float64)
    lead = len(ctx.shape) - q.ndim
    pos_axes = tuple(lead + i for i, size in enumerate(q.shape) if size > 1)
    qbar = float(q.mean())
    norm = qbar * (1 - qbar) or 1.0
    stats_: List[List[float]] = [[] for _ in lanes]

    def rows(arr: np.ndarray) -> np.ndarray:
        moved = np.moveaxis(arr.astype(np.float64), pos_axes, tuple(range(arr.ndim - len(pos_axes), arr.ndim)))
        return moved.reshape((-1, int(np.prod([arr.shape[a] for a in pos_axes], dtype=np.int64))))

    def sink(items) -> None:
        for i, item in enumerate(items):
            u, v = rows(item[0]), rows(item[1])
            if u.shape[0] < 2:
                raise TargetError("fewer than two independent units per position: no within-step covariance")
            cov = np.sum((u - u.mean(0)) * (v - v.mean(0)), axis=0) / (u.shape[0] - 1)
            stats_[i].append(float(cov.mean() / norm))

    name = name.replace("_by_fisher", "_by_cross_product_t_test")
    advance = CallCounter(_Steps(step), sink)
    try:
        tp = two_stage_t_plan(ctx, advance, stats_, ctx.settings.correlation_tol, lanes=len(lanes))
    except TargetError as exc:
        return error_result(ctx, name, str(exc), statistical=True)
    plan, margin = tp.plan, tp.margin

    def evaluate(alpha_look: float) -> Look:
        looks = [mean_look(s, 0.0, alpha_look / len(lanes), margin, ctx.settings.power) for s in stats_]
        return _combine(looks, lanes, alpha_look)

    return run_sequential(ctx, name, quantity, plan, advance, evaluate, "independent steps",
                          details=lambda: {"steps": advance.done, "pairings": ", ".join(lanes),
                                           "statistic": "per-position covariance across units / qbar(1-qbar)"})


def axis_offsets(size: int) -> Tuple[int, ...]:
    """Offsets at which units along an axis are paired: the neighbours (1, 2, 3, 4) where
    RNG counters or vectorised draws overlap, and half / quarter of the axis where
    tensor-parallel shards reuse a seed."""
    return tuple(sorted({d for d in (1, 2, 3, 4, size // 4, size // 2) if 1 <= d < size}))


def _disjoint_pairs(size: int, d: int) -> Tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, i + d) with no index used twice: i with floor(i / d) even."""
    i = np.arange(size - d)
    i = i[(i // d) % 2 == 0]
    return i, i + d


def masks_independent_along_axis(ctx: CheckContext, axis: int) -> CheckResult:
    """Units i and i + d along ``axis`` (all else equal) are uncorrelated, for every offset d
    of :func:`axis_offsets` (disjoint pairs; Bonferroni over offsets): Fisher's exact test
    (binary masks) or Pearson's r (continuous multipliers). Catches one mask shared across
    the batch, channels or time, RNG offsets that overlap a few elements apart, and shards
    that reuse a seed."""
    inputs = ctx.probe(4)
    stream = ctx.stream(inputs, ctx.seed + 4)
    out_shape = ctx.output_shape(inputs)
    offsets = axis_offsets(out_shape[axis])
    pairs = [_disjoint_pairs(out_shape[axis], d) for d in offsets]
    q = np.broadcast_to(np.asarray(ctx.contract.drop_probability(ctx.params, ctx.shape), np.float64), out_shape)
    q_units = unit_view(ctx, q, keepdims=True)
    q_pairs = [(q_units.take(a, axis=axis), q_units.take(b, axis=axis)) for a, b in pairs]

    def step():
        vals, binary = mask_values(ctx, inputs, next(stream))
        units = unit_view(ctx, vals, keepdims=True)
        return [(units.take(a, axis=axis), units.take(b, axis=axis), binary, qa, qb)
                for (a, b), (qa, qb) in zip(pairs, q_pairs)]

    per_unit = int(unit_view(ctx, np.empty(out_shape, bool), keepdims=True).size // out_shape[axis])
    per = per_unit * min(len(a) for a, _ in pairs)
    label = _AXIS_NAMES.get(axis, "")
    return _pair_test(ctx, along_name(axis), f"correlation_axis{axis}{'_' + label if label else ''}",
                      [f"offset {d}" for d in offsets], per, step, "unit pairs")


LAGS = (1, 2, 3)


def masks_fresh_across_calls(ctx: CheckContext) -> List[CheckResult]:
    """Each unit's draw in call t is uncorrelated with its draw in calls t + 1, t + 2 and
    t + 3 (same seed stream; Bonferroni over lags): catches an RNG that never advances
    (same mask every call) and a small pool of masks cycled through."""
    inputs = ctx.probe(5)
    stream = ctx.stream(inputs, ctx.seed + 5)

    def step():
        calls = [mask_values(ctx, inputs, next(stream)) for _ in range(max(LAGS) + 1)]
        first = unit_view(ctx, calls[0][0], keepdims=True)
        return [(first, unit_view(ctx, calls[lag][0], keepdims=True), calls[0][1]) for lag in LAGS]

    per = int(unit_view(ctx, np.empty(ctx.output_shape(inputs), bool)).size)
    return [_pair_test(ctx, FRESH, "correlation_across_calls", [f"lag {k}" for k in LAGS], per, step,
                       "unit pairs")]


def masks_independent_across_seeds(ctx: CheckContext) -> List[CheckResult]:
    """The first call after seeding with s and with s' != s are uncorrelated: catches a
    seed that is ignored (same mask on every replica / device / run)."""
    inputs = ctx.probe(6)
    counter = {"j": 0}

    def first(seed: int) -> np.ndarray:
        return next(ctx.stream(inputs, seed))

    def step():
        j = counter["j"]; counter["j"] += 1
        a, binary = mask_values(ctx, inputs, first(ctx.seed + 7_000 + 2 * j))
        b, _ = mask_values(ctx, inputs, first(ctx.seed + 7_001 + 2 * j))
        return [(unit_view(ctx, a, keepdims=True), unit_view(ctx, b, keepdims=True), binary)]

    per = int(unit_view(ctx, np.empty(ctx.output_shape(inputs), bool)).size)
    return [_pair_test(ctx, SEEDS, "correlation_seeds", ["seed s vs s+1"], per, step, "unit pairs")]


def seed_streams_do_not_overlap(ctx: CheckContext) -> List[CheckResult]:
    """The SECOND call after seeding with s is uncorrelated with the FIRST call after
    seeding with s + 1: catches generators that derive call k of seed s from seed s + k,
    so that replicas seeded base + rank replay each other's masks one call apart."""
    inputs = ctx.probe(9)
    counter = {"j": 0}

    def step():
        j = counter["j"]; counter["j"] += 1
        base = ctx.seed + 9_000 + 2 * j
        stream = ctx.stream(inputs, base)
        next(stream)
        a, binary = mask_values(ctx, inputs, next(stream))
        b, _ = mask_values(ctx, inputs, next(ctx.stream(inputs, base + 1)))
        return [(unit_view(ctx, a, keepdims=True), unit_view(ctx, b, keepdims=True), binary)]

    per = int(unit_view(ctx, np.empty(ctx.output_shape(inputs), bool)).size)
    return [_pair_test(ctx, OVERLAP, "correlation_adjacent_seed_streams", ["call 1 of s vs call 0 of s+1"], per,
                       step, "unit pairs")]


def independence_checks(ctx: CheckContext) -> List[CheckResult]:
    return [masks_independent_along_axis(ctx, a) for a in independent_axes(ctx)]


def mask_constant_along_shared_axes(ctx: CheckContext, calls: int = 6) -> List[CheckResult]:
    """Exact: within every call, the draw is the same at every element of a mask unit."""
    start = time.perf_counter()
    inputs = ctx.probe(7)
    try:
        stream = ctx.stream(inputs, ctx.seed + 8)
        bad = total = 0
        for _ in range(calls):
            vals, binary = mask_values(ctx, inputs, next(stream))
            rep = np.broadcast_to(unit_view(ctx, vals, keepdims=True), vals.shape)
            same = (vals == rep) if binary else np.isclose(vals, rep, rtol=1e-6, atol=1e-12)
            bad += int(np.sum(~same)); total += int(same.size)
    except TargetError as exc:
        return [error_result(ctx, CONSTANT, str(exc))]
    axes = ctx.contract.shared_axes(ctx.params, ctx.shape)
    return [exact_result(ctx, CONSTANT, bad == 0, f"elements differing from their unit's draw={bad} of {total}",
                         f"0 (one draw shared along axes {tuple(axes)})", {"violations": bad, "elements": total},
                         time.perf_counter() - start)]


def same_seed_reproduces(ctx: CheckContext) -> List[CheckResult]:
    """Exact: re-seeding with the same seed reproduces the same two consecutive outputs."""
    start = time.perf_counter()
    inputs = ctx.probe(8)
    try:
        s1 = ctx.stream(inputs, ctx.seed + 9)
        a1, a2 = next(s1), next(s1)
        s2 = ctx.stream(inputs, ctx.seed + 9)
        b1, b2 = next(s2), next(s2)
    except TargetError as exc:
        return [error_result(ctx, REPRO, str(exc))]
    diff = int(np.sum(~((a1 == b1) | (np.isnan(a1) & np.isnan(b1))))) + \
        int(np.sum(~((a2 == b2) | (np.isnan(a2) & np.isnan(b2)))))
    return [exact_result(ctx, REPRO, diff == 0, f"elements differing between two runs with one seed={diff}",
                         "0", {"differing": diff}, time.perf_counter() - start)]
