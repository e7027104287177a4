"""Drift of the drop rate over the whole stream: does call 3000 drop at the rate call 30 does?

Under the contract every call draws afresh from the same law, so the per-call drop rates
x_t (dropped units / units, one number per call) are independent and identically
distributed. A rate that warms up over the first calls, or creeps up over thousands, keeps
every call looking like dropout and every pair of neighbouring calls alike; pooled over the
stream it shows only as over-dispersed counts or as pairs "dependent along the batch axis".

Statistic, on the first ``min(HORIZON, max_calls)`` calls of the shared stream (sequential
looks at a quarter, half, ... of them; FAIL at any look, PASS only once every call is read):

* the calls read are cut into :data:`WINDOWS` consecutive windows; d_w = (mean rate of
  window w) - (mean rate of all calls). With s^2 the pooled within-window variance of x_t
  (df = T - WINDOWS; it absorbs any per-call dispersion, so an over-dispersed but steady
  rate is no drift), d_w / (s sqrt(1/m_w - 1/T)) is Student t under the contract; the window
  test is the largest |t| with a Bonferroni factor WINDOWS;
* the trend test: the least-squares slope of x_t on the call index, its t-test;
* p = 2 min(p_window, p_trend) (Bonferroni over the two).

The estimate is D = max_w |d_w| (the largest deviation of a window's rate from the stream's),
with a simultaneous interval; PASS when that interval lies within :data:`MARGIN_FACTOR` x
``rate_rel`` x min(q, 1-q) (twice the rate check's margin, for every window) after all calls are read, and
enough calls were read to expose a fault in ``fault_fraction`` of them. Calls independent
and x_t with finite variance are all it assumes (window means of >= 16 calls: near normal).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import stats as sps

from ..stats import Interval, Look, SequentialPlan, hidden_fault_fraction
from ._calls import N_LOOKS, steps_to_expose
from ..results import FAIL, CheckResult
from ._core import CheckContext, unit_view
from ._sequential import run_sequential
from ._stream import BudgetExhausted, CallCounter
from ._worker import TargetError

NAME = "drop_rate_steady_over_stream_by_windows"
WINDOWS = 8
"""Consecutive windows of calls whose mean rates are compared (and named in the cause)."""
FINE = 64
"""Finer windows used only to say where a warm-up ends (words, not the test)."""
MARGIN_FACTOR = 2.0
"""A PASS certifies every window's rate within MARGIN_FACTOR x the rate margin of the stream's
(0.1 min(q, 1 - q) by default): a window holds 1/8 of the calls, so certifying the pooled rate's
own margin per window would need about 8x the calls (``--margin rate=...`` scales both)."""
MIN_WINDOW = 16
"""Calls per window at the first look at least (window means near normal)."""
MARGINAL_AXIS = "time"
"""What this check's FAIL is a marginal rate cause of: the drop rate as a function of the call
index (beside position, sample and input). A diagnosis that puts marginal rate causes first
reads it here."""
CONSEQUENCES = ("drop_rate_matches_by_binomial", "drop_rate_per_position_by_binomial",
                "expectation_matches_by_t_test", "variance_matches_by_t_test",
                "per_call_rate_dispersion_by_chi_square", "masks_independent_along_axes_by_fisher",
                "masks_independent_at_flat_offsets_by_fisher", "masks_fresh_across_calls_by_fisher")
"""Checks whose FAILs a drifting rate explains (any of their results): a rate that differs
between calls shifts the pooled rate and mean, inflates the count variance, and makes units of
one call (and of neighbouring calls) co-vary through their shared rate. Exact-identity FAILs
(``identical`` masks) are never explained by drift."""
WARM_UP_CONSEQUENCES = ("masks_independent_across_seeds_by_fisher", "seed_streams_do_not_overlap_by_fisher",
                        "masks_never_repeat_by_hash")
"""Checks that read only the first calls after seeding (or compare them across seeds): inside a
warm-up whose rate starts near 0 (or 1) those masks are nearly constant, so they agree across
seeds and batch items. A warm-up explains their FAILs too; a drift later in the stream does not."""


def applies(ctx: CheckContext) -> bool:
    from . import rates
    from .independence import randomness_is_observable
    if not rates.applies(ctx):
        return False
    q = float(ctx.contract.drop_probability(ctx.params, ctx.shape))
    return 0.0 < q < 1.0 and randomness_is_observable(ctx)


def horizon(ctx: CheckContext) -> int:
    """Calls the check reads for a PASS: the long-horizon checks' horizon, bounded by max_calls."""
    from .longhorizon import HORIZON
    return min(HORIZON, ctx.settings.max_calls)


