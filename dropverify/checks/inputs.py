"""Input dependence: the drop rate (or the mean multiplier) must not depend on the input value.

The contract's mask is drawn independently of x. A layer whose rate depends on x (p +- 20 %
by the sign of x, a higher rate for small |x|) can keep the mean rate and the signed mean
error right, because biases of opposite sign cancel when pooled over a signed probe, and the
fixed-probe checks see it only as heterogeneous rates across positions (which then show up
as dependence across calls and seeds, blamed on the wrong cause).

``drop_rate_independent_of_input_by_stratum`` draws a FRESH probe on every call (its own
seeded generator, the contract's probe law) and classifies each mask unit by the input it
covers (the mean of x over the unit: the element itself for element-wise masks). Strata:
the sign of x (x < 0 against x > 0, where the probe has both signs) and the bins of |x| at
the probe law's deciles (each decile against the rest). Per independent call (or block of
calls, for rare events), per stratum contrast: the dropped fraction of the stratum minus
that of the rest of the call (binary masks), or the mean multiplier y / x of the stratum
minus that of the rest (continuous noise, Gaussian dropout). Under the contract every
contrast has mean exactly 0, whatever the call's own rate and however units share draws.

FAIL (a dependence is established): per contrast, Bonferroni over the Cochran-Mantel-
Haenszel test of the call-wise 2x2 tables (stratum / rest x dropped / kept; units are
independent draws under the contract, conditional on each call's margins, so a rate that
varies between calls does not count), the most extreme call (hypergeometric, Bonferroni over
calls) and the t-test across calls; contrasts combined by Bonferroni. Continuous noise: the
t-test across calls alone. False alarm <= the check's alpha.

PASS: every contrast's t interval lies within +- the ``rate`` margin (rate_rel x min(p, 1-p);
continuous noise: the ``mean`` margin on the multiplier) from at least ``calls_to_expose``
independent calls. Together with ``drop_rate_matches_by_binomial`` (the call's rate within
p +- margin) every stratum's rate is then within p +- 2 margins.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from scipy import stats as sps

from ..contracts import Inputs
from ..stats import cmh_p, per_step_hypergeom_p, z_two_sided
from ._calls import Lane, call_plan, run_call_level
from ..results import CheckResult
from ._core import CheckContext, unit_view, units_per_call
from ._sequential import NotInformative
from ._stream import CallCounter
from ._worker import guarded

NAME = "drop_rate_independent_of_input_by_stratum"
GROUPS = 10          # |x| bins: deciles of the probe law ...
UNITS_PER_BIN = 50   # ... or fewer, equal bins, so that each holds this many units per call
MIN_UNITS = 20       # fewer mask units per call: strata are too thin to form
MIN_EVENTS = 10      # expected events of the rarer outcome in the thinnest stratum of one sample
SIGN_LANE = "x < 0 vs x > 0"


def _decile_lane(k: int, groups: int) -> str:
    return f"|x| bin {k + 1} of {groups} vs the rest"


def applies(ctx: CheckContext) -> bool:
    """Variants whose mask is read back per element and whose drop probability is one number:
    inverted / alpha dropout and their shared-mask forms (spatial, feature-alpha, embedding,
    word-type, variational), attention dropout (|x| bins only: its probe is positive), and
    Gaussian dropout (continuous multiplier). Not: DropBlock (its rate varies by position),
    depth networks (a per-block schedule), DropConnect (the mask is over the weights), zoneout
    (two inputs), or configurations where the mask is not random (p = 0 or 1). DropPath and
    stochastic depth apply (a unit is a sample, classified by its mean input); with fewer than
    MIN_UNITS units per call (one draw per batch) the check is not informative."""
    c = ctx.contract
    if c.structure not in ("elementwise", "shared", "continuous") or c.decode is not None:
        return False
    if np.ndim(c.drop_probability(ctx.params, ctx.shape)) != 0:
        return False
    binary = c.dropped_value is not None
    if not binary and not (c.multiplicative and c.structure == "continuous"):
        return False
    p = float(ctx.params.get("p", 0.0))
    if not 0.0 < p < 1.0:
        return False
    inputs = ctx.seeds(NAME).probe()
    return len(inputs) == 1 and tuple(ctx.output_shape(inputs)) == tuple(np.shape(inputs[0]))


class FreshInputs:
    """Successive training calls of one target after one seed, each on a FRESH probe drawn
    from ``rng`` under the contract's probe law; :attr:`inputs` holds the last call's inputs.
    (No ``take``: one call per dispatch, so a sink always reads the inputs of its output.)"""

    def __init__(self, ctx: CheckContext, seed: int, rng: np.random.Generator) -> None:
        self.ctx, self.seed, self.rng = ctx, seed, rng
        self.inputs: Optional[Inputs] = None
        self.seeded = False
        self.shape: Optional[Tuple[int, ...]] = None

    def __iter__(self) -> "FreshInputs":
        return self

    def __next__(self) -> np.ndarray:
        ctx = self.ctx
        target = ctx.target
        if not self.seeded:
            seed = self.seed
            guarded(lambda: target.seed(seed), ctx.settings.call_timeout_s, "seed")
            self.seeded = True
        inputs = ctx.contract.probe_inputs(ctx.shape, self.rng, ctx.dtype)
        if self.shape is None:
            self.shape = tuple(ctx.output_shape(inputs))
        y = ctx.call(target, inputs, expect_shape=self.shape)
        self.inputs = inputs
        return y


def unit_inputs(ctx: CheckContext, x: np.ndarray) -> np.ndarray:
    """The input value each mask unit covers, flat, float64: the element itself for an
    element-wise mask, the mean of x over the unit's elements where units share a draw."""
    x = np.asarray(x, np.float64)
    shared = tuple(ctx.contract.shared_axes(ctx.params, tuple(x.shape)))
    return (x.mean(axis=shared) if shared else x).reshape(-1)


