"""DropBlock: per-position drop map vs the exact theory, gamma, mean rate, contiguity, channel
sharing, and the layer's seed scheme, gamma and gamma rule identified by maximum likelihood
(:mod:`._dropblock_fit`).

Theory (contract ``extra``): a position covered by K admissible seeds is dropped with
probability exactly 1 - (1 - gamma)^K; positions are dependent inside a call (overlapping
blocks) but each position's count over independent units is exactly binomial, so the map
test uses per-position exact tests with Bonferroni over positions (valid under any
dependence between positions).
"""
from __future__ import annotations

import math
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from ..stats import Interval, Look, binomial_look
from . import _dropblock_fit as fit_mod
from ..results import CheckResult
from ._core import CheckContext, unit_view
from ._sequential import error_result, exact_result, run_sequential, two_stage_t_plan
from ._stream import CallCounter
from ._worker import TargetError

MAP = "drop_map_matches_theory_by_binomial"
GAMMA = "gamma_matches_by_binomial"
RATE = "block_rate_matches_by_t_test"
CONTIGUOUS = "dropped_set_is_union_of_blocks"
CHANNELS = "block_mask_shared_across_channels"


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


class _FitData:
    """Per-position dropped counts of the layer AS IT BEHAVES, for the maximum-likelihood fit.

    Two unit sets are accumulated: every (n, c) map ("all") and channel 0 of each batch item
    ("first"), each with the first ``fit_mod.SANDWICH_UNITS`` unit maps (the sample for the
    sandwich interval). Whether the channels were identical in every call so far is tracked
    exactly; when they were, the rows of one batch item are copies, not independent units, so
    the fit uses "first", else "all"."""

    def __init__(self, dims: Tuple[int, ...]) -> None:
        self.dims = tuple(int(d) for d in dims)
        size = int(np.prod(self.dims, dtype=np.int64))
        self.counts = {k: np.zeros(size, np.int64) for k in ("all", "first")}
        self.n = {"all": 0, "first": 0}
        self.rows: Dict[str, List[np.ndarray]] = {"all": [], "first": []}
        self.shared: Optional[bool] = None

    def add(self, dropped: np.ndarray) -> None:
        """Add one call's dropped indicator, shape (N, C, *dims)."""
        d = np.asarray(dropped, bool)
        size = self.counts["all"].size
        per = d.reshape(d.shape[0], -1, size)
        for key, rows in (("all", per.reshape(-1, size)), ("first", per[:, 0])):
            self.counts[key] += rows.sum(axis=0)
            self.n[key] += rows.shape[0]
            kept = sum(len(r) for r in self.rows[key])
            if kept < fit_mod.SANDWICH_UNITS:
                self.rows[key].append(rows[:fit_mod.SANDWICH_UNITS - kept].copy())
        now = fit_mod.channels_shared(d)
        if now is not None:
            self.shared = now if self.shared is None else (self.shared and now)

    def channels_shared(self) -> Optional[bool]:
        """Measured: True when channels were identical in every call (None: C < 2 or nothing dropped)."""
        return self.shared if self.counts["all"].any() else None

    def identify(self, ctx: CheckContext, level: float) -> Optional[fit_mod.Identification]:
        shared = self.channels_shared()
        key = "first" if shared else "all"
        if self.n[key] == 0:
            return None
        return fit_mod.identify(self.counts[key].reshape(self.dims), self.n[key], float(ctx.params["p"]),
                                int(ctx.params["block_size"]), self.dims, level, np.concatenate(self.rows[key]),
                                declared_scheme=ctx.params.get("seed_region"), channels_shared=shared)


def _is_dropblock(ctx: CheckContext) -> bool:
    return ctx.contract.structure == "block" and "coverage" in ctx.contract.extra


def _fit_details(ctx: CheckContext, ident: Optional[fit_mod.Identification]) -> Dict[str, Any]:
    """The identification plus what the contract declares (what :func:`diagnose` reads)."""
    if ident is None:
        return {}
    out = ident.as_details()
    out.update(declared_scheme=ctx.params.get("seed_region"), declared_gamma_rule=ctx.params.get("gamma_rule"),
               declared_share_channels=ctx.params.get("share_channels"), rank=len(ctx.shape) - 2,
               contract_gamma=float(ctx.contract.extra["gamma"](ctx.params, ctx.shape)))
    return out