def _windows(t: int, k: int) -> np.ndarray:
    """Start index of each of k near-equal consecutive windows of t calls (as np.array_split)."""
    sizes = np.full(k, t // k)
    sizes[: t % k] += 1
    return np.concatenate([[0], np.cumsum(sizes)[:-1]])


def window_stats(x: np.ndarray, k: int = WINDOWS) -> Dict[str, Any]:
    """Window means, deviations d_w from the overall mean, their standard errors (pooled
    within-window variance) and the within df, for per-call rates ``x`` in call order."""
    t = x.size
    starts = _windows(t, k)
    sizes = np.diff(np.append(starts, t))
    means = np.add.reduceat(x, starts) / sizes
    resid = x - np.repeat(means, sizes)
    df = max(t - k, 1)
    s2 = float(resid @ resid) / df
    dev = means - x.mean()
    se = np.sqrt(s2 * np.maximum(1.0 / sizes - 1.0 / t, 0.0))
    return {"starts": starts, "sizes": sizes, "means": means, "dev": dev, "se": se, "df": df, "s2": s2}


def drift_look(x: np.ndarray, alpha: float, margin: float, power: float, final: bool) -> Look:
    """One look at per-call rates ``x``: window and trend tests (p, Bonferroni over both), the
    largest window deviation D with its simultaneous (1 - alpha) interval; ``final``: every
    call the check may read has been read (only then can it certify)."""
    t = x.size
    if t < 2 * WINDOWS:  # too few calls for a window statistic (a budget that ended early): nothing certified
        return Look(float("nan"), 0.0, 1.0, Interval(0.0, math.inf, 1 - alpha), t, math.inf, margin, alpha,
                    equivalent=False, constant=False)
    w = window_stats(x)
    df, se, dev = w["df"], w["se"], w["dev"]
    constant = bool(np.all(x == x[0]))
    if w["s2"] <= 0:  # every window constant: any difference between windows is drift
        p_win = 0.0 if np.any(dev != 0) else 1.0
    else:
        p_win = float(min(1.0, WINDOWS * 2 * sps.t.sf(float(np.max(np.abs(dev) / se)), df)))
    p_trend = 1.0
    if not constant:
        fit = sps.linregress(np.arange(t, dtype=np.float64), x)
        p_trend = float(fit.pvalue) if math.isfinite(fit.pvalue) else (0.0 if fit.slope != 0 else 1.0)
    p = float(min(1.0, 2 * min(p_win, p_trend)))
    crit = float(sps.t.isf(alpha / (2 * WINDOWS), df))
    lo = float(max(0.0, np.max(np.abs(dev) - crit * se)))
    hi = float(np.max(np.abs(dev) + crit * se))
    z_power = float(sps.norm.isf(1 - power))
    mdd = float((float(sps.t.isf(alpha / (4 * WINDOWS), df)) + z_power) * np.max(se))
    est = float(np.max(np.abs(dev)))
    ci = Interval(lo, hi, 1 - alpha)
    return Look(est, 0.0, p, ci, t, mdd, margin, alpha, equivalent=final and hi <= margin, constant=constant)


def _span(starts: np.ndarray, sizes: np.ndarray, w: int) -> str:
    return f"calls {int(starts[w])}-{int(starts[w] + sizes[w] - 1)}"


def describe(x: np.ndarray, alpha: float) -> str:
    """The drift in words: a warm-up (the first calls differ, the rest are steady) or the two
    windows furthest apart, in call order ("drop rate drifts from 0.307 (calls 0-511) to 0.414
    (calls 3584-4095)")."""
    w = window_stats(x)
    means, starts, sizes = w["means"], w["starts"], w["sizes"]
    if x.size >= 2 * WINDOWS and int(np.argmax(np.abs(w["dev"]))) == 0:
        later = x[int(sizes[0]):]
        rest = window_stats(later, WINDOWS - 1)
        steady = rest["s2"] > 0 and float(np.max(np.abs(rest["dev"]) / rest["se"])) < \
            float(sps.t.isf(alpha / (2 * WINDOWS), rest["df"]))
        if steady:
            return _warm_up(x, alpha)
    a, b = int(np.argmin(means)), int(np.argmax(means))
    first, last = min(a, b), max(a, b)
    return (f"drop rate drifts from {means[first]:.3g} ({_span(starts, sizes, first)}) to {means[last]:.3g} "
            f"({_span(starts, sizes, last)})")


def _warm_up(x: np.ndarray, alpha: float) -> str:
    """Where the first calls' rate stops differing from the steady rate, on FINE windows."""
    k = int(min(FINE, max(WINDOWS, x.size // MIN_WINDOW)))
    starts = _windows(x.size, k)
    sizes = np.diff(np.append(starts, x.size))
    means = np.add.reduceat(x, starts) / sizes
    steady_from = int(starts[k // 2])
    steady = float(x[steady_from:].mean())
    sd = float(np.std(x[steady_from:], ddof=1)) if x.size - steady_from > 1 else 0.0
    crit = float(sps.norm.isf(alpha / (2 * k)))
    off = np.abs(means - steady) > crit * sd * np.sqrt(1.0 / sizes) + 1e-12
    end = int(np.argmin(off)) if not off.all() else k  # first fine window back at the steady rate
    calls = int(starts[end]) if end < k else x.size
    calls = max(calls, int(sizes[0]))
    early = float(x[:calls].mean())
    return f"warm-up: rate {early:.3g} over the first {calls} calls, then {steady:.3g}"


def drop_rate_steady_over_stream_by_windows(ctx: CheckContext) -> List[CheckResult]:
    """The per-call drop rate does not drift over the stream: see the module docstring for the
    statistic and its error rates (false alarm <= alpha; false pass <= alpha for a window of
    calls whose rate differs from the stream's by more than the margin)."""
    from .rates import rate_margin
    q = float(ctx.contract.drop_probability(ctx.params, ctx.shape))
    margin = MARGIN_FACTOR * rate_margin(ctx, q)
    total = horizon(ctx)
    alpha_look = ctx.alpha_each / N_LOOKS
    n_min = steps_to_expose(ctx, alpha_look)
    plan = SequentialPlan.geometric(ctx.alpha_each, ctx.settings.power, total, n_looks=N_LOOKS,
                                    min_calls=min(total, WINDOWS * MIN_WINDOW))
    inputs, stream = ctx.shared_stream()
    stream.prefetch(total)
    rates_: List[float] = []
    state: Dict[str, Any] = {"n": 0, "look": None}

    def sink(y: np.ndarray) -> None:
        units = unit_view(ctx, ctx.dropped(inputs, y))
        state["n"] = int(units.size)
        rates_.append(np.count_nonzero(units) / max(units.size, 1))

    advance = CallCounter(stream, sink)

    def evaluate(alpha: float) -> Look:
        x = np.asarray(rates_, np.float64)
        look = drift_look(x, alpha, margin, ctx.settings.power, final=x.size >= max(total, n_min))
        state["look"], state["alpha"] = look, alpha
        return look

    def details() -> Dict[str, Any]:
        x = np.asarray(rates_, np.float64)
        out: Dict[str, Any] = {"calls": int(x.size), "horizon": total, "units_per_call": state["n"],
                               "windows": WINDOWS, "calls_to_expose": n_min,
                               "statistic": ("largest |t| of window-mean rate - stream rate (pooled within-window "
                                             "variance), Bonferroni over windows; and the t-test of the slope "
                                             "of the per-call rate on the call index"),
                               "rate_margin": margin, "fault_fraction": ctx.settings.fault_fraction,
                               "hidden_fault_fraction": hidden_fault_fraction(int(x.size),
                                                                              state.get("alpha", alpha_look))}
        if x.size >= 2 * WINDOWS:
            w = window_stats(x)
            out["window_rates"] = [round(float(v), 6) for v in w["means"]]
            out["window_calls"] = [_span(w["starts"], w["sizes"], i) for i in range(WINDOWS)]
            fit = sps.linregress(np.arange(x.size, dtype=np.float64), x) if np.ptp(x) > 0 else None
            out["slope_per_1000_calls"] = float(fit.slope * 1000) if fit is not None else 0.0
        if x.size < total:
            out["not_certified_because"] = f"{x.size} of the {total} calls of the stream read"
        return out

    result = run_sequential(ctx, NAME, "window_rate_deviation", plan, advance, evaluate, "calls", details=details)
    if result.verdict == FAIL and state["look"] is not None:
        # the verdict is settled; read the rest of the stream (drawn for the long-horizon checks
        # anyway) only to say where and how the rate drifts over the whole of it
        try:
            advance(total)
        except (BudgetExhausted, TargetError):
            pass
        x = np.asarray(rates_, np.float64)
        if x.size < 2 * WINDOWS:
            return [result]
        w = window_stats(x)
        result = result.with_(details={**result.details, "pattern": describe(x, state["alpha"]),
                                       "calls_described": int(x.size),
                                       "window_rates": [round(float(v), 6) for v in w["means"]],
                                       "window_calls": [_span(w["starts"], w["sizes"], i) for i in range(WINDOWS)]})
    return [result]


def drift_cause(results: Sequence[CheckResult],
                consequences: Callable[[str], Tuple[str, ...]]) -> Optional[Tuple[str, Tuple[str, ...]]]:
    """The root cause a drift FAIL establishes, in words, and the FAILs it explains (its own
    result first), or None: no drift FAIL, or another FAIL lists the drift among its own
    consequences (a frozen mask, a shifted counter: then that cause comes first)."""
    from . import spec_for_result
    drift = next((r for r in results if r.check == NAME and r.verdict == "FAIL"), None)
    if drift is None:
        return None
    if any(r.verdict == "FAIL" and r.check != NAME and NAME in consequences(r.check) for r in results):
        return None
    text = (drift.details or {}).get("pattern") or drift.summary
    explained = CONSEQUENCES + (WARM_UP_CONSEQUENCES if str(text).startswith("warm-up") else ())
    follow = []
    for r in results:
        spec = spec_for_result(r.check)
        if r.verdict == "FAIL" and spec is not None and spec.name in explained \
                and not (r.details or {}).get("identical"):
            follow.append(r.check)
    return str(text), (NAME,) + tuple(follow)
