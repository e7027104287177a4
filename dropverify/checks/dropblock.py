"""DropBlock: per-position drop map vs the exact theory, gamma, mean rate, contiguity, and the
seed scheme read off the measured map.

Theory (contract ``extra``): a position covered by K admissible seeds is dropped with
probability exactly 1 - (1 - gamma)^K; positions are dependent inside a call (overlapping
blocks) but each position's count over independent units is exactly binomial, so the map
test uses per-position exact tests with Bonferroni over positions (valid under any
dependence between positions).
"""
from __future__ import annotations

import math
import time
from typing import List, Tuple

import numpy as np

from ..stats import (Interval, Look, binomial_look, binomial_n_for, mean_look,
                     position_binomial_look)
from ._core import (two_stage_t_plan, CallCounter, CheckContext, CheckResult, TargetError, effective_margin, error_result,
                    exact_result, plan_for, run_sequential, unit_view)

MAP = "drop_map_matches_theory_by_binomial"
GAMMA = "gamma_matches_by_binomial"
RATE = "block_rate_matches_by_t_test"
CONTIGUOUS = "dropped_set_is_union_of_blocks"


def applies(ctx: CheckContext) -> bool:
    return ctx.contract.structure == "block" and 0 < ctx.params.get("p", 0.5) < 1


def applies_map(ctx: CheckContext) -> bool:
    """The map test applies to every contract whose drop probability varies by position
    (DropBlock; the per-block survival of a stochastic-depth network)."""
    c = ctx.contract
    return (c.dropped_value is not None and np.ndim(c.drop_probability(ctx.params, ctx.shape)) > 0
            and 0 < ctx.params.get("p", 0.5) < 1)


def _position_axes(ctx: CheckContext) -> Tuple[int, ...]:
    q = np.asarray(ctx.contract.drop_probability(ctx.params, ctx.shape))
    lead = len(ctx.shape) - q.ndim
    return tuple(lead + i for i, s in enumerate(q.shape) if s > 1)


def _positions_shape(ctx: CheckContext) -> Tuple[int, ...]:
    return tuple(ctx.shape[a] for a in _position_axes(ctx))


def _map(ctx: CheckContext, **override) -> np.ndarray:
    params = dict(ctx.params, **override)
    return np.asarray(ctx.contract.drop_probability(params, ctx.shape), np.float64).reshape(_positions_shape(ctx))


def _by_position(ctx: CheckContext, arr: np.ndarray) -> np.ndarray:
    """(units, *positions): one row per independent unit, position axes last."""
    axes = _position_axes(ctx)
    moved = np.moveaxis(arr, axes, tuple(range(arr.ndim - len(axes), arr.ndim)))
    return moved.reshape((-1,) + _positions_shape(ctx))


def _pooled_counts(ctx: CheckContext, salt: int):
    """Sink accumulating per-position dropped counts over independent units."""
    inputs = ctx.probe(salt)
    state = {"counts": np.zeros(_positions_shape(ctx), np.int64), "n": 0, "fractions": []}

    def sink(y: np.ndarray) -> None:
        dropped = ctx.decode(inputs, y).dropped
        flat = _by_position(ctx, unit_view(ctx, dropped, keepdims=True))
        state["counts"] += flat.sum(axis=0)
        state["n"] += flat.shape[0]
        state["fractions"].append(float(dropped.mean()))

    return inputs, state, sink


def _loglik(counts: np.ndarray, n: int, q: np.ndarray) -> float:
    q = np.clip(q, 1e-300, 1 - 1e-16)
    return float(np.sum(counts * np.log(q) + (n - counts) * np.log1p(-q)))


