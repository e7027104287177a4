"""Mask structure: constant along shared axes, independent along the others, fresh on every
call, independent across seeds, and reproducible under the same seed."""
from __future__ import annotations

import math
import time
from typing import List, Sequence, Tuple

import numpy as np
from scipy import stats as sps

from . import _stream
from ..results import CheckResult
from ._core import CheckContext, mask_values, unit_view
from ._sequential import error_result, exact_result, two_stage_t_plan
from ._stream import BudgetExhausted, CallCounter, _Raise
from ._worker import TargetError

CONSTANT = "mask_constant_along_shared_axes"
FRESH = "masks_fresh_across_calls_by_fisher"
SEEDS = "masks_independent_across_seeds_by_fisher"
OVERLAP = "seed_streams_do_not_overlap_by_fisher"
REPRO = "same_seed_reproduces"
AXES = "masks_independent_along_axes_by_fisher"
OUTPUT_SHAPE = "output shape"
"""The named stream of the probe that only tells the output shape (no check reads its values)."""
_AXIS_NAMES = {0: "batch"}


def along_name(axis: int) -> str:
    return f"masks_independent_along_axis{axis}_by_fisher"


def independent_axes(ctx: CheckContext) -> Tuple[int, ...]:
    """Non-shared output axes with at least two units (candidates for pair tests)."""
    shared = set(ctx.contract.shared_axes(ctx.params, ctx.shape))
    out_shape = ctx.output_shape(ctx.seeds(OUTPUT_SHAPE).probe())
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


MIN_EVENTS = 10
"""Co-events expected under the contract in one sample of a binary pair test."""


def _minority(ctx: CheckContext) -> Tuple[bool, float]:
    """(event is "dropped", its rate): the rarer of dropped / kept under the contract, so the
    relative risk stays meaningful for p near 0 and near 1."""
    q = float(np.mean(ctx.contract.drop_probability(ctx.params, ctx.shape)))
    return (q <= 0.5, q if q <= 0.5 else 1 - q)