def bin_edges(ctx: CheckContext, groups: int) -> np.ndarray:
    """Inner edges of the |x| bins: the probe law's quantiles at k / groups (from a pilot probe
    of its own generator, so the bins are a fixed function of x); empty when |x| does not vary."""
    pilots = [unit_inputs(ctx, ctx.seeds(NAME).probe(1 + i)[0])
              for i in range(4)]
    mags = np.abs(np.concatenate(pilots))
    edges = np.unique(np.quantile(mags, np.arange(1, groups) / groups))
    return edges if edges.size == groups - 1 else np.zeros(0)


def bin_index(mag: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The |x| bin of every magnitude: the number of inner edges at or below it (one vectorised
    comparison per edge: faster than a binary search per element for a handful of edges),
    int8 (at most GROUPS - 1 = 9 edges: a narrow accumulator is the fastest)."""
    k = np.zeros(mag.shape, np.int8 if len(edges) < 60 else np.int64)
    for e in edges:
        k += mag >= e
    return k


def _fmt_edge(v: float) -> str:
    return f"{v:.2g}"


def bin_words(k: int, edges: Sequence[float]) -> str:
    """A bin of |x| in words: 'the lowest decile (|x| < 1.6e-05)', 'the highest decile (|x| >= 6.3e+04)',
    'decile 3 of 10 (0.0004 <= |x| < 0.0063)'."""
    groups = len(edges) + 1
    name = {10: "decile", 5: "quintile", 4: "quartile", 2: "half"}.get(groups, f"1/{groups} bin")
    if k == 0:
        return f"the lowest {name} (|x| < {_fmt_edge(edges[0])})"
    if k == groups - 1:
        return f"the highest {name} (|x| >= {_fmt_edge(edges[-1])})"
    return f"{name} {k + 1} of {groups} ({_fmt_edge(edges[k - 1])} <= |x| < {_fmt_edge(edges[k])})"


def drop_rate_independent_of_input_by_stratum(ctx: CheckContext) -> List[CheckResult]:
    """The drop rate (continuous noise: the mean multiplier y / x) is the same in every input
    stratum, on a fresh probe per call: the sign of x and bins of |x| at the probe law's
    deciles, and the same of each NEIGHBOUR's value (the previous / next unit along every axis
    of the unit array: signs; along the last axis also |x| bins; see :mod:`._neighbours`).

    Per call (or block of calls, for rare events), per stratum, the contrast stratum minus
    rest; FAIL from the CMH test over calls, the most extreme call and the t-test across calls
    (binary masks; continuous: the t-test), Bonferroni over components and over every contrast
    of every feature, false alarm <= alpha; PASS when every contrast's t interval lies within
    +- the margin (``rate``: rate_rel x min(p, 1 - p); continuous: ``mean``) from at least
    ``calls_to_expose`` independent calls, false pass <= alpha whenever calls are independent.
    ``mdd``: the pooled two-proportion test (binary) or the t-test (continuous), at the stated
    power. A rate set by any other function of the input (two neighbours jointly, a value far
    away) is certified only as far as these strata see it.
    """
    from ._neighbours import features, lanes_of
    c = ctx.contract
    binary = c.dropped_value is not None
    p = float(np.mean(c.drop_probability(ctx.params, ctx.shape))) if binary else float(ctx.params["p"])
    upc = units_per_call(ctx)
    if upc < MIN_UNITS:
        raise NotInformative(f"{upc} mask units per call: too few to split by the input value (at least "
                             f"{MIN_UNITS}); the rate check sees the whole call")
    probe0 = ctx.seeds(NAME).probe()[0]
    pilot = unit_inputs(ctx, probe0)
    signed = bool(np.mean(pilot < 0) >= 0.05 and np.mean(pilot > 0) >= 0.05)
    groups = min(GROUPS, upc // UNITS_PER_BIN)
    edges = bin_edges(ctx, groups) if groups >= 2 else np.zeros(0)
    groups = edges.size + 1 if edges.size else 1
    shared = tuple(c.shared_axes(ctx.params, tuple(np.shape(probe0))))
    unit_shape = tuple(s for i, s in enumerate(np.shape(probe0)) if i not in set(shared))
    feats = features(unit_shape, shared, np.ndim(probe0))
    names, keys = lanes_of(feats, signed, groups, SIGN_LANE, _decile_lane)
    if not names:
        raise NotInformative("the probe has one sign and one magnitude: no input strata to compare")
    cells = 2 * groups  # (bin, sign) cells per feature: counts per call are all a contrast needs
    F = len(feats)
    valid = min(f.valid(unit_shape) for f in feats)

    if binary:
        from .rates import rate_margin
        margin = rate_margin(ctx, p)
        qe = min(p, 1 - p)
        thinnest = valid * upc / max(groups, 2)
        needed = max(1, int(math.ceil(MIN_EVENTS / max(qe * thinnest, 1e-300))))
        # at least 40 samples must fit the budget; where they cannot, the t-test is not valid at
        # this alpha: only the exact components may FAIL, nothing is certified
        per_sample = min(needed, max(1, ctx.settings.max_calls // 40))
        t_valid = needed <= per_sample
        var_unit = p * (1 - p)
        quantity = "drop_rate_difference_between_input_strata"
        null_hw = 0.0
    else:
        from .moments import rounding_allowance
        margin = ctx.settings.mean_tol
        per_sample = 1
        t_valid = True
        var_unit = p / (1 - p)
        quantity = "mean_multiplier_difference_between_input_strata"
        null_hw = 2 * rounding_allowance(ctx.dtype)
    f = 1.0 / max(groups, 2)
    sd_null = math.sqrt(var_unit * (1 / (f * valid * upc) + 1 / ((1 - f) * valid * upc)) / per_sample)
    plan = call_plan(ctx, sd_null, margin, lanes=len(names), steps_per_sample=per_sample)
    lanes = [Lane(n, steps_per_sample=per_sample, null_halfwidth=null_hw, t_valid=t_valid) for n in names]
    # per call: sums (dropped count / multiplier sum) and sizes per (feature, bin, sign) cell
    sums: List[np.ndarray] = []
    sizes: List[np.ndarray] = []
    squares = np.zeros(cells)
    block: List[int] = [0]
    stream = FreshInputs(ctx, ctx.seeds(NAME).seed(), ctx.seeds(NAME).rng())

    def sides(s: np.ndarray, n: np.ndarray, key: Tuple[int, Optional[int]]) -> Tuple[Any, Any, Any, Any]:
        """(stratum sum, stratum size, feature sum, feature size) of one lane; leading axes kept."""
        fi, k = key
        sf, nf = s[..., fi, :, :], n[..., fi, :, :]
        if k is None:
            a, r = sf[..., :, 0].sum(-1), nf[..., :, 0].sum(-1)
        else:
            a, r = sf[..., k, :].sum(-1), nf[..., k, :].sum(-1)
        return a, r, sf.sum((-1, -2)), nf.sum((-1, -2))

    def contrasts(s: np.ndarray, n: np.ndarray) -> List[float]:
        """Per lane: stratum minus rest (nan where either side is empty) from one sample's cells."""
        out: List[float] = []
        with np.errstate(divide="ignore", invalid="ignore"):
            for key in keys:
                a, r, k, m = sides(s, n, key)
                out.append(float(a / r - (k - a) / (m - r)))
        return out

    def sink(y: np.ndarray) -> None:
        inputs = stream.inputs
        x = np.asarray(inputs[0], np.float64)
        u = x.mean(axis=shared) if shared else x
        cell = bin_index(np.abs(u), edges) * 2 + (u > 0)
        s_call = np.zeros((F, cells))
        n_call = np.zeros((F, cells))
        if binary:
            # dropped counts and sizes from ONE integer bincount of (cell, dropped) per feature:
            # the same integers as the float-weighted bincount (exact below 2^53)
            d = np.asarray(unit_view(ctx, np.asarray(ctx.dropped(inputs, y))))
            d = d.view(np.int8) if d.dtype == np.bool_ else (d != 0).view(np.int8)
            cell2 = cell.astype(np.int16) * 2
            for fi, feat in enumerate(feats):
                cf, df = feat.pair(cell2, d)
                both = np.bincount(cf + df, minlength=2 * cells).reshape(cells, 2)
                s_call[fi] = both[:, 1]
                n_call[fi] = both[:, 0] + both[:, 1]
        else:
            v = np.asarray(ctx.decode(inputs, y).multiplier, np.float64).reshape(u.shape)
            # a NaN / inf multiplier (x = 0, or a broken layer) joins no stratum
            ok = np.isfinite(v)
            v = np.where(ok, v, 0.0)
            squares[:] += np.bincount(cell[ok], weights=(v * v)[ok], minlength=cells)
            for fi, feat in enumerate(feats):
                cf, vf = feat.pair(cell, v)
                okf = feat.pair(cell, ok)[1]
                cf, vf = cf[okf], vf[okf]
                s_call[fi] = np.bincount(cf, weights=vf, minlength=cells)
                n_call[fi] = np.bincount(cf, minlength=cells)
        sums.append(s_call.reshape(-1))
        sizes.append(n_call.reshape(-1))
        block[0] += 1
        if block[0] == per_sample:
            block[0] = 0
            s = np.sum(sums[-per_sample:], axis=0).reshape(F, groups, 2)
            n = np.sum(sizes[-per_sample:], axis=0).reshape(F, groups, 2)
            for lane, d in zip(lanes, contrasts(s, n)):
                if math.isfinite(d):
                    lane.samples.append(d)

    stacked: Dict[str, Any] = {"calls": -1}

    def tables(i: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Lane i's call-wise 2x2 tables: (in-stratum events, stratum size, events, units of the
        lane's feature) (the calls so far stacked once per look, shared by every lane)."""
        if stacked["calls"] != len(sums):
            stacked.update(calls=len(sums), s=np.asarray(sums).reshape(len(sums), F, groups, 2),
                           n=np.asarray(sizes).reshape(len(sizes), F, groups, 2))
        return sides(stacked["s"], stacked["n"], keys[i])

    if binary:
        from ._coherent import most_extreme, pooled_excess
        for i, lane in enumerate(lanes):
            def pooled(alpha: float, i: int = i) -> Tuple[float, ...]:
                a, r, k, n = tables(i)
                if not len(a):
                    return 1.0, math.nan
                pv = _cmh(np.rint(a), r, np.rint(k), n)
                ns, nr = float(r.sum()), float((n - r).sum())
                q = float(k.sum() / max(n.sum(), 1))
                mdd = (z_two_sided(alpha) + float(sps.norm.isf(1 - ctx.settings.power))) * \
                    math.sqrt(max(q * (1 - q), 1e-300) * (1 / max(ns, 1) + 1 / max(nr, 1)))
                return (pv, mdd) + pooled_excess(a, r, k, n, r * (n - r) / np.maximum(n, 1))

            def outlier(alpha: float, i: int = i) -> Tuple[float, ...]:
                a, r, k, n = tables(i)
                if not len(a) or np.any(n != n[0]):
                    return 1.0, math.nan
                j = most_extreme(a, r, k, n)
                pv = per_step_hypergeom_p(np.rint(a).astype(np.int64), r.astype(np.int64),
                                          np.rint(k).astype(np.int64), int(n[0]))
                return (pv, math.nan) + pooled_excess(a[j:j + 1], r[j:j + 1], k[j:j + 1], n[j:j + 1],
                                                      r[j:j + 1] * (n[j:j + 1] - r[j:j + 1]) / max(n[j], 1))

            lane.components["pooled"] = pooled
            lane.components["outlier_call"] = outlier

    def details() -> Mapping[str, Any]:
        s = (np.sum(sums, axis=0) if sums else np.zeros(F * cells)).reshape(F, groups, 2)
        n = (np.sum(sizes, axis=0) if sizes else np.zeros(F * cells)).reshape(F, groups, 2)
        out: Dict[str, Any] = stratum_summary(s[0], n[0], signed, groups)
        strata: Dict[str, List[float]] = {}
        with np.errstate(divide="ignore", invalid="ignore"):
            for name, key in zip(names, keys):
                a, r, k, m = sides(s, n, key)
                strata[name] = [float(a / r), float((k - a) / (m - r))]
            rates = np.where(n > 0, s / np.where(n > 0, n, 1), np.nan)
        out.update({"statistic": "dropped fraction" if binary else "mean multiplier y / x",
                    "nominal_p": p, "units_per_call": upc, "calls_per_sample": per_sample,
                    "abs_x_bin_edges": [float(e) for e in edges], "signed_probe": signed,
                    "fresh_probe_per_call": True, "calls": len(sums), "multiplicative": bool(c.multiplicative),
                    "strata": strata, "features": [ft.symbol for ft in feats],
                    "feature_axes": [[ft.orig, ft.step, ft.last] for ft in feats],
                    "unit": "element" if not shared else "unit",
                    "feature_cell_rates": rates.reshape(F, -1).tolist(),
                    "feature_cell_units": n.reshape(F, -1).tolist()})
        if not binary and float(n[0].sum()) > 0:
            out["pooled_multiplier_variance"] = float(squares.sum() / n[0].sum() - (s[0].sum() / n[0].sum()) ** 2)
        return out

    advance = CallCounter(stream, sink)
    return [run_call_level(ctx, NAME, quantity, plan, advance, lanes, 0.0, margin,
                           "calls" if per_sample == 1 else f"calls (blocks of {per_sample})",
                           details=details)]


def _cmh(a: np.ndarray, r: np.ndarray, k: np.ndarray, n: np.ndarray) -> float:
    """The CMH p-value of :func:`dropverify.stats.cmh_p`, by its normal approximation wherever
    the Mantel-Fleiss criterion holds (the pooled expected count lies at least 5 from both of
    its bounds: the usual condition for the chi-square approximation), which spares the exact
    convolution on dense tables (tens of lanes x looks); the exact law otherwise."""
    e = r * k / np.maximum(n, 1)
    lo, hi = np.maximum(0.0, r + k - n), np.minimum(r, k)
    if min(float((e - lo).sum()), float((hi - e).sum())) >= 5:
        var = r * k * (n - r) * (n - k) / np.maximum(n * n * (n - 1), 1.0)
        if float(var.sum()) > 0:
            return float(2 * sps.norm.sf(abs(float((a - e).sum())) / math.sqrt(float(var.sum()))))
    return cmh_p(a, r, k, n)


def stratum_summary(s: np.ndarray, n: np.ndarray, signed: bool, groups: int) -> Dict[str, Any]:
    """Pooled rates (means) per stratum from (bin, sign) cell sums ``s`` and sizes ``n``."""
    s2, n2 = np.asarray(s, np.float64).reshape(groups, 2), np.asarray(n, np.float64).reshape(groups, 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        cell = np.where(n2 > 0, s2 / np.where(n2 > 0, n2, 1), np.nan)
        sb, nb = s2.sum(1), n2.sum(1)
        out: Dict[str, Any] = {
            "cell_rates": cell.tolist(), "cell_units": n2.tolist(),
            "rate_by_abs_x_bin": (sb / nb).tolist(),
            "rate_outside_abs_x_bin": ((sb.sum() - sb) / (nb.sum() - nb)).tolist(),
            "overall_rate": float(sb.sum() / nb.sum()) if nb.sum() else math.nan,
        }
        if signed:
            out["rate_x_negative"] = float(s2[:, 0].sum() / n2[:, 0].sum())
            out["rate_x_positive"] = float(s2[:, 1].sum() / n2[:, 1].sum())
    return out


# --------------------------------------------------------------------------- diagnosis

def _is_input_fail(r: CheckResult) -> bool:
    return r.check == NAME and r.verdict == "FAIL" and bool(r.details)


def _pair(a: float, b: float) -> Tuple[str, str]:
    """Two rates with the fewest decimals (at least 2, at most 4) that tell them apart."""
    for digits in (2, 3, 4):
        sa, sb = f"{a:.{digits}f}", f"{b:.{digits}f}"
        if sa != sb:
            break
    return sa, sb


def cause_words(r: CheckResult) -> Optional[str]:
    """'drop rate depends on the input value (0.36 for x < 0, 0.24 for x > 0)' from a FAIL of
    this check: the worst contrast, with its pooled rates (continuous noise: the mean
    multiplier), and a note where the established difference lies inside the margin. None for
    anything else."""
    if not _is_input_fail(r):
        return None
    d = r.details
    what = "drop rate" if d.get("statistic", "").startswith("dropped") else "mean multiplier y / x"
    lane = str(d.get("worst_lane", ""))
    small = (f"; the difference {abs(r.estimate):.2g} is established but inside the margin ± {r.margin:.2g}"
             if d.get("estimate_inside_margin") and r.estimate is not None and r.margin is not None else "")
    if lane == SIGN_LANE and "rate_x_negative" in d:
        neg, pos = _pair(d["rate_x_negative"], d["rate_x_positive"])
        return f"{what} depends on the input value ({neg} for x < 0, {pos} for x > 0{small})"
    edges = d.get("abs_x_bin_edges") or []
    neighbour = _neighbour_words(d, lane, what, small)
    if neighbour:
        return neighbour
    for k in range(len(edges) + 1):
        if lane == _decile_lane(k, len(edges) + 1):
            inside, rest = _pair(d["rate_by_abs_x_bin"][k], d["rate_outside_abs_x_bin"][k])
            return f"{what} depends on the input value ({inside} for |x| in {bin_words(k, edges)}, " \
                   f"{rest} elsewhere{small})"
    return f"{what} depends on the input value ({lane}{small})"


def _neighbour_words(d: Mapping[str, Any], lane: str, what: str, small: str) -> Optional[str]:
    """'drop rate depends on the sign of the next element x[i+1]: 0.36 for x[i+1] < 0, 0.24 for
    x[i+1] > 0' where the worst lane is a neighbour's stratum; None otherwise."""
    from ._neighbours import Feature
    strata = d.get("strata") or {}
    edges = d.get("abs_x_bin_edges") or []
    for orig, step, last in d.get("feature_axes") or []:
        if not step:
            continue
        ft = Feature(0, int(step), int(orig), bool(last))
        noun = ft.noun(str(d.get("unit", "element")))
        if lane == ft.sign_lane() and lane in strata:
            neg, pos = _pair(*strata[lane])
            return f"{what} depends on the sign of {noun}: {neg} for {ft.symbol} < 0, {pos} for {ft.symbol} > 0{small}"
        for k in range(len(edges) + 1):
            if lane == ft.bin_lane(k, len(edges) + 1) and lane in strata:
                inside, rest = _pair(*strata[lane])
                where = bin_words(k, edges).replace("|x|", f"|{ft.symbol}|")
                return f"{what} depends on the magnitude of {noun}: {inside} for |{ft.symbol}| in {where}, " \
                       f"{rest} elsewhere{small}"
    return None


def _implied(d: Mapping[str, Any]) -> Tuple[float, float, float]:
    """(lowest, highest stratum rate, excess relative risk or correlation that rates varying
    like the cells imply between two draws on one FIXED input) from a FAIL's details: over
    every feature (the unit's own value, each neighbour's), the widest range of rates and the
    largest implied dependence (each a lower bound on what the rate's variation by position
    implies)."""
    rates = d.get("feature_cell_rates")
    if rates:
        per = [_implied({**d, "cell_rates": r, "cell_units": u, "feature_cell_rates": None})
               for r, u in zip(rates, d.get("feature_cell_units", []))]
        per = [x for x in per if math.isfinite(x[0])]
        if per:
            return min(x[0] for x in per), max(x[1] for x in per), max(x[2] for x in per)
    cell = np.asarray(d.get("cell_rates", []), np.float64).reshape(-1)
    units = np.asarray(d.get("cell_units", []), np.float64).reshape(-1)
    ok = np.isfinite(cell) & (units > 0)
    if not ok.any():
        return math.nan, math.nan, 0.0
    w = units[ok] / units[ok].sum()
    r = cell[ok]
    if str(d.get("statistic", "")).startswith("dropped"):
        q = float(d.get("nominal_p", 0.5))
        e = r if q <= 0.5 else 1 - r  # the rarer event, as the dependence checks report it
        mean = float(np.sum(w * e))
        extra = float(np.sum(w * e * e)) / (mean * mean) - 1 if mean > 0 else 0.0
    else:
        between = float(np.sum(w * (r - np.sum(w * r)) ** 2))
        total = float(d.get("pooled_multiplier_variance", between) or between)
        extra = between / total if total > 0 else 0.0
    return float(r.min()), float(r.max()), max(extra, 0.0)


_CROSS_CALL = ("masks_fresh_across_calls_by_", "masks_independent_across_seeds_by_",
               "seed_streams_do_not_overlap_by_")


def explained_by_input(cause: CheckResult, r: CheckResult) -> bool:
    """Is the FAIL ``r`` of another check what an input-dependent rate (established by
    ``cause``) produces on the fixed probes the other checks use? There the rate varies by
    position, so: the call's rate, any position's rate and the mean error lie between the
    lowest and the highest stratum rate (interval overlap); masks of different calls and seeds
    on the same input are positively dependent, by at most the relative risk (correlation)
    those rates imply (the dependence check's lower bound does not exceed it). Identical
    masks are never explained."""
    if r.verdict != "FAIL" or r.check == NAME or not _is_input_fail(cause):
        return False
    d = r.details or {}
    lo, hi, extra = _implied(cause.details)
    if not math.isfinite(lo) or r.ci is None:
        return False
    ci_lo, ci_hi = r.ci
    binary = str(cause.details.get("statistic", "")).startswith("dropped")
    if r.check.startswith(_CROSS_CALL):
        return not d.get("identical") and ci_lo <= extra
    if binary and r.check in ("drop_rate_matches_by_binomial", "drop_rate_per_position_by_binomial"):
        return ci_lo <= hi and ci_hi >= lo
    if r.check == "expectation_matches_by_t_test" and cause.details.get("multiplicative"):
        q = float(cause.details.get("nominal_p", 0.5))
        if binary:  # relative error of an inverted mask at rate r: (1 - r) / (1 - p) - 1
            lo, hi = (1 - hi) / (1 - q) - 1, (1 - lo) / (1 - q) - 1
        else:
            lo, hi = lo - 1, hi - 1
        return ci_lo <= hi and ci_hi >= lo
    return False


def input_cause(results: Sequence[CheckResult]) -> Optional[Tuple[str, Tuple[str, ...]]]:
    """(cause in words, evidence: this check and the FAILs it explains) or None when this
    check did not FAIL."""
    cause = next((r for r in results if _is_input_fail(r)), None)
    if cause is None:
        return None
    words = cause_words(cause)
    follow = tuple(r.check for r in results if explained_by_input(cause, r))
    return words or NAME, (cause.check,) + follow
