"""Mask structure: constant along shared axes, independent along the others, fresh on every
call, independent across seeds, and reproducible under the same seed."""
from __future__ import annotations

import time
from typing import List, Tuple

import numpy as np

from ..stats import correlation_look, correlation_mdd, mean_look, mean_mdd, mean_n_for
from ._core import (CallCounter, CheckContext, CheckResult, TargetError, effective_margin,
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


def _required_pairs(ctx: CheckContext) -> Tuple[int, float]:
    from ..stats import z_two_sided
    from scipy.stats import norm
    tol = ctx.settings.correlation_tol
    z = z_two_sided(ctx.alpha_each / 4) + float(norm.isf(1 - ctx.settings.power))
    return int((z / np.arctanh(tol / 1.25)) ** 2) + 4, tol


def _pair_test(ctx: CheckContext, name: str, quantity: str, pairs_per_step: int,
               step, n_unit: str) -> CheckResult:
    """Shared sequential driver: ``step()`` returns (u, v, binary) arrays for one step."""
    if _nonuniform(ctx):
        return _stratified_pair_test(ctx, name, quantity, step)
    needed, tol = _required_pairs(ctx)
    plan = plan_for(ctx, needed, max(pairs_per_step, 1))
    margin = effective_margin(tol, correlation_mdd(plan.looks[-1] * pairs_per_step, plan.alpha_per_look,
                                                   ctx.settings.power))
    us: List[np.ndarray] = []
    vs: List[np.ndarray] = []
    kind = {"binary": True}

    def sink(item) -> None:
        u, v, binary = item[:3]
        us.append(u.ravel()); vs.append(v.ravel()); kind["binary"] = binary

    class _Steps:
        def __iter__(self):
            return self

        def __next__(self):
            return step()

    advance = CallCounter(_Steps(), sink)
    return run_sequential(
        ctx, name, quantity, plan, advance,
        lambda a: correlation_look(np.concatenate(us), np.concatenate(vs), a, margin, ctx.settings.power,
                                   kind["binary"]),
        n_unit, details=lambda: {"steps": advance.done, "requested_margin": tol})


def _stratified_pair_test(ctx: CheckContext, name: str, quantity: str, step) -> CheckResult:
    """Pair test for masks whose drop probability q varies by position (DropBlock).

    Pooling a 2x2 table over positions with different q would show a spurious positive
    correlation (Simpson), and positions inside a call are dependent (overlapping blocks).
    So each step (an independent pair of calls or of unit slices) gives one statistic, the
    mean standardised cross product (u - q)(v - q) / (q (1 - q)) — mean 0 under
    independence, about the correlation otherwise — and a t-test runs across steps.
    """
    q = np.asarray(ctx.contract.drop_probability(ctx.params, ctx.shape), np.float64)
    q = q.reshape((1,) * (len(ctx.shape) - q.ndim) + q.shape)
    stats_: List[float] = []

    def sink(item) -> None:
        u, v = item[0].astype(np.float64), item[1].astype(np.float64)
        qu, qv = (item[3], item[4]) if len(item) > 3 else (q, q)
        qu = np.broadcast_to(qu, u.shape)
        qv = np.broadcast_to(qv, v.shape)
        w = np.sqrt(qu * (1 - qu) * qv * (1 - qv))
        ok = w > 0
        stats_.append(float(np.mean(((u - qu) * (v - qv))[ok] / w[ok])))

    class _Steps:
        def __iter__(self):
            return self

        def __next__(self):
            return step()

    name = name.replace("_by_fisher", "_by_cross_product_t_test")
    advance = CallCounter(_Steps(), sink)
    try:
        advance(20)
    except TargetError as exc:
        return error_result(ctx, name, str(exc), statistical=True)
    sd = float(np.std(stats_, ddof=1)) or 1e-6
    tol = ctx.settings.correlation_tol
    needed = mean_n_for(tol / 1.5, sd, ctx.alpha_each / 4, ctx.settings.power)
    plan = plan_for(ctx, max(needed, 20), 1)
    plan = type(plan)(plan.alpha, plan.power, tuple(sorted({max(k, 20) for k in plan.looks})))
    margin = effective_margin(tol, mean_mdd(plan.looks[-1], sd, plan.alpha_per_look, ctx.settings.power))
    return run_sequential(ctx, name, quantity, plan, advance,
                          lambda a: mean_look(stats_, 0.0, a, margin, ctx.settings.power),
                          "independent steps", details=lambda: {"steps": advance.done, "statistic":
                                                                "standardised cross product"})


def masks_independent_along_axis(ctx: CheckContext, axis: int) -> CheckResult:
    """Units 2k and 2k+1 along ``axis`` (all else equal) are uncorrelated: Fisher's exact
    test (binary masks) or Pearson's r (continuous multipliers) at the check's alpha split
    over its looks; catches one mask shared across the batch, channels, or time."""
    inputs = ctx.probe(4)
    stream = ctx.stream(inputs, ctx.seed + 4)
    out_shape = ctx.output_shape(inputs)
    size = out_shape[axis] // 2 * 2

    q = np.broadcast_to(np.asarray(ctx.contract.drop_probability(ctx.params, ctx.shape), np.float64), out_shape)
    q_units = unit_view(ctx, q, keepdims=True)
    q_even, q_odd = (q_units.take(np.arange(0, size, 2), axis=axis), q_units.take(np.arange(1, size, 2), axis=axis))

    def step():
        vals, binary = mask_values(ctx, inputs, next(stream))
        units = unit_view(ctx, vals, keepdims=True)
        return (units.take(np.arange(0, size, 2), axis=axis), units.take(np.arange(1, size, 2), axis=axis), binary,
                q_even, q_odd)

    per = int(unit_view(ctx, np.empty(out_shape, bool), keepdims=True).size // out_shape[axis] * (size // 2))
    label = _AXIS_NAMES.get(axis, "")
    return _pair_test(ctx, along_name(axis), f"correlation_axis{axis}{'_' + label if label else ''}", per,
                      step, "unit pairs")


def masks_fresh_across_calls(ctx: CheckContext) -> List[CheckResult]:
    """Each unit's draw in call 2j is uncorrelated with its draw in call 2j+1 (same seed
    stream): catches an RNG that never advances (same mask every call)."""
    inputs = ctx.probe(5)
    stream = ctx.stream(inputs, ctx.seed + 5)

    def step():
        a, binary = mask_values(ctx, inputs, next(stream))
        b, _ = mask_values(ctx, inputs, next(stream))
        return unit_view(ctx, a), unit_view(ctx, b), binary

    per = int(unit_view(ctx, np.empty(ctx.output_shape(inputs), bool)).size)
    return [_pair_test(ctx, FRESH, "correlation_consecutive_calls", per, step, "unit pairs")]


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
        return unit_view(ctx, a), unit_view(ctx, b), binary

    per = int(unit_view(ctx, np.empty(ctx.output_shape(inputs), bool)).size)
    return [_pair_test(ctx, SEEDS, "correlation_seeds", per, step, "unit pairs")]


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
        return unit_view(ctx, a), unit_view(ctx, b), binary

    per = int(unit_view(ctx, np.empty(ctx.output_shape(inputs), bool)).size)
    return [_pair_test(ctx, OVERLAP, "correlation_adjacent_seed_streams", per, step, "unit pairs")]


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