def _pair_test(ctx: CheckContext, name: str, quantity: str, lanes: Sequence[str], pairs_per_step: int,
               step, n_unit: str, calls_per_step: int = 1, stream=None, stacked_step=None) -> CheckResult:
    """Shared driver over several *lanes* (pairings: offsets along an axis, lags between
    calls). ``step()`` returns, per lane, (u, v, binary[, q_u, q_v]) for one independent step
    (one call, or one group of calls).

    Binary masks, per lane and step, the *within-step* excess co-event rate
    (c - a b) / q_e^2: c the fraction of pairs where both show the rarer event e (dropped if
    p <= 1/2, else kept), a and b each side's fraction, q_e the contract's rate of e. It has
    mean exactly 0 under independence, about RR - 1 (RR = P(e | partner e) / P(e)) otherwise,
    and it is conditional on the step (on a block of consecutive steps where one step holds
    too few pairs, e.g. the single pair of a one-draw-per-call layer): a drop rate that varies from call to call (a fault of
    the rate, caught by the rate check) does not show up as dependence. FAIL: Bonferroni over
    the Cochran-Mantel-Haenszel test (steps as strata: conditional independence given each
    step's margins), the most extreme step (hypergeometric), the "every pair identical" event
    (probability (q^2 + (1-q)^2)^n per step under the contract; one draw shared by all the
    units of a step is degenerate for every conditional test) and the t-test across steps.
    PASS: the t interval of the per-step statistic within ± ``dependence_rr`` from enough
    independent steps.
    Continuous noise: the per-step Pearson r and ± ``correlation_tol``. Lanes: Bonferroni.
    ``stream``: the one stream every step draws ``calls_per_step`` calls from, if so (the
    calls of several steps are then drawn per dispatch, :class:`_PrefetchedSteps`).
    ``stacked_step``: the same step returning :class:`StackedPairs` (every lane's pairs at once,
    so a binary step costs a few array operations whatever the number of lanes); used for
    binary masks with a uniform drop probability, and gives the same counts as ``step``."""
    if _nonuniform(ctx):
        return _stratified_pair_test(ctx, name, quantity, lanes, step, calls_per_step, stream)
    from ..stats import RunningPearson, per_step_hypergeom_p
    from ._calls import Lane, call_plan, run_call_level
    drop_event, qe = _minority(ctx)
    binary = ctx.contract.dropped_value is not None
    n = max(pairs_per_step, 1)
    per_sample = 1
    if binary:
        margin = ctx.settings.dependence_rr
        # rare events or few pairs per step (one draw per call): pool consecutive steps into one
        # sample until MIN_EVENTS co-events are expected under the contract, so the t interval does
        # not rest on a few lone events and a one-pair step (no within-step spread) still counts
        per_sample = max(1, int(math.ceil(MIN_EVENTS / max(qe * qe * n, 1e-300))))
        sd_null = math.sqrt(max(1 - qe * qe, 1e-12) / (n * per_sample)) / max(qe, 1e-12)
        quantity = quantity.replace("correlation", "excess_relative_risk")
    else:
        margin = ctx.settings.correlation_tol
        sd_null = 1 / math.sqrt(n)
    if binary and stacked_step is not None:
        step = stacked_step
    plan = call_plan(ctx, sd_null, margin, lanes=len(lanes), steps_per_sample=per_sample,
                     calls_per_step=calls_per_step)
    tables = [{"a": [], "r": [], "c": [], "n": [], "same": True, "identical_steps": 0, "equal_steps": 0, "event_steps": 0,
               "block": [0, 0, 0, 0]}
              for _ in lanes]
    pooled = [RunningPearson() for _ in lanes]
    objs = [Lane(lane, steps_per_sample=per_sample) for lane in lanes]
    from . import _conditioned
    signs = _conditioned.SignTables(len(lanes)) \
        if binary and _conditioned.ENABLED and pairs_per_step >= _conditioned.MIN_PAIRS else None
    if signs is not None:
        for i, lane in enumerate(objs):
            lane.condition = (lambda i=i: signs.p_value(i))

    def record(i: int, a: int, r: int, c: int, m: int) -> None:
        """One lane's step of a binary mask: a co-events among m pairs, r and c events per side."""
        t = tables[i]
        t["a"].append(a); t["r"].append(r); t["c"].append(c); t["n"].append(m)
        equal = a == r == c  # every pair equal: the events coincide exactly
        t["same"] = t["same"] and equal
        block = t["block"]
        block[0] += a; block[1] += r; block[2] += c; block[3] += m
        if len(t["n"]) % per_sample == 0:  # the block's pairs are independent of each other
            A, R, C, M = block
            objs[i].samples.append((A / M - (R / M) * (C / M)) / (qe * qe))
            t["block"] = [0, 0, 0, 0]
        if equal:  # tested against (q^2 + (1-q)^2)^m, the chance of equal pairs under the contract
            t["equal_steps"] += 1
        if equal and r > 0 and m > 1:  # worth saying "identical masks" in words
            t["identical_steps"] += 1
        t["event_steps"] += int(r > 0 or c > 0)

    def events(x: np.ndarray) -> np.ndarray:
        xb = x if x.dtype == np.bool_ else x.astype(bool)
        return xb if drop_event else ~xb

    def sink(items) -> None:
        if isinstance(items, StackedPairs):  # all lanes of a binary step at once (same counts)
            eu, ev = events(items.u), events(items.v)
            counts = items.counts
            for i, (a, r, c, m) in enumerate(zip(counts(eu & ev), counts(eu), counts(ev), items.sizes)):
                record(i, int(a), int(r), int(c), int(m))
            if signs is not None:
                signs.add_stacked(eu, ev, counts)
            return
        if binary and signs is not None:
            signs.add_lists([(events(np.asarray(it[0]).ravel()), events(np.asarray(it[1]).ravel())) for it in items])
        for i, item in enumerate(items):
            u, v = np.asarray(item[0]).ravel(), np.asarray(item[1]).ravel()
            if binary:
                eu, ev = events(u), events(v)
                record(i, int(np.count_nonzero(eu & ev)), int(np.count_nonzero(eu)), int(np.count_nonzero(ev)),
                       eu.size)
            else:
                u64, v64 = np.asarray(u, np.float64), np.asarray(v, np.float64)
                ok = np.isfinite(u64) & np.isfinite(v64)
                if not ok.all():
                    u64, v64 = u64[ok], v64[ok]
                tables[i]["same"] = tables[i]["same"] and bool(np.array_equal(u64, v64))
                objs[i].samples.append(float(pooled[i].add(u64, v64)))  # this step's own Pearson r
                tables[i]["n"].append(u64.size)

    def cmh_component(i: int):
        def comp(alpha: float):
            t = tables[i]
            from ..stats import cmh_p
            return (cmh_p(t["a"], t["r"], t["c"], t["n"]), math.nan) + _pooled_rr(t)
        return comp

    log_match = math.log(qe * qe + (1 - qe) * (1 - qe)) if binary else -math.inf

    def identical_component(i: int):
        """Steps whose pairs are ALL equal: under the contract each step is so with probability
        at most pi = (q^2 + (1-q)^2)^n (n its pairs), independently, so their count K is
        stochastically below Binomial(S, pi): p = P(Bin(S, pi) >= K)."""
        def comp(alpha: float):
            t = tables[i]
            if not t["equal_steps"]:
                return 1.0, math.nan
            pi = math.exp(min(t["n"]) * log_match)
            a, r, c = (np.asarray(t[k]) for k in "arc")
            eq = (a == r) & (r == c)
            return (float(sps.binom.sf(t["equal_steps"] - 1, len(t["n"]), pi)), math.nan) + _pooled_rr(t, eq)
        return comp

    def step_component(i: int):
        def comp(alpha: float):
            t = tables[i]
            from ._coherent import most_extreme
            j = most_extreme(t["a"], t["r"], t["c"], t["n"])
            one = np.arange(len(t["n"])) == j
            return (per_step_hypergeom_p(t["a"], t["r"], t["c"], t["n"][0] if t["n"] else 0), math.nan) + \
                _pooled_rr(t, one)
        return comp

    def _pooled_rr(t, rows=None):
        """(estimate, null se) of the pooled excess relative risk sum (a - r c / n) / sum n q_e^2
        of the steps ``rows`` (all by default)."""
        from ._coherent import pooled_excess
        a, r, c, m = (np.asarray(t[k], np.float64) for k in ("a", "r", "c", "n"))
        if rows is not None:
            a, r, c, m = a[rows], r[rows], c[rows], m[rows]
        return pooled_excess(a, r, c, m, m * qe * qe)

    def pearson_component(i: int):
        return lambda alpha: (pooled[i].p_value(), math.nan, pooled[i].r, 1 / math.sqrt(max(pooled[i].n, 1)))

    for i, lane in enumerate(objs):
        if binary:
            lane.components["pooled"] = cmh_component(i)
            lane.components["outlier_step"] = step_component(i)
            lane.components["identical_step"] = identical_component(i)
        else:
            lane.components["pooled"] = pearson_component(i)
        # "identical masks" in words: on most steps with an event (a chance coincidence on one
        # step of many, likely at tiny rates, is not what the words mean)
        lane.identical = (lambda i=i: tables[i]["identical_steps"] * 2 > tables[i]["event_steps"]
                          or (bool(tables[i]["n"]) and tables[i]["same"] and sum(tables[i]["r"]) > 0))

    advance = CallCounter(_steps(step, stream, calls_per_step), sink)
    scale = "within-step (c - a b) / q_e^2, about P(event | partner event) / P(event) - 1" if binary \
        else "Pearson correlation"
    return run_call_level(ctx, name, quantity, plan, advance, objs, 0.0, margin, "independent steps",
                          calls_per_step=calls_per_step,
                          details=lambda: {"steps": advance.done, "statistic": scale,
                                           "event": ("dropped" if drop_event else "kept") if binary else None,
                                           "event_rate": qe if binary else None, "pairs_per_step": pairs_per_step,
                                           "pairings": ", ".join(lanes)})


