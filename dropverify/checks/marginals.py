"""Marginal drop rates along EVERY axis, the batch axis included, and along the flat index.

``drop_rate_per_position_by_binomial`` pools the batch items of each (non-batch) position, so
a layer whose rate ramps across the batch (sample 0 at 0.2, sample 63 at 0.4, mean 0.3) passes
it, and so does one that never drops the last few hundred elements of the flattened tensor
(a short tail inside one position's column). This check reads the marginals instead:

* one *cell* per index of every axis of the unit view with at least two indices (axis 0: one
  cell per sample; an axis longer than :data:`MAX_CELLS` is cut into that many contiguous
  groups of indices), and
* one cell per contiguous block of the flattened (C-order) unit array (:data:`FLAT_BLOCKS`
  blocks), so a contiguous run of never-dropped flat positions shows.

It tests *homogeneity*: every cell drops at the same rate as the whole call. Given a call's
dropped count K, the contract makes the dropped units a uniform K-subset, so a cell's count is
exactly Hypergeom(n, K, n_c); that conditioning makes the check blind to call-level rate faults
(the rate and dispersion checks' business) and names uneven rates only. Together with the rate
check (mean rate within its margin) a PASS certifies every cell's rate.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Tuple

import numpy as np
from scipy import stats as sps

from ..stats import Interval, Look, calls_to_expose, hidden_fault_fraction
from ._calls import call_plan
from ..results import CheckResult
from ._core import CheckContext, unit_view
from ._sequential import run_sequential
from ._stream import CallCounter
from .independence import OUTPUT_SHAPE

NAME = "drop_rate_marginals_by_hypergeometric"
MAX_CELLS = 256
"""Most cells per axis (longer axes: contiguous groups of indices)."""
FLAT_BLOCKS = 256
"""Contiguous blocks of the flattened unit array (fewer when a block would hold < 8 units)."""
RUN_ELEMENTS = 1 << 22
"""Per-element counts are kept (to name a never-dropped run exactly) up to this many units."""


def _q(ctx: CheckContext) -> float:
    return float(ctx.contract.drop_probability(ctx.params, ctx.shape))


def applies(ctx: CheckContext) -> bool:
    """Binary masks with one p everywhere, 0 < p < 1, no block structure, and a unit view with
    an axis of at least two indices."""
    c = ctx.contract
    if c.dropped_value is None or c.structure == "block":
        return False
    if np.ndim(c.drop_probability(ctx.params, ctx.shape)) != 0 or not 0 < _q(ctx) < 1:
        return False
    view = _view_shape(ctx)
    return any(s >= 2 for s in view) and int(np.prod(view)) >= 16


def _view_shape(ctx: CheckContext) -> Tuple[int, ...]:
    out = ctx.output_shape(ctx.seeds(OUTPUT_SHAPE).probe())
    return tuple(unit_view(ctx, np.empty(out, bool)).shape)


def _out_axes(ctx: CheckContext) -> List[int]:
    """Output axis of each unit-view axis (shared axes are dropped from the view)."""
    out = ctx.output_shape(ctx.seeds(OUTPUT_SHAPE).probe())
    shared = set(ctx.contract.shared_axes(ctx.params, ctx.shape))
    return [a for a in range(len(out)) if a not in shared]


def _bounds(size: int, cells: int) -> np.ndarray:
    """Start indices of ``min(size, cells)`` contiguous groups covering 0..size-1."""
    k = min(size, cells)
    return np.unique(np.linspace(0, size, k + 1).astype(np.int64)[:-1])


def _layout(ctx: CheckContext) -> Dict[str, Any]:
    view = _view_shape(ctx)
    n = int(np.prod(view, dtype=np.int64))
    axes = [k for k, s in enumerate(view) if s >= 2]
    starts = {k: _bounds(view[k], MAX_CELLS) for k in axes}
    flat = _bounds(n, max(1, min(FLAT_BLOCKS, n // 8)))
    ends = {k: np.append(starts[k][1:], view[k]) for k in axes}
    flat_end = np.append(flat[1:], n)
    kinds = [(k, int(a), int(b)) for k in axes for a, b in zip(starts[k], ends[k])]
    kinds += [(-1, int(a), int(b)) for a, b in zip(flat, flat_end)]
    per_index = {k: n // view[k] for k in axes}
    size = np.array([(b - a) * (per_index[k] if k >= 0 else 1) for k, a, b in kinds], np.float64)
    return {"view": view, "n": n, "axes": axes, "starts": starts, "flat": flat, "cells": kinds, "size": size}


def _cell_counts(lay: Dict[str, Any], view: np.ndarray) -> np.ndarray:
    """Dropped count of every cell in one call (vectorised: one reduction per axis)."""
    v = np.asarray(view, bool).reshape(lay["view"])
    parts = []
    for k in lay["axes"]:
        other = tuple(i for i in range(v.ndim) if i != k)
        parts.append(np.add.reduceat(np.count_nonzero(v, axis=other), lay["starts"][k]))
    parts.append(np.add.reduceat(v.reshape(-1).view(np.uint8), lay["flat"], dtype=np.int64))
    return np.concatenate(parts).astype(np.int64)


def chernoff_two_sided_log_p(count: np.ndarray, m: np.ndarray, pi: float) -> np.ndarray:
    """log of 2 x the Chernoff bound exp(-m KL(c/m || pi)) on the tail of c: valid for a sum of
    m negatively associated indicators (hypergeometric draws, independent calls) whose means
    average pi (Jensen), either side; 0 (p = 1) at the mean."""
    x = np.clip(count / np.maximum(m, 1), 0.0, 1.0)
    pi = min(max(pi, 1e-300), 1 - 1e-16)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = np.where(x > 0, x * np.log(x / pi), 0.0) + np.where(x < 1, (1 - x) * np.log((1 - x) / (1 - pi)), 0.0)
    return np.minimum(0.0, math.log(2.0) - m * np.nan_to_num(kl, nan=0.0, posinf=745.0))


def _never_run(counts: np.ndarray, hits: np.ndarray) -> Tuple[int, int]:
    """The longest run of flat units whose count is 0 (or, if ``hits`` is True, == calls):
    (start, end inclusive), or (-1, -1)."""
    z = np.concatenate([[0], hits.astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(z))
    if edges.size == 0:
        return -1, -1
    starts, stops = edges[::2], edges[1::2]
    i = int(np.argmax(stops - starts))
    return int(starts[i]), int(stops[i] - 1)


def drop_rate_marginals(ctx: CheckContext) -> List[CheckResult]:
    """Every marginal cell (each index of every axis, the batch axis included, and each block
    of the flat index) drops at the call's overall rate, within ± position_rel x min(p, 1 - p).

    FAIL (false alarm <= alpha): per cell the pooled count over calls, each call's count
    Hypergeom(n, K_t, n_c) under the contract, two-sided Chernoff bound (valid: negatively
    associated indicators), Bonferroni over cells; plus the t-test across calls of the cell's
    per-call difference k_ct / n_c - K_t / n (variance floored at its hypergeometric value),
    Bonferroni over cells; x 2 for the two components. PASS: at every cell the t interval of
    that difference lies inside ± margin (Bonferroni over cells), from at least
    ``calls_to_expose`` independent calls. Power: the details give the minimum detectable
    difference at the worst (smallest) cell."""
    lay = _layout(ctx)
    cells, size, n = lay["cells"], lay["size"], lay["n"]
    q = _q(ctx)
    margin = ctx.settings.position_rel * min(q, 1 - q)
    frac = size / n
    sd_cell = np.sqrt(q * (1 - q) * np.maximum(1 / size - 1 / n, 0.0))
    sd_null = float(sd_cell.max())
    plan = call_plan(ctx, sd_null, margin, lanes=len(cells))
    out_axes = _out_axes(ctx)
    inputs, stream = ctx.shared_stream()
    keep_elems = n <= RUN_ELEMENTS
    acc = {"counts": np.zeros(len(cells), np.int64), "K": 0, "sum": np.zeros(len(cells)),
           "sq": np.zeros(len(cells)), "calls": 0, "elem": np.zeros(n if keep_elems else 0, np.int32)}

    def sink(y: np.ndarray) -> None:
        view = unit_view(ctx, ctx.dropped(inputs, y))
        k = _cell_counts(lay, view)
        total = int(np.count_nonzero(view))
        d = k / size - total / n
        acc["counts"] += k
        acc["K"] += total
        acc["sum"] += d
        acc["sq"] += d * d
        acc["calls"] += 1
        if keep_elems:
            acc["elem"] += np.asarray(view, bool).reshape(-1)

    n_min = calls_to_expose(ctx.settings.fault_fraction, plan.alpha_per_look)
    record: Dict[str, Any] = {}

    def evaluate(alpha_look: float) -> Look:
        c = acc["calls"]
        a = alpha_look / 2 / len(cells)
        pi = acc["K"] / max(c * n, 1)
        m = size * c
        log_p = chernoff_two_sided_log_p(acc["counts"].astype(np.float64), m, pi)
        p_pool = np.exp(log_p)
        mean = acc["sum"] / max(c, 1)
        var = np.maximum(acc["sq"] / max(c, 1) - mean * mean, 0.0) * c / max(c - 1, 1)
        var_null = pi * (1 - pi) * (1 - frac) / np.maximum(size, 1) * n / max(n - 1, 1)
        se = np.sqrt(var / max(c, 1))
        se_t = np.sqrt(np.maximum(var, var_null) / max(c, 1))
        tstat = np.where(se_t > 0, mean / np.where(se_t > 0, se_t, 1.0), 0.0)
        p_t = 2 * sps.t.sf(np.abs(tstat), max(c - 1, 1))
        p_cell = np.minimum(p_pool, p_t)
        worst = int(np.argmax(-np.log(np.maximum(p_cell, 1e-300)) + 1e-9 * np.abs(mean)))
        p = float(min(1.0, 2 * len(cells) * p_cell.min()))
        tcrit = float(sps.t.isf(a / 2, max(c - 1, 1)))
        lo, hi = mean - tcrit * se, mean + tcrit * se
        within = bool(np.all((lo >= -margin) & (hi <= margin))) and c >= n_min and bool(np.all(se > 0))
        z = float(sps.norm.isf(a / 2) + sps.norm.isf(1 - ctx.settings.power))
        mdd = z * sd_null / math.sqrt(max(c, 1))
        record.clear()
        record.update({"p_pooled": float(min(1.0, len(cells) * p_pool.min())),
                       "p_call_level": float(min(1.0, 2 * len(cells) * p_t.min())),
                       "hidden_fault_fraction": hidden_fault_fraction(c, alpha_look), "calls_to_expose": n_min,
                       **_describe(lay, worst, acc, c, out_axes, q)})
        if c < n_min:
            record["not_certified_because"] = f"{c} calls, fewer than the {n_min} that expose a rare fault"
        return Look(float(mean[worst]), 0.0, p, Interval(float(lo[worst]), float(hi[worst]), 1 - a), c, mdd,
                    margin, alpha_look, equivalent=within)

    def details() -> Dict[str, Any]:
        return {"cells": len(cells), "axes": [out_axes[k] for k in lay["axes"]],
                "flat_blocks": int(len(lay["flat"])), "units_per_call": n, "calls": acc["calls"],
                "overall_rate": acc["K"] / max(acc["calls"] * n, 1),
                "statistic": "cell count given the call's count: Hypergeom(n, K_t, n_c); Chernoff bound pooled "
                             "over calls, t-test of the per-call rate difference across calls",
                "margin_rule": "position_rel x min(p, 1 - p) on every cell's rate minus the call's rate",
                **record}

    advance = CallCounter(stream, sink)
    return [run_sequential(ctx, NAME, "worst_marginal_rate_minus_overall", plan, advance, evaluate, "calls",
                           details=details)]


def _describe(lay: Dict[str, Any], worst: int, acc: Dict[str, Any], calls: int, out_axes: List[int],
              q: float) -> Dict[str, Any]:
    """The worst cell (``axis``: the output axis, -1 for the flat index), along its axis the
    highest and lowest rate, and the longest run of flat units never (always) dropped in every
    call when such a run has chance probability <= 1e-9 under the contract (for the words)."""
    cells, size = lay["cells"], lay["size"]
    rates = acc["counts"] / np.maximum(size * max(calls, 1), 1)
    k, a, b = cells[worst]
    same = [i for i, cell in enumerate(cells) if cell[0] == k]
    hi = max(same, key=lambda i: rates[i])
    lo = min(same, key=lambda i: rates[i])
    out: Dict[str, Any] = {"worst_cell": {"axis": out_axes[k] if k >= 0 else -1, "start": a, "stop": b - 1,
                                          "rate": float(rates[worst])},
                           "highest_cell": {"start": cells[hi][1], "stop": cells[hi][2] - 1,
                                            "rate": float(rates[hi])},
                           "lowest_cell": {"start": cells[lo][1], "stop": cells[lo][2] - 1,
                                           "rate": float(rates[lo])}}
    elem = acc["elem"]
    if elem.size and calls:
        for label, hits, rate in (("never_dropped", elem == 0, q), ("always_dropped", elem == calls, 1 - q)):
            s, e = _never_run(elem, hits)
            # a run of L units at any of the n starts: chance <= n (1 - rate)^(calls L)
            if s >= 0 and math.log(elem.size) + calls * (e - s + 1) * math.log1p(-rate) <= math.log(1e-9):
                out[label] = [s, e]
    return out