def diagnose(details: Mapping[str, Any]) -> Optional[str]:
    """The root cause in words from a DropBlock map / gamma result's details, e.g. "seeds over
    the whole map; gamma 0.0020 = p/bs^2 (uncorrected)"; None when the fitted layer agrees with
    its contract or the result carries no fit."""
    return fit_mod.describe(details)


def _with_diagnosis(result: CheckResult) -> CheckResult:
    """Prefix a non-PASS result's message with its root cause in words (when there is one)."""
    words = diagnose(result.details) if result.verdict != "PASS" else None
    return result.with_(cause=words) if words else result


def _pooled_counts(ctx: CheckContext, salt: int, fit: Optional[_FitData] = None):
    """Sink accumulating per-position dropped counts over the contract's independent units
    (and, when ``fit`` is given, the layer-as-it-behaves counts for the fit)."""
    inputs, stream = ctx.shared_stream()
    state = {"counts": np.zeros(_positions_shape(ctx), np.int64), "n": 0, "fractions": []}

    def sink(y: np.ndarray) -> None:
        dropped = ctx.dropped(inputs, y)
        if fit is not None:
            fit.add(dropped)
        flat = _by_position(ctx, unit_view(ctx, dropped, keepdims=True))
        state["counts"] += flat.sum(axis=0)
        state["n"] += flat.shape[0]
        state["fractions"].append(float(dropped.mean()))

    return inputs, stream, state, sink