class StackedPairs:
    """The pairs of every lane of one step, side by side: lane i is ``u[i]``/``v[i]`` (2-D,
    one row per lane) or the segment ``starts[i]:starts[i] + sizes[i]`` of ``u``/``v`` (1-D).
    Pair order within a lane is free: a binary step only counts events."""

    def __init__(self, u: np.ndarray, v: np.ndarray, sizes: Sequence[int]) -> None:
        self.u, self.v = u, v
        self.sizes = [int(m) for m in sizes]
        self.starts = [0] + np.cumsum(self.sizes)[:-1].tolist()

    def counts(self, x: np.ndarray) -> np.ndarray:
        """True elements per lane of a boolean array shaped like ``u``."""
        if x.ndim == 2:
            return np.count_nonzero(x, axis=1)
        # count_nonzero per lane slice: far faster than add.reduceat on large bool arrays
        return np.array([np.count_nonzero(x[s:s + m]) for s, m in zip(self.starts, self.sizes)], np.int64)


class _Steps:
    """The steps of a pair test, one ``step()`` per ``next``."""

    def __init__(self, step) -> None:
        self.step = step

    def __iter__(self):
        return self

    def __next__(self):
        return self.step()


def _steps(step, stream, calls: int) -> _Steps:
    return _Steps(step) if stream is None else _PrefetchedSteps(step, stream, calls)