def drop_map_matches_theory(ctx: CheckContext) -> List[CheckResult]:
    """Every position's drop rate equals the exact theory 1 - (1 - gamma)^K.

    Per-position exact binomial tests, Bonferroni over the P positions and the looks:
    false alarm <= alpha; a PASS certifies every position within the margin (false pass
    <= alpha). Catches gamma from the wrong dimension, seeds outside the valid region,
    transposed geometry for H != W, off-by-one even blocks. The details name the seed
    scheme (valid / anywhere) whose theory fits the measured map best (log-likelihood).
    """
    q = _map(ctx)
    positions = q.size
    inputs, state, sink = _pooled_counts(ctx, 101)
    upc = int(unit_view(ctx, np.empty(ctx.shape, bool), keepdims=True).size // positions)
    q_mean = float(q.mean())
    margin_req = 4 * ctx.settings.rate_rel * max(min(q_mean, 1 - q_mean), 0.01)
    alpha_pos = ctx.alpha_each / 4 / positions
    needed = binomial_n_for(margin_req / 1.25, float(q.max()), alpha_pos, ctx.settings.power)
    plan = plan_for(ctx, needed, upc)
    n_cap = plan.looks[-1] * upc
    mdd_cap = float(position_binomial_look(np.zeros_like(q, dtype=np.int64) + int(n_cap * q_mean), n_cap, q,
                                           plan.alpha_per_look / positions, ctx.settings.power)[3].max())
    margin = effective_margin(margin_req, mdd_cap)
    advance = CallCounter(ctx.stream(inputs, ctx.seed + 101), sink)

    def evaluate(alpha_look: float) -> Look:
        counts, n = state["counts"], state["n"]
        pvals, lo, hi, mdd = position_binomial_look(counts, n, q, alpha_look / positions, ctx.settings.power)
        worst = np.unravel_index(int(np.argmin(pvals)), q.shape)
        within = bool(np.all((lo >= q - margin) & (hi <= q + margin)))
        p_map = float(min(1.0, positions * pvals.min()))
        est = float(counts[worst] / n)
        ci = Interval(float(lo[worst]), float(hi[worst]), 1 - alpha_look / positions)
        return Look(est, float(q[worst]), p_map, ci, n, float(mdd.max()), margin, alpha_look, equivalent=within)

    def details():
        counts, n = state["counts"], state["n"]
        measured = counts / max(n, 1)
        fits = {}
        for region in ("valid", "anywhere"):
            try:
                fits[region] = _loglik(counts, n, _map(ctx, seed_region=region))
            except Exception:  # noqa: BLE001 - a contract without that scheme
                continue
        best = max(fits, key=fits.get) if fits else None
        return {"measured_map": measured.tolist(), "theory_map": q.tolist(), "units": n,
                "loglik_by_scheme": fits, "identified_scheme": best,
                "declared_scheme": ctx.params.get("seed_region"),
                "log_likelihood_ratio": (fits.get("valid", 0) - fits.get("anywhere", 0)) if len(fits) == 2 else None,
                "requested_margin": margin_req, "calls": advance.done}

    return [run_sequential(ctx, MAP, "worst_position_drop_rate", plan, advance, evaluate,
                           "units per position", details=details)]


def gamma_matches(ctx: CheckContext) -> List[CheckResult]:
    """The seed rate gamma, read off the position covered by the fewest seeds (K_min; a
    corner, K=1, under the valid scheme): its drop rate q = 1 - (1-gamma)^K_min is tested
    exactly (binomial) and reported on the gamma scale gamma = 1 - (1-q)^(1/K_min)."""
    coverage = np.asarray(ctx.contract.extra["coverage"](ctx.params, ctx.shape)).reshape(_positions_shape(ctx))
    gamma = float(ctx.contract.extra["gamma"](ctx.params, ctx.shape))
    pos = np.unravel_index(int(np.argmin(coverage)), coverage.shape)
    k_min = int(coverage[pos])
    q0 = 1 - (1 - gamma) ** k_min
    inputs, state, _ = _pooled_counts(ctx, 102)
    hits = {"k": 0, "n": 0}

    def sink(y: np.ndarray) -> None:
        units = _by_position(ctx, unit_view(ctx, ctx.decode(inputs, y).dropped, keepdims=True))
        hits["k"] += int(units[(slice(None),) + pos].sum())
        hits["n"] += units.shape[0]

    upc = int(unit_view(ctx, np.empty(ctx.shape, bool), keepdims=True).size // coverage.size)
    margin_q = ctx.settings.rate_rel * 2 * max(min(q0, 1 - q0), 0.01)
    needed = binomial_n_for(margin_q / 1.25, q0, ctx.alpha_each / 4, ctx.settings.power)
    plan = plan_for(ctx, needed, upc)
    from ..stats import binomial_mdd
    margin_q = effective_margin(margin_q, binomial_mdd(plan.looks[-1] * upc, q0, plan.alpha_per_look,
                                                       ctx.settings.power))
    to_gamma = lambda q: 1 - (1 - min(max(q, 0.0), 1.0)) ** (1.0 / k_min)  # noqa: E731
    advance = CallCounter(ctx.stream(inputs, ctx.seed + 102), sink)

    def evaluate(alpha_look: float) -> Look:
        lk = binomial_look(hits["k"], hits["n"], q0, alpha_look, margin_q, ctx.settings.power)
        # the same test re-expressed on the gamma scale (a monotone map of q)
        return Look(to_gamma(lk.estimate) if lk.n else math.nan, gamma, lk.p_value,
                    Interval(to_gamma(lk.ci.low), to_gamma(lk.ci.high), lk.ci.level), lk.n,
                    (to_gamma(q0 + lk.mdd) - gamma) if math.isfinite(lk.mdd) else math.inf,
                    to_gamma(q0 + lk.margin) - gamma, alpha_look, equivalent=lk.certifies)

    return [run_sequential(ctx, GAMMA, "gamma", plan, advance, evaluate, "units at the position",
                           details=lambda: {"position": tuple(int(i) for i in pos), "covering_seeds": k_min,
                                            "position_drop_rate": hits["k"] / max(hits["n"], 1),
                                            "expected_position_rate": q0, "calls": advance.done})]


def block_rate_matches(ctx: CheckContext) -> List[CheckResult]:
    """The mean dropped fraction per call equals the exact theory mean of the map (t-test
    across calls, which are independent; nothing assumed inside a call). The details give
    the gap to the nominal p, which the paper's gamma misses by design (blocks overlap)."""
    expected = float(_map(ctx).mean())
    nominal = float(ctx.contract.extra["nominal_rate"](ctx.params))
    inputs, state, sink = _pooled_counts(ctx, 103)
    advance = CallCounter(ctx.stream(inputs, ctx.seed + 103), sink)
    tol = ctx.settings.rate_rel * max(min(expected, 1 - expected), 0.01)
    try:
        tp = two_stage_t_plan(ctx, advance, [state["fractions"]], tol)
    except TargetError as exc:
        return [error_result(ctx, RATE, str(exc), statistical=True)]
    plan, margin = tp.plan, tp.margin

    def details():
        f = np.asarray(state["fractions"])
        return {"nominal_p": nominal, "theory_mean_rate": expected, "measured_mean_rate": float(f.mean()),
                "relative_gap_to_nominal": float(f.mean() / nominal - 1) if nominal else None,
                "calls": advance.done}

    return [run_sequential(ctx, RATE, "mean_drop_rate", plan, advance,
                           lambda a: mean_look(state["fractions"], expected, a, margin, ctx.settings.power),
                           "calls", details=details)]


def _window_sum(arr: np.ndarray, axis: int, k: int) -> np.ndarray:
    """Sums of ``k`` consecutive entries along ``axis`` (length len - k + 1), via cumsum."""
    c = np.cumsum(arr, axis=axis, dtype=np.int64)
    zero = np.zeros_like(np.take(c, [0], axis=axis))
    c = np.concatenate([zero, c], axis=axis)
    n = arr.shape[axis]
    return np.take(c, np.arange(k, n + 1), axis=axis) - np.take(c, np.arange(0, n - k + 1), axis=axis)


def uncovered_positions(dropped: np.ndarray, extents: Tuple[Tuple[int, int], ...], seed_region: str) -> np.ndarray:
    """Dropped positions not inside any fully dropped admissible block (0 for a valid
    DropBlock mask). ``dropped`` is (..., *spatial); ``extents`` the (first, last) offsets
    of a block around its seed per spatial axis."""
    rank = len(extents)
    lead = dropped.ndim - rank
    full = dropped.astype(bool)
    for i, (first, last) in enumerate(extents):  # separable: a box is all dropped iff, axis by axis, ...
        ax = lead + i
        dim = dropped.shape[ax]
        k = last - first + 1
        a = 0 if seed_region == "valid" else first
        grid = dim - k + 1 if seed_region == "valid" else dim
        left, right = max(0, -a), max(0, grid - 1 + a + k - 1 - (dim - 1))
        pad = [(0, 0)] * full.ndim
        pad[ax] = (left, right)  # outside the map counts as dropped: blocks are clipped there
        full = _window_sum(np.pad(full, pad, constant_values=True).astype(np.int64), ax, k) == k
    seeds = full.astype(np.int64)
    covered = seeds
    for i, (first, last) in enumerate(extents):
        ax = lead + i
        dim = dropped.shape[ax]
        k = last - first + 1
        a = 0 if seed_region == "valid" else first
        grid = covered.shape[ax]
        pl = k - 1 + a
        pr = dim + k - 1 - grid - pl
        pad = [(0, 0)] * covered.ndim
        pad[ax] = (pl, pr)
        covered = _window_sum(np.pad(covered, pad), ax, k)
    return dropped & (covered == 0)


def dropped_set_is_union_of_blocks(ctx: CheckContext, calls: int = 6) -> List[CheckResult]:
    """Exact: in every call, every dropped position lies in some fully dropped block whose
    seed is admissible for the declared scheme (catches partial blocks, wrong block
    geometry, blocks transposed for H != W, seeds outside the valid region)."""
    start = time.perf_counter()
    inputs = ctx.probe(104)
    extents = ctx.contract.extra["block_extent"](ctx.params, ctx.shape)
    region = ctx.params.get("seed_region", "valid")
    bad = total = 0
    try:
        stream = ctx.stream(inputs, ctx.seed + 104)
        for _ in range(calls):
            dropped = ctx.decode(inputs, next(stream)).dropped
            bad += int(uncovered_positions(dropped, extents, region).sum())
            total += int(dropped.sum())
    except TargetError as exc:
        return [error_result(ctx, CONTIGUOUS, str(exc))]
    return [exact_result(ctx, CONTIGUOUS, bad == 0,
                         f"dropped positions outside any whole {region}-seeded block={bad} of {total}", "0",
                         {"uncovered": bad, "dropped": total, "extents": extents}, time.perf_counter() - start)]


def _one(ctx: CheckContext) -> int:
    return 1


def _zero(ctx: CheckContext) -> int:
    return 0


def _specs():
    from . import CheckSpec
    return (
        CheckSpec(MAP, "per-position drop map", drop_map_matches_theory, applies_map, _one),
        CheckSpec(GAMMA, "DropBlock gamma", gamma_matches, applies, _one),
        CheckSpec(RATE, "DropBlock mean rate", block_rate_matches, applies, _one),
        CheckSpec(CONTIGUOUS, "DropBlock contiguity", dropped_set_is_union_of_blocks, applies, _zero),
    )