def drop_map_matches_theory(ctx: CheckContext) -> List[CheckResult]:
    """Every position's drop rate equals the exact theory 1 - (1 - gamma)^K.

    :func:`.positions.position_rate_test` with the theory map: per-position exact binomial
    tests (Bonferroni over positions) and per-call t-tests reject; a PASS certifies every
    position within ± position_rel x min(mean rate, 1 - mean rate) from per-call rates of at
    least ``calls_to_expose`` independent calls. Catches gamma from the wrong dimension, seeds
    outside the valid region, transposed geometry for H != W, off-by-one even blocks. The
    details name the seed scheme (valid / anywhere), the fitted gamma and its gamma rule
    (maximum likelihood under each scheme, :mod:`._dropblock_fit`); a non-PASS message opens
    with the cause in words.
    """
    from .positions import position_rate_test
    q = _map(ctx)
    positions = q.size
    fit = _FitData(tuple(ctx.shape[2:])) if _is_dropblock(ctx) else None
    upc = int(unit_view(ctx, np.empty(ctx.shape, bool), keepdims=True).size // positions)
    q_mean = float(q.mean())
    margin = ctx.settings.position_rel * min(q_mean, 1 - q_mean)

    def rows(dropped: np.ndarray) -> np.ndarray:
        return _by_position(ctx, unit_view(ctx, dropped, keepdims=True)).reshape(-1, positions)

    def details(acc: Mapping[str, Any]) -> Dict[str, Any]:
        counts, n = acc["counts"], acc["n"]
        out: Dict[str, Any] = {"measured_map": (counts / max(n, 1)).reshape(q.shape).tolist(),
                               "theory_map": q.tolist(), "units": n}
        if fit is not None:
            out.update(_fit_details(ctx, fit.identify(ctx, 1 - acc["alpha_look"])))
        return out

    return [_with_diagnosis(position_rate_test(ctx, MAP, q.reshape(-1), margin, rows, 101, upc, details=details,
                                               observe=fit.add if fit is not None else None))]


def gamma_matches(ctx: CheckContext) -> List[CheckResult]:
    """The seed rate gamma.

    FAIL side (valid under the contract, false alarm <= alpha): Bonferroni over the exact
    binomial test of the drop rate q0 = 1 - (1-gamma)^K_min at the position the contract's
    scheme covers with the fewest seeds (a corner, K=1, under the valid scheme), pooled over
    units, and the t-test of the per-call mean drop rate against its theory
    g(gamma) = mean_i 1 - (1-gamma)^K_i. Estimate and interval shown: gamma fitted by maximum
    likelihood over the whole map under the IDENTIFIED seed scheme and the layer's measured
    channel sharing (sandwich likelihood-ratio interval), so a layer seeding anywhere with
    p/bs^2 reads gamma ~ p/bs^2, not a corner rate on the wrong scheme. PASS: the t interval
    of the per-call mean rate (independent calls), mapped through g^-1, lies within
    gamma ± gamma_rel x gamma from at least ``calls_to_expose`` calls, and so does the fitted
    interval. The details name the scheme, the gamma rule matched and the channel sharing."""
    from scipy.optimize import brentq

    from ._calls import Lane, call_level_look
    from ..stats import calls_to_expose, hidden_fault_fraction
    coverage = np.asarray(ctx.contract.extra["coverage"](ctx.params, ctx.shape)).reshape(_positions_shape(ctx))
    gamma = float(ctx.contract.extra["gamma"](ctx.params, ctx.shape))
    pos = np.unravel_index(int(np.argmin(coverage)), coverage.shape)
    k_min = int(coverage[pos])
    q0 = 1 - (1 - gamma) ** k_min
    ks = coverage.reshape(-1).astype(np.float64)
    g = lambda x: float(np.mean(1 - (1 - min(max(x, 0.0), 1.0)) ** ks))  # noqa: E731  mean rate at gamma x
    margin_g = ctx.settings.gamma_rel * gamma
    r0 = g(gamma)
    margin_r = min(r0 - g(gamma - margin_g), g(gamma + margin_g) - r0)  # the gamma band on the rate scale

    def g_inv(r: float) -> float:
        if not math.isfinite(r) or r <= 0:
            return 0.0
        if r >= g(1.0):
            return 1.0
        return float(brentq(lambda x: g(x) - r, 0.0, 1.0, xtol=1e-12))

    inputs, stream = ctx.shared_stream()
    hits = {"k": 0, "n": 0}
    fit = _FitData(tuple(ctx.shape[2:]))
    last: Dict[str, Any] = {}
    lane = Lane("mean rate")

    def sink(y: np.ndarray) -> None:
        dropped = ctx.dropped(inputs, y)
        fit.add(dropped)
        units = _by_position(ctx, unit_view(ctx, dropped, keepdims=True))
        hits["k"] += int(units[(slice(None),) + pos].sum())
        hits["n"] += units.shape[0]
        lane.samples.append(float(units.mean()))

    def corner(alpha: float):
        lk = binomial_look(hits["k"], hits["n"], q0, alpha, 1.0, ctx.settings.power)
        return lk.p_value, math.nan

    lane.components["corner"] = corner
    advance = CallCounter(stream, sink)
    try:  # overlapping blocks make a call's mean rate far noisier than binomial: a pilot sizes the test
        plan = two_stage_t_plan(ctx, advance, [lane.samples], margin_r).plan
    except TargetError as exc:
        return [error_result(ctx, GAMMA, str(exc), statistical=True)]
    hits.update(k=0, n=0)  # the pilot is discarded for every component
    n_min = calls_to_expose(ctx.settings.fault_fraction, plan.alpha_per_look)

    def evaluate(alpha_look: float) -> Look:
        record: Dict[str, Any] = {"fault_fraction": ctx.settings.fault_fraction}
        lk = call_level_look(lane, r0, alpha_look, margin_r, ctx.settings.power, n_min, record)
        ident = fit.identify(ctx, 1 - alpha_look)
        band = (g_inv(lk.ci.low), g_inv(lk.ci.high))
        last.update(ident=ident, record=record, hidden=hidden_fault_fraction(lk.n, alpha_look),
                    per_call_gamma_interval=band)
        if ident is None:
            est, ci = math.nan, (0.0, 1.0)
        else:
            est, ci = ident.fit.gamma, ident.fit.ci
        inside = lambda lo, hi: gamma - margin_g <= lo and hi <= gamma + margin_g  # noqa: E731
        mdd = (g_inv(r0 + lk.mdd) - gamma) if math.isfinite(lk.mdd) else math.inf
        return Look(est, gamma, lk.p_value, Interval(ci[0], ci[1], 1 - alpha_look), lk.n, mdd, margin_g,
                    alpha_look, equivalent=lk.certifies and inside(*band) and inside(*ci))

    def details() -> Dict[str, Any]:
        out = {"position": tuple(int(i) for i in pos), "covering_seeds": k_min,
               "position_drop_rate": hits["k"] / max(hits["n"], 1), "expected_position_rate": q0,
               "fail_side": "exact binomial at the contract's least-covered position; t-test of the per-call "
                            "mean rate against g(gamma)",
               "per_call_gamma_interval": last.get("per_call_gamma_interval"),
               "calls": advance.done, "calls_to_expose": n_min,
               "hidden_fault_fraction": last.get("hidden"), **last.get("record", {})}
        out.update(_fit_details(ctx, last.get("ident")))
        return out

    return [_with_diagnosis(run_sequential(ctx, GAMMA, "gamma", plan, advance, evaluate, "calls",
                                           details=details))]


def block_rate_matches(ctx: CheckContext) -> List[CheckResult]:
    """The mean dropped fraction per call equals the exact theory mean of the map (t-test
    across independent calls, nothing assumed inside a call; PASS within ± rate_rel x
    min(rate, 1 - rate) from at least ``calls_to_expose`` calls). The details give the gap to
    the nominal p, which the paper's gamma misses by design (blocks overlap)."""
    from ._calls import Lane, run_call_level
    expected = float(_map(ctx).mean())
    nominal = float(ctx.contract.extra["nominal_rate"](ctx.params))
    inputs, stream, state, sink = _pooled_counts(ctx, 103)
    advance = CallCounter(stream, sink)
    tol = ctx.settings.rate_rel * min(expected, 1 - expected)
    lane = Lane("calls", samples=state["fractions"])
    try:
        tp = two_stage_t_plan(ctx, advance, [state["fractions"]], tol)
    except TargetError as exc:
        return [error_result(ctx, RATE, str(exc), statistical=True)]

    def details():
        f = np.asarray(state["fractions"])
        return {"nominal_p": nominal, "theory_mean_rate": expected, "measured_mean_rate": float(f.mean()),
                "relative_gap_to_nominal": float(f.mean() / nominal - 1) if nominal else None,
                "calls": advance.done}

    return [run_call_level(ctx, RATE, "mean_drop_rate", tp.plan, advance, [lane], expected, tp.margin, "calls",
                           details=details)]


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
    inputs, stream = ctx.shared_stream()
    extents = ctx.contract.extra["block_extent"](ctx.params, ctx.shape)
    region = ctx.params.get("seed_region", "valid")
    bad = total = 0
    try:
        for _ in range(calls):
            dropped = ctx.dropped(inputs, next(stream))
            bad += int(uncovered_positions(dropped, extents, region).sum())
            total += int(dropped.sum())
    except TargetError as exc:
        return [error_result(ctx, CONTIGUOUS, str(exc))]
    return [exact_result(ctx, CONTIGUOUS, bad == 0,
                         f"dropped positions outside any whole {region}-seeded block={bad} of {total}", "0",
                         {"uncovered": bad, "dropped": total, "extents": extents}, time.perf_counter() - start)]


def applies_shared_channels(ctx: CheckContext) -> bool:
    """DropBlock contracts that share one mask across two or more channels."""
    return (ctx.contract.structure == "block" and bool(ctx.params.get("share_channels"))
            and len(ctx.shape) > 2 and ctx.shape[1] >= 2 and 0 < ctx.params.get("p", 0.5) < 1)


def block_mask_shared_across_channels(ctx: CheckContext, calls: int = 6) -> List[CheckResult]:
    """Exact: with share_channels=True, every channel's decoded dropped map equals channel 0's
    in every batch item of every call (catches per-channel masks under a shared contract; the
    converse, a shared mask under a per-channel contract, is the axis-1 pair test)."""
    from .independence import mask_constant_along_shared_axes
    out = []
    for r in mask_constant_along_shared_axes(ctx, calls):
        words = "one mask per channel (contract: one shared by all channels)" if r.verdict == "FAIL" else None
        out.append(r.with_(check=CHANNELS, cause=words or r.cause))
    return out


def _one(ctx: CheckContext) -> int:
    return 1


def _zero(ctx: CheckContext) -> int:
    return 0


def _specs():
    from . import CALL_LEVEL, POOLED, STRUCTURAL, CheckSpec
    from ._words import stated
    return (
        CheckSpec(MAP, "per-position drop map", drop_map_matches_theory, applies_map, _one, role=POOLED,
                  shares_stream=True),
        CheckSpec(GAMMA, "DropBlock gamma", gamma_matches, applies, _one, role=POOLED, shares_stream=True),
        CheckSpec(RATE, "DropBlock mean rate", block_rate_matches, applies, _one, role=CALL_LEVEL, shares_stream=True),
        CheckSpec(CONTIGUOUS, "DropBlock contiguity", dropped_set_is_union_of_blocks, applies, _zero, role=CALL_LEVEL,
                  shares_stream=True),
        CheckSpec(CHANNELS, "mask structure", block_mask_shared_across_channels, applies_shared_channels, _zero,
                  role=STRUCTURAL, explain=stated, shares_stream=True),
    )