class _PrefetchedSteps(_Steps):
    """Steps that each draw ``calls`` consecutive calls of one :class:`Stream` and touch no
    other target: :meth:`take` draws the calls of ``n`` steps in one dispatch
    (:meth:`Stream.prefetch`) before running the steps, so the target sees the same calls in
    the same order as one step at a time; only the thread hand-offs are fewer."""

    def __init__(self, step, stream, calls: int) -> None:
        super().__init__(step)
        self.stream, self.calls = stream, calls

    def take(self, n: int) -> list:
        n = max(1, min(n, _stream.STREAM_BATCH // self.calls))  # at most one dispatch's worth buffered
        self.stream.prefetch(n * self.calls)
        out: list = []
        for _ in range(n):
            try:
                out.append(self.step())
            except TargetError as exc:  # raised by CallCounter after the steps before it
                out.append(_Raise(exc))
                break
            except BudgetExhausted:  # the stream ended: the whole steps drawn so far still count
                if out:
                    break
                raise
        return out


def _stratified_pair_test(ctx: CheckContext, name: str, quantity: str, lanes: Sequence[str], step,
                          calls_per_step: int = 1, stream=None) -> CheckResult:
    """Pair test for masks whose drop probability varies by position (DropBlock, depth
    schedules).

    Pooling a 2x2 table over positions with different rates would show a spurious positive
    correlation (Simpson), and positions inside a call are dependent (overlapping blocks).
    So each step (an independent pair of calls or of unit slices) gives, per lane, one
    statistic: the sum over positions of the unbiased covariance of u and v across the
    independent units at that position, divided by the sum over positions of q_e^2 (q_e the
    contract's rate of the rarer outcome there) — exactly mean 0 under independence whatever
    the true per-position rates, and the q_e^2-weighted mean of RR - 1 otherwise. A t-test
    across steps (Bonferroni over lanes) with at least ``calls_to_expose`` steps. Needs at
    least two units per position and step.
    """
    from ._calls import Lane, run_call_level
    q = np.asarray(ctx.contract.drop_probability(ctx.params, ctx.shape), np.float64)
    lead = len(ctx.shape) - q.ndim
    pos_axes = tuple(lead + i for i, size in enumerate(q.shape) if size > 1)
    qe = np.minimum(q, 1 - q).reshape(-1)
    norm = float(np.sum(qe * qe)) or 1.0

    def rows(arr: np.ndarray) -> np.ndarray:
        moved = np.moveaxis(arr.astype(np.float64), pos_axes, tuple(range(arr.ndim - len(pos_axes), arr.ndim)))
        return moved.reshape((-1, int(np.prod([arr.shape[a] for a in pos_axes], dtype=np.int64))))

    # Rare events: a step's statistic is a small negative number unless a co-event happens (a
    # rare large positive one), so a t-test on single steps is anti-conservative at small alpha.
    # Pool consecutive steps into one sample until MIN_EVENTS co-events are expected (as the
    # binary pair test does). One step, discarded, tells the units per position.
    try:
        first = step()
    except TargetError as exc:
        return error_result(ctx, name.replace("_by_fisher", "_by_cross_product_t_test"), str(exc), statistical=True)
    units = min(rows(item[0]).shape[0] for item in first)
    needed = max(1, int(math.ceil(MIN_EVENTS / max(units * norm, 1e-300))))
    # the pilot and at least as many samples must fit the budget; where they cannot, the t-test
    # is not valid at this alpha: only the exact components may FAIL, nothing is certified
    from ._sequential import PILOT
    cap = max(1, ctx.settings.max_calls // (2 * PILOT))
    per_sample = min(needed, cap)
    objs = [Lane(lane, steps_per_sample=per_sample, t_valid=needed <= cap) for lane in lanes]
    pending: List[List[float]] = [[] for _ in lanes]

    same = [{"all": True, "events": 0, "equal_steps": 0, "steps": 0, "log_match": -math.inf} for _ in lanes]
    log_row = _log_match_per_row(ctx, q)

    def sink(items) -> None:
        for i, item in enumerate(items):
            u, v = rows(item[0]), rows(item[1])
            if u.shape[0] < 2:
                raise TargetError("fewer than two independent units per position: no within-step covariance")
            cov = np.sum((u - u.mean(0)) * (v - v.mean(0)), axis=0) / (u.shape[0] - 1)
            pending[i].append(float(cov.sum() / norm))
            if len(pending[i]) == per_sample:
                objs[i].samples.append(float(np.mean(pending[i])))
                pending[i].clear()
            equal = bool(np.array_equal(u, v))
            same[i]["all"] = same[i]["all"] and equal
            same[i]["events"] += int(u.sum())
            same[i]["equal_steps"] += int(equal)
            same[i]["steps"] += 1
            same[i]["log_match"] = max(same[i]["log_match"], u.shape[0] * log_row)  # the loosest step bound

    def identical_component(i: int):
        """Steps whose two masks are equal at every unit: under the contract each step is so
        with probability at most pi (the match bound of :func:`_log_match_per_row` over its
        independent rows), independently, so P(Bin(S, pi) >= K) is a valid p-value."""
        def comp(alpha: float):
            t = same[i]
            if not t["equal_steps"]:
                return 1.0, math.nan
            return float(sps.binom.sf(t["equal_steps"] - 1, t["steps"], math.exp(t["log_match"]))), math.nan
        return comp

    def one_step_component(i: int):
        """Any single step with equal masks: P <= pi per step, Bonferroni over the S steps
        (valid whatever the dependence between steps)."""
        def comp(alpha: float):
            t = same[i]
            if not t["equal_steps"]:
                return 1.0, math.nan
            return min(1.0, t["steps"] * math.exp(t["log_match"])), math.nan
        return comp

    for i, lane in enumerate(objs):
        lane.identical = (lambda i=i: same[i]["all"] and same[i]["events"] > 0)
        lane.components["identical_step"] = identical_component(i)
        lane.components["outlier_step"] = one_step_component(i)

    name = name.replace("_by_fisher", "_by_cross_product_t_test")
    advance = CallCounter(_steps(step, stream, calls_per_step), sink)
    try:
        tp = two_stage_t_plan(ctx, advance, [ln.samples for ln in objs], ctx.settings.dependence_rr,
                              lanes=len(lanes), calls_per_sample=per_sample, calls_per_step=calls_per_step)
    except TargetError as exc:
        return error_result(ctx, name, str(exc), statistical=True)
    return run_call_level(ctx, name, quantity.replace("correlation", "excess_relative_risk"), tp.plan, advance,
                          objs, 0.0, tp.margin, "independent steps", calls_per_step=calls_per_step,
                          details=lambda: {"steps": advance.done, "pairings": ", ".join(lanes),
                                           "statistic": "sum over positions of the covariance across units / "
                                                        "sum of q_e^2 (q_e-weighted RR - 1)"})


def _log_match_per_row(ctx: CheckContext, q: np.ndarray) -> float:
    """log of an upper bound on P(two independent masks agree on one row of positions) under
    the contract: the match probability of the row's jointly independent positions (for
    DropBlock a grid of pitch block_size, see :func:`.repeats._independent_units`)."""
    from .repeats import _independent_units, match_log_probability
    rank = len(ctx.shape) - 2
    grid = q if q.ndim >= rank else q.reshape((1,) * (rank - q.ndim) + q.shape)
    return match_log_probability(np.asarray(_independent_units(ctx, grid)).reshape(1, -1))


def axis_offsets(size: int, rng: np.random.Generator = None) -> Tuple[int, ...]:
    """Offsets at which units along an axis are paired: the neighbours (1-4) where RNG
    counters or vectorised draws overlap, powers of two (vector widths, tiles), a quarter and
    half of the axis where tensor-parallel shards reuse a seed, and two random offsets."""
    cand = {1, 2, 3, 4, size // 4, size // 2} | {2 ** k for k in range(3, 16) if 2 ** k <= size // 2}
    if rng is not None and size > 6:
        cand |= {int(d) for d in rng.integers(5, max(6, size // 2 + 1), size=2)}
    return tuple(sorted(d for d in cand if 1 <= d < size))


def _disjoint_pair_count(size: int, d: int) -> int:
    """len(_disjoint_pairs(size, d)[0]), without building the index arrays."""
    full = (size // (2 * d)) * (2 * d)
    return full // 2 + max(0, min(d, size - d - full))


def _flat_pairs(flat: np.ndarray, d: int) -> Tuple[np.ndarray, np.ndarray]:
    """(flat[a], flat[b]) for (a, b) = :func:`_disjoint_pairs` (flat.size, d), same order, from
    strided views: no index arrays (on a 2^25-element call those take 2 GB per side)."""
    size = flat.size
    full = (size // (2 * d)) * (2 * d)
    blocks = flat[:full].reshape(-1, 2, d)
    tail = max(0, min(d, size - d - full))
    return (np.concatenate([blocks[:, 0, :].reshape(-1), flat[full:full + tail]]),
            np.concatenate([blocks[:, 1, :].reshape(-1), flat[full + d:full + d + tail]]))


def _axis_pairs(units: np.ndarray, axis: int, d: int) -> Tuple[np.ndarray, np.ndarray]:
    """(units.take(a, axis), units.take(b, axis)) for (a, b) = :func:`_disjoint_pairs` along
    ``axis``, from block slices (the same arrays, element for element, without a gather: a
    take along an inner axis copies one element at a time)."""
    size = units.shape[axis]
    full = (size // (2 * d)) * (2 * d)
    tail = max(0, min(d, size - d - full))
    pre, post = units.shape[:axis], units.shape[axis + 1:]
    index = [slice(None)] * units.ndim
    index[axis] = slice(0, full)
    blocks = units[tuple(index)].reshape(pre + (full // (2 * d), 2, d) + post)  # a view

    def side(k: int) -> np.ndarray:
        pick = [slice(None)] * blocks.ndim
        pick[axis + 1] = k
        head = blocks[tuple(pick)].reshape(pre + (full // 2,) + post)
        if not tail:
            return head
        index[axis] = slice(full + k * d, full + k * d + tail)
        return np.concatenate([head, units[tuple(index)]], axis=axis)
    return side(0), side(1)


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
    inputs, stream = ctx.shared_stream()
    out_shape = ctx.output_shape(inputs)
    offsets = axis_offsets(out_shape[axis], ctx.seeds(AXES).rng(axis))
    pairs = [_disjoint_pairs(out_shape[axis], d) for d in offsets]
    q = np.broadcast_to(np.asarray(ctx.contract.drop_probability(ctx.params, ctx.shape), np.float64), out_shape)
    q_units = unit_view(ctx, q, keepdims=True)
    q_pairs = [(q_units.take(a, axis=axis), q_units.take(b, axis=axis)) for a, b in pairs]

    first_of_pair = np.concatenate([a for a, _ in pairs])
    second_of_pair = np.concatenate([b for _, b in pairs])

    def step():
        vals, binary = mask_values(ctx, inputs, next(stream))
        units = unit_view(ctx, vals, keepdims=True)
        # per lane, block slices (the same arrays as a take of the lane's pairs, no gather)
        return [_axis_pairs(units, axis, d) + (binary, qa, qb) for d, (qa, qb) in zip(offsets, q_pairs)]

    def stacked():
        vals, _ = mask_values(ctx, inputs, next(stream))
        # contiguous first: the gathers below then copy whole rows (far cheaper than gathering
        # strided elements of the moved-axis view; the same values in the same order)
        units = np.ascontiguousarray(np.moveaxis(unit_view(ctx, vals, keepdims=True), axis, 0))
        rest = int(np.prod(units.shape[1:], dtype=np.int64))
        return StackedPairs(units[first_of_pair].reshape(-1), units[second_of_pair].reshape(-1),
                            [len(a) * rest for a, _ in pairs])

    per_unit = int(unit_view(ctx, np.empty(out_shape, bool), keepdims=True).size // out_shape[axis])
    per = per_unit * min(len(a) for a, _ in pairs)
    label = _AXIS_NAMES.get(axis, "")
    return _pair_test(ctx, along_name(axis), f"correlation_axis{axis}{'_' + label if label else ''}",
                      [f"offset {d}" for d in offsets], per, step, "unit pairs", stream=stream, stacked_step=stacked)


LAGS = tuple(range(1, 9))


def masks_fresh_across_calls(ctx: CheckContext) -> List[CheckResult]:
    """Each unit's draw in call t is independent of its draw in calls t + 1, ..., t + 8 (same
    seed stream; one step = 9 calls, the first paired with each of the others, so pairs of a
    lag are disjoint across steps; Bonferroni over lags): catches an RNG that never advances,
    a stale mask reused on some calls, a small pool of masks cycled through."""
    inputs, stream = ctx.shared_stream()

    def step():
        calls = [mask_values(ctx, inputs, next(stream)) for _ in range(max(LAGS) + 1)]
        first = unit_view(ctx, calls[0][0], keepdims=True)
        return [(first, unit_view(ctx, calls[lag][0], keepdims=True), calls[0][1]) for lag in LAGS]

    def stacked():
        calls = [mask_values(ctx, inputs, next(stream))[0] for _ in range(max(LAGS) + 1)]
        later = np.stack([unit_view(ctx, calls[lag], keepdims=True).reshape(-1) for lag in LAGS])
        first = np.broadcast_to(unit_view(ctx, calls[0], keepdims=True).reshape(-1), later.shape)
        return StackedPairs(first, later, [later.shape[1]] * len(LAGS))

    per = int(unit_view(ctx, np.empty(ctx.output_shape(inputs), bool)).size)
    return [_pair_test(ctx, FRESH, "correlation_across_calls", [f"lag {k}" for k in LAGS], per, step,
                       "unit pairs", calls_per_step=max(LAGS) + 1, stream=stream, stacked_step=stacked)]


FLAT = "masks_independent_at_flat_offsets_by_fisher"


def flat_offsets(size: int, rng: np.random.Generator) -> Tuple[int, ...]:
    """Offsets in the flattened unit array of one call: powers of two from 8 (strides of
    vectorised or tiled generators) and three random offsets, at most 8 in all."""
    powers = [2 ** k for k in range(3, 40) if 2 ** k <= size // 2]
    rand = [int(d) for d in rng.integers(5, max(6, size // 2 + 1), size=3)] if size > 10 else []
    chosen = sorted(set(powers[-5:] + rand))
    return tuple(d for d in chosen if 1 <= d < size)


def masks_independent_at_flat_offsets(ctx: CheckContext) -> List[CheckResult]:
    """Units i and i + d of the flattened (C-order) unit array of one call are independent,
    for power-of-two and random offsets d (disjoint pairs; Bonferroni over offsets): catches
    generators whose streams repeat or correlate at a stride that no single axis shows."""
    inputs, stream = ctx.shared_stream()
    size = int(unit_view(ctx, np.empty(ctx.output_shape(inputs), bool)).size)
    offsets = flat_offsets(size, ctx.seeds(FLAT).rng())
    sizes = [_disjoint_pair_count(size, d) for d in offsets]

    def step():
        vals, binary = mask_values(ctx, inputs, next(stream))
        flat = unit_view(ctx, vals).reshape(-1)
        return [_flat_pairs(flat, d) + (binary,) for d in offsets]

    def stacked():
        flat = unit_view(ctx, mask_values(ctx, inputs, next(stream))[0]).reshape(-1)
        lanes = [_flat_pairs(flat, d) for d in offsets]
        return StackedPairs(np.concatenate([u for u, _ in lanes]), np.concatenate([v for _, v in lanes]), sizes)

    per = min(sizes)
    return [_pair_test(ctx, FLAT, "correlation_flat", [f"flat offset {d}" for d in offsets], per, step,
                       "unit pairs", stream=stream, stacked_step=stacked)]


def applies_flat(ctx: CheckContext) -> bool:
    if _nonuniform(ctx) or not randomness_is_observable(ctx):
        return False
    size = int(unit_view(ctx, np.empty(ctx.output_shape(ctx.seeds(OUTPUT_SHAPE).probe()), bool)).size)
    return len(flat_offsets(size, ctx.seeds(FLAT).rng())) > 0 and size >= 32


def masks_independent_across_seeds(ctx: CheckContext) -> List[CheckResult]:
    """The first call after seeding with s and with s' != s are uncorrelated: catches a
    seed that is ignored (same mask on every replica / device / run)."""
    seeds = ctx.seeds(SEEDS)
    inputs = seeds.probe()
    counter = {"j": 0}

    def first(seed: int) -> np.ndarray:
        return next(ctx.stream(inputs, seed))

    def step():
        j = counter["j"]; counter["j"] += 1
        s = seeds.seed(j)
        a, binary = mask_values(ctx, inputs, first(s))
        b, _ = mask_values(ctx, inputs, first(s + 1))
        return [(unit_view(ctx, a, keepdims=True), unit_view(ctx, b, keepdims=True), binary)]

    per = int(unit_view(ctx, np.empty(ctx.output_shape(inputs), bool)).size)
    return [_pair_test(ctx, SEEDS, "correlation_seeds", ["seed s vs s+1"], per, step, "unit pairs",
                       calls_per_step=2)]


def seed_streams_do_not_overlap(ctx: CheckContext) -> List[CheckResult]:
    """The SECOND call after seeding with s is uncorrelated with the FIRST call after
    seeding with s + 1: catches generators that derive call k of seed s from seed s + k,
    so that replicas seeded base + rank replay each other's masks one call apart."""
    seeds = ctx.seeds(OVERLAP)
    inputs = seeds.probe()
    counter = {"j": 0}

    def step():
        j = counter["j"]; counter["j"] += 1
        base = seeds.seed(j)
        stream = ctx.stream(inputs, base)
        next(stream)
        a, binary = mask_values(ctx, inputs, next(stream))
        b, _ = mask_values(ctx, inputs, next(ctx.stream(inputs, base + 1)))
        return [(unit_view(ctx, a, keepdims=True), unit_view(ctx, b, keepdims=True), binary)]

    per = int(unit_view(ctx, np.empty(ctx.output_shape(inputs), bool)).size)
    return [_pair_test(ctx, OVERLAP, "correlation_adjacent_seed_streams", ["call 1 of s vs call 0 of s+1"], per,
                       step, "unit pairs", calls_per_step=3)]


def independence_checks(ctx: CheckContext) -> List[CheckResult]:
    return [masks_independent_along_axis(ctx, a) for a in independent_axes(ctx)]


def independence_parts(ctx: CheckContext):
    """One sub-check per independent axis, each reading the shared stream from its first call."""
    return [lambda a=a: [masks_independent_along_axis(ctx, a)] for a in independent_axes(ctx)]


def mask_constant_along_shared_axes(ctx: CheckContext, calls: int = 6) -> List[CheckResult]:
    """Exact: within every call, the draw is the same at every element of a mask unit."""
    start = time.perf_counter()
    inputs, stream = ctx.shared_stream()
    try:
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
    seeds = ctx.seeds(REPRO)
    inputs = seeds.probe()
    try:
        s1 = ctx.stream(inputs, seeds.seed())
        a1, a2 = next(s1), next(s1)
        s2 = ctx.stream(inputs, seeds.seed())
        b1, b2 = next(s2), next(s2)
    except TargetError as exc:
        return [error_result(ctx, REPRO, str(exc))]
    diff = int(np.sum(~((a1 == b1) | (np.isnan(a1) & np.isnan(b1))))) + \
        int(np.sum(~((a2 == b2) | (np.isnan(a2) & np.isnan(b2)))))
    return [exact_result(ctx, REPRO, diff == 0, f"elements differing between two runs with one seed={diff}",
                         "0", {"differing": diff}, time.perf_counter() - start)]
