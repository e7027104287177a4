"""Long-horizon structure of the random stream: faults that short-range statistics miss.

Three exact-style checks on the configuration's shared stream (:mod:`._shared`), each FAILing
only on evidence whose chance probability under the contract is at most
:data:`FALSE_ALARM` (a bound stated in the details, the same rule as the hash check of
:mod:`.repeats`):

* ``masks_never_repeat_over_stream_by_hash`` hashes every call's mask over :data:`HORIZON`
  calls (the run's ``max_calls`` if smaller): an exact repeat at ANY lag, a bank of cached
  masks replayed with a period (``masks repeat with period 256 calls``), a mask frozen after a
  warm-up (``mask frozen from call 1000 on``).
* ``draws_not_reused_shifted_across_calls`` compares call t + k with call t, for every lag
  1 <= k <= :data:`SHIFT_LAGS`, at EVERY flat shift (FFT cross-correlation of the events): a
  counter advanced by less than the numel between calls makes call t + 1 a shifted copy of
  call t; two generators interleaved make call t + 2 one of call t.
* ``draws_not_shared_at_any_flat_lag`` compares every unit with the unit L places later in
  the same call, for EVERY lag 1 <= L <= n / 2 (FFT autocorrelation): a kernel that reuses one
  draw for elements 96 apart.

The shift and lag statistics need exchangeable units (one scalar drop probability, no block
structure) and a binary mask; they test the rarer outcome (dropped when p <= 1/2), so they
keep their power near p = 0 and p = 1.
"""
from __future__ import annotations

import math
import time
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
from scipy import fft as spfft
from scipy import stats as sps

from ..results import CheckResult, fmt
from ._core import CheckContext, mask_values, unit_view
from ._sequential import NotInformative, error_result, exact_result
from ._stream import BudgetExhausted
from ._worker import TargetError

REPEAT = "masks_never_repeat_over_stream_by_hash"
SHIFT = "draws_not_reused_shifted_across_calls"
LAG = "draws_not_shared_at_any_flat_lag"

HORIZON = 4096
"""Calls hashed by the long-horizon repeat check (bounded by ``Settings.max_calls``)."""
SHIFT_PAIRS = 16
"""Call pairs (t, t + k) compared at every shift, at least, for each lag k (a fault in a quarter
of the calls shows in one of them with probability 0.99)."""
SHIFT_LAGS = 8
"""Lags k = 1 .. SHIFT_LAGS at which call t + k is compared with call t at every flat shift (two
generators interleaved make call t + 2 a shifted copy of call t)."""
LAG_CALLS = 8
"""Calls whose units are compared at every flat lag."""
FALSE_ALARM = 1e-9
"""Largest chance probability (under the contract, a bound) of the evidence that FAILs a check."""
SCREEN = 16
"""Shifts / lags per call with the largest z-scores whose exact tail is computed (the rest
can only have larger p-values under the bound used, which keeps the p-value conservative)."""


def _uniform_binary(ctx: CheckContext) -> bool:
    c = ctx.contract
    if c.dropped_value is None or c.structure == "block":
        return False
    q = c.drop_probability(ctx.params, ctx.shape)
    return np.ndim(q) == 0 and 0.0 < float(q) < 1.0


def applies_repeat(ctx: CheckContext) -> bool:
    from .independence import randomness_is_observable
    return randomness_is_observable(ctx)


def applies_exchangeable(ctx: CheckContext) -> bool:
    from .independence import randomness_is_observable
    return _uniform_binary(ctx) and randomness_is_observable(ctx)


def _events(ctx: CheckContext, inputs, y: np.ndarray) -> np.ndarray:
    """The rarer outcome (dropped if q <= 1/2, else kept) of every mask unit, flattened, as float64."""
    dropped = np.asarray(unit_view(ctx, ctx.dropped(inputs, y))).reshape(-1)
    q = float(ctx.contract.drop_probability(ctx.params, ctx.shape))
    return (dropped if q <= 0.5 else ~dropped).astype(np.float64)


# ------------------------------------------------------------------------------ repeats

def _repeat_pattern(hashes: List[bytes]) -> Tuple[List[Tuple[int, int]], str]:
    """(later, earliest equal) pairs, and the pattern in words: frozen from a call on, a
    period, or scattered repeats."""
    first: Dict[bytes, int] = {}
    last: Dict[bytes, int] = {}
    found: List[Tuple[int, int]] = []
    lags = set()
    for i, h in enumerate(hashes):
        if h in first:
            found.append((i, first[h]))
            lags.add(i - last[h])  # distance to the most recent equal mask
        else:
            first[h] = i
        last[h] = i
    if not found:
        return found, ""
    n = len(hashes)
    # frozen: every call from some k on equals call k (a run of identical hashes to the end)
    k = n - 1
    while k > 0 and hashes[k - 1] == hashes[-1]:
        k -= 1
    if n - k >= 3 and all(j == k for i, j in found if i > k) and len([1 for i, _ in found if i > k]) == n - 1 - k:
        if len(found) == n - 1 - k:
            return found, f"mask frozen from call {k} on (calls {k}..{n - 1} of the stream identical)"
    if len(lags) == 1:
        period = lags.pop()
        start = found[0][0]
        # a period is named only once the repetition spans a whole period
        periodic = n - start >= period and all(hashes[i] == hashes[i - period] for i in range(max(start, period), n))
        if periodic:
            where = "" if start == period else f" from call {start - period} on"
            return found, f"masks repeat with period {period} calls{where} (call t equals call t - {period})"
    shown = ", ".join(f"call {i} = call {j}" for i, j in found[:4])
    return found, f"{len(found)} of {n} calls repeat an earlier call's mask ({shown}{', ...' if len(found) > 4 else ''})"


def masks_never_repeat_over_stream_by_hash(ctx: CheckContext) -> List[CheckResult]:
    """Exact: no two of the first :data:`HORIZON` calls of the shared stream (fewer when the
    run's budget is smaller: the details say how many) have the same mask. A chance repeat
    among M masks has probability at most M (M - 1) / 2 x P(two masks agree), the bound
    stated in the details; the check runs only where that is <= :data:`FALSE_ALARM`."""
    from .repeats import _independent_units, format_probability, log_union_bound, mask_hash, match_log_probability
    start = time.perf_counter()
    inputs, stream = ctx.shared_stream()
    horizon = min(HORIZON, ctx.settings.max_calls)
    q = np.broadcast_to(np.asarray(ctx.contract.drop_probability(ctx.params, ctx.shape), np.float64),
                        ctx.output_shape(inputs))
    q_units = _independent_units(ctx, np.asarray(unit_view(ctx, q)))
    binary = ctx.contract.dropped_value is not None
    log_bound = log_union_bound(match_log_probability(q_units.reshape(1, -1)), horizon) if binary else -math.inf
    if log_bound > math.log(FALSE_ALARM):
        raise NotInformative(f"{horizon} masks of {q_units.size} independent unit(s) repeat by chance with "
                             f"probability up to {format_probability(log_bound)} > {FALSE_ALARM:g}")
    hashes: List[bytes] = []
    constant = 0
    budget = ""
    try:
        stream.prefetch(horizon)
        while len(hashes) < horizon:
            vals, is_binary = mask_values(ctx, inputs, next(stream))
            units = np.asarray(unit_view(ctx, vals))
            constant += int(units.size > 0 and bool(np.all(units == units.flat[0])))
            hashes.append(mask_hash(units, is_binary))
    except BudgetExhausted as why:
        budget = str(why)
    except TargetError as exc:
        return [error_result(ctx, REPEAT, str(exc))]
    found, pattern = _repeat_pattern(hashes)
    details: Dict[str, Any] = {"calls": len(hashes), "horizon": horizon, "repeats": len(found),
                               "first_repeats": [f"call {i} = call {j}" for i, j in found[:20]],
                               "pattern": pattern, "constant_calls": constant,
                               "collision_bound": format_probability(log_bound), "budget": budget}
    note = f"; the budget ended the stream ({budget}): a period longer than {len(hashes)} calls could hide" \
        if len(hashes) < HORIZON else ""
    expected = (f"no exact repeat among {len(hashes)} consecutive calls (chance probability <= "
                f"{format_probability(log_bound)} under the contract){note}")
    observed = pattern or f"no two identical masks among {len(hashes)} calls"
    return [exact_result(ctx, REPEAT, not found, observed, expected, details, time.perf_counter() - start)]


# ------------------------------------------------------------------------------ shifted reuse

def _power_z(alpha: float, power: float) -> float:
    return float(sps.norm.isf(alpha) + sps.norm.isf(1 - power))


def _hypergeom_sf_top(count: np.ndarray, draws: np.ndarray, good: int, total: int) -> Tuple[float, int]:
    """Smallest exact upper-tail p-value P(X >= count), X ~ Hypergeom(total, good, draws), over
    the :data:`SCREEN` entries with the largest z-scores; (p, index)."""
    mu = draws * (good / total)
    var = draws * (good / total) * (1 - good / total) * np.maximum(total - draws, 0) / max(total - 1, 1)
    z = np.where(var > 0, (count - mu) / np.sqrt(np.maximum(var, 1e-300)), -np.inf)
    top = np.argpartition(-z, min(SCREEN, z.size - 1))[:SCREEN] if z.size > SCREEN else np.arange(z.size)
    top = top[count[top] > mu[top]]
    if top.size == 0:
        return 1.0, int(np.argmax(z))
    p = sps.hypergeom.sf(count[top] - 1, total, good, draws[top])
    i = int(np.argmin(p))
    return float(p[i]), int(top[i])


def _xcorr(fa: np.ndarray, fb: np.ndarray, n: int, size: int) -> np.ndarray:
    """c[s] = sum_i a[i] b[i + s] for s = -(n-1) .. n-1, as an array indexed s + n - 1, from the
    real FFTs ``fa``, ``fb`` of a and b zero-padded to ``size`` >= 2n - 1."""
    c = spfft.irfft(np.conj(fa) * fb, size)
    return np.rint(np.concatenate([c[size - n + 1:], c[:n]]))


def _shift_scores(count: np.ndarray, draws: np.ndarray, inv_sd: np.ndarray, good: int,
                  total: int) -> Tuple[np.ndarray, np.ndarray]:
    """Per row (one lag), the smallest exact upper-tail p-value P(X >= count), X ~
    Hypergeom(total, good, draws), over the row's :data:`SCREEN` entries with the largest
    z-scores (``inv_sd``: 1 / sqrt(draws (total - draws) / (total - 1)), the z-score's scale
    up to a factor common to the row); vectorised over rows: (p per row, shift index per row)."""
    frac = good / total
    z = ((count - frac * draws) * inv_sd).astype(np.float32)
    k = min(SCREEN, z.shape[1])
    # the top k of a row lie above a z of 3 (sd-scaled) in any long row: partition only those
    cut = np.float32(3.0 * math.sqrt(frac * (1 - frac)))
    top = np.empty((z.shape[0], k), np.int64)
    for r in range(z.shape[0]):  # one row per lag
        cand = np.flatnonzero(z[r] > cut)
        if cand.size < k:
            cand = np.arange(z.shape[1])
        top[r] = cand[np.argpartition(z[r, cand], cand.size - k)[cand.size - k:]]
    c, d = np.take_along_axis(count, top, axis=1), np.take_along_axis(draws, top, axis=1)
    p = np.where(c > frac * d, sps.hypergeom.sf(c - 1, total, good, d), 1.0)
    i = np.argmin(p, axis=1)
    rows = np.arange(p.shape[0])
    return p[rows, i], top[rows, i]


def draws_not_reused_shifted_across_calls(ctx: CheckContext) -> List[CheckResult]:
    """Call t + k is no shifted copy of call t, for every lag 1 <= k <= :data:`SHIFT_LAGS` and
    every flat shift s (-(n-1) <= s <= n-1), over :data:`SHIFT_PAIRS` + :data:`SHIFT_LAGS`
    consecutive calls (at least :data:`SHIFT_PAIRS` pairs per lag). Given call t + k's event
    count K, its events are a uniformly random K-subset of the n units under the contract, so
    the co-events C(s) of the a(s) events of call t that shift into range are exactly
    Hypergeom(n, K, a(s)). FAIL when the Bonferroni p over all shifts, lags and pairs (the
    union bound) is <= :data:`FALSE_ALARM`. The details give the smallest reused fraction of
    the draws detectable with the run's power."""
    start = time.perf_counter()
    inputs, stream = ctx.shared_stream()
    calls = min(SHIFT_PAIRS + SHIFT_LAGS, ctx.settings.max_calls)
    best = (1.0, 0, 0, 0.0, 0.0, 1)  # p, earlier call, shift, count, expected, lag
    done = 0  # call pairs compared
    kept: List[np.ndarray] = []
    read = 0
    n = 0
    try:
        stream.prefetch(calls)
        first = _events(ctx, inputs, next(stream))
        read, n = 1, first.size
        if n < 8:
            raise NotInformative(f"{n} mask units per call: too few shifts to test")
        size = spfft.next_fast_len(2 * n - 1, real=True)
        shifts = np.arange(-(n - 1), n)
        lo, hi = np.maximum(0, -shifts), np.minimum(n, n - shifts)
        # ring of the last SHIFT_LAGS calls (row t % SHIFT_LAGS holds call t): real FFTs, the
        # events of the call in range at each shift, and the scale of their z-scores
        ffts = np.empty((SHIFT_LAGS, size // 2 + 1), np.complex128)
        draws = np.empty((SHIFT_LAGS, 2 * n - 1))
        scales = np.empty_like(draws)
        held = np.full(SHIFT_LAGS, -1)
        ev = first
        for t in range(calls):
            if t:
                ev = _events(ctx, inputs, next(stream))
                read += 1
            kept.append(ev.astype(np.int8))  # every call's events, for the conditioned evidence
            f_cur = spfft.rfft(ev, size)
            k_cur = int(ev.sum())
            rows = np.flatnonzero(held >= 0)
            if rows.size and 0 < k_cur < n:
                c = spfft.irfft(np.conj(ffts[rows]) * f_cur, size, axis=-1)
                count = np.rint(np.concatenate([c[:, size - n + 1:], c[:, :n]], axis=1))
                p, i = _shift_scores(count, draws[rows], scales[rows], k_cur, n)
                j = int(np.argmin(p))
                if p[j] < best[0]:
                    a, was = int(i[j]), int(held[rows[j]])
                    best = (float(p[j]), was, int(shifts[a]), int(count[j, a]),
                            float(draws[rows[j], a] * k_cur / n), t - was)
            done += rows.size
            r = t % SHIFT_LAGS
            ffts[r], draws[r], held[r] = f_cur, _in_range(ev, lo, hi), t
            scales[r] = _inv_sd(draws[r], n)
    except BudgetExhausted:
        pass
    except TargetError as exc:
        return [error_result(ctx, SHIFT, str(exc))]
    tests = max(done, 1) * (2 * n - 1)
    p_all = min(1.0, tests * best[0])
    from . import _conditioned
    # conditioned on the marginal rates (uneven but independent rates raise co-events at small
    # shifts): a FAIL needs this evidence too; without enough calls for a group of four it is 1
    quads = _lag_quads(kept, best[5])
    log_c, _, c_shift = _conditioned.shift_log_p(quads) if _conditioned.ENABLED and quads and p_all <= FALSE_ALARM \
        else (0.0 if _conditioned.ENABLED else -math.inf, -1, 0)
    p_cond = math.exp(log_c)
    q = float(ctx.contract.drop_probability(ctx.params, ctx.shape))
    qe = min(q, 1 - q)
    half = max(1.0, qe * n / 2)  # events of call t that stay in range at |s| = n / 2
    rho = _power_z(FALSE_ALARM / tests, ctx.settings.power) * math.sqrt(qe / ((1 - qe) * half))
    lag = best[5]
    details = {"pairs": done, "lags": SHIFT_LAGS, "calls": read, "units": n,
               "shifts": 2 * n - 1, "p_bonferroni": p_all, "threshold": FALSE_ALARM,
               "worst_pair": best[1], "worst_lag": lag, "worst_shift": best[2], "co_events": best[3],
               "expected_co_events": best[4], "detectable_reused_fraction": min(1.0, rho), "p_conditioned": p_cond,
               "statistic": "co-events of call t and call t+k at shift s: exactly Hypergeom(n, K_{t+k}, a_t(s)); "
                            "a FAIL also needs the sign co-events of the call differences (a - b, a+k - b+k) at "
                            "the worst lag k, conditioned on the marginal rates"}
    ok = p_all > FALSE_ALARM or p_cond > FALSE_ALARM
    d = -best[2]
    if ok and p_all <= FALSE_ALARM:
        observed = (f"no shifted reuse once the marginal rates are conditioned on: the excess co-events at lag "
                    f"{lag}, shift {d} (p={p_all:.3g}) come from uneven drop rates (conditioned p={p_cond:.3g})")
    elif ok:
        observed = (f"no shifted reuse: smallest Bonferroni p over {2 * n - 1} shifts x {done} call pairs "
                    f"(lags 1..{SHIFT_LAGS}) = {fmt(p_all)}")
    else:
        observed = (f"call t+{lag} reuses call t's draws shifted by {d} (element j of call {best[1] + lag} = "
                    f"element j{'+' if d >= 0 else '-'}{abs(d)} of call {best[1]}: {best[3]} co-events vs "
                    f"{best[4]:.1f} expected; p={p_all:.3g})")
    expected = (f"independent calls: no shift at lags 1..{SHIFT_LAGS} with chance probability <= "
                f"{FALSE_ALARM:g}; a reuse of {100 * min(1.0, rho):.2g} % of the draws at |shift| <= n/2 is "
                f"detected with probability {ctx.settings.power:g}")
    return [exact_result(ctx, SHIFT, ok, observed, expected, details, time.perf_counter() - start)]


def _lag_quads(calls: Sequence[np.ndarray], k: int) -> List[List[np.ndarray]]:
    """Groups (a, a+k, b, b+k) of four distinct calls, b = a+1 (a+2 at k = 1), for the
    conditioned evidence of reuse at lag k: Delta_1 = call a - call b, Delta_2 = call a+k -
    call b+k is a shifted copy of Delta_1 under a lag-k reuse, and independent of it under the
    contract whatever the per-unit rates (:func:`._conditioned.shift_log_p`)."""
    gap = 2 if k == 1 else 1
    step = 4 if k == 1 else 2
    return [[calls[a], calls[a + k], calls[a + gap], calls[a + gap + k]]
            for a in range(0, len(calls) - gap - k, step)]


def _in_range(events: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """a(s): the events of a call at positions lo(s) .. hi(s) - 1 (those that shift into range)."""
    cs = np.concatenate([[0], np.cumsum(events, dtype=np.int64)])
    return (cs[hi] - cs[lo]).astype(np.float64)


def _inv_sd(draws: np.ndarray, n: int) -> np.ndarray:
    """1 / sqrt(a (n - a) / (n - 1)) (0 where a is 0 or n: no variance, never screened)."""
    v = draws * (n - draws) / max(n - 1, 1)
    with np.errstate(divide="ignore"):
        return np.where(v > 0, 1.0 / np.sqrt(np.maximum(v, 1e-300)), 0.0)


# ------------------------------------------------------------------------------ within-call lags

def _chernoff_log_sf(count: np.ndarray, m: np.ndarray, pi: float) -> np.ndarray:
    """log of the Chernoff bound exp(-m KL(c/m || pi)) on P(S >= c), S a sum of m negatively
    associated indicators with mean pi each (0 where c <= m pi)."""
    x = np.clip(count / np.maximum(m, 1), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = np.where(x > 0, x * np.log(x / pi), 0.0) + np.where(x < 1, (1 - x) * np.log((1 - x) / (1 - pi)), 0.0)
        kl = np.where(x == 1, -np.log(pi), kl)
    return np.where(x > pi, -m * kl, 0.0)


def draws_not_shared_at_any_flat_lag(ctx: CheckContext) -> List[CheckResult]:
    """Within a call, unit i and unit i + L are independent for every flat lag 1 <= L <= n/2
    (C order of the mask units), in :data:`LAG_CALLS` calls. Given a call's event count K the
    events are a uniformly random K-subset (negatively associated), so the co-events among the
    pairs (i, i + L) with floor(i / L) even (or odd), disjoint pairs with chance K(K-1)/(n(n-1))
    each, obey the Chernoff bound of independent indicators; the count at lag L exceeds c only
    if one half exceeds c / 2. FAIL when the Bonferroni bound over lags and calls is <=
    :data:`FALSE_ALARM`."""
    start = time.perf_counter()
    inputs, stream = ctx.shared_stream()
    calls = min(LAG_CALLS, ctx.settings.max_calls)
    best = (0.0, 0, 0, 0.0, 0.0)  # log p, call, lag, count, expected
    done = 0
    n = 0
    pooled = {"auto": None, "pi": 0.0, "calls": 0}  # co-events per lag summed over calls: persistent faults
    kept: List[np.ndarray] = []  # the calls, for the evidence conditioned on the marginal rates
    try:
        stream.prefetch(calls)
        for t in range(calls):
            e = _events(ctx, inputs, next(stream))
            kept.append(e.astype(np.int8))
            n = e.size
            if n < 16:
                raise NotInformative(f"{n} mask units per call: too few lags to test")
            k = float(e.sum())
            done += 1
            if k < 2 or k > n - 1:
                continue
            size = spfft.next_fast_len(2 * n, real=True)
            f = spfft.rfft(e, size)
            auto = np.rint(spfft.irfft(f * np.conj(f), size)[1:n // 2 + 1])
            lags = np.arange(1, n // 2 + 1)
            pairs = n - lags
            even = (pairs // (2 * lags)) * lags + np.minimum(lags, pairs % (2 * lags))
            odd = pairs - even
            pi = k * (k - 1) / (n * (n - 1))
            half = np.ceil(auto / 2)
            log_p = np.logaddexp(_chernoff_log_sf(half, even, pi), _chernoff_log_sf(half, odd, pi))
            log_p = np.minimum(log_p, 0.0)
            i = int(np.argmin(log_p))
            if log_p[i] < best[0]:
                best = (float(log_p[i]), t, int(lags[i]), float(auto[i]), float(pairs[i] * pi))
            pooled["auto"] = auto if pooled["auto"] is None else pooled["auto"] + auto
            pooled["pi"] += pi
            pooled["calls"] += 1
    except BudgetExhausted:
        pass
    except TargetError as exc:
        return [error_result(ctx, LAG, str(exc))]
    # pooled over calls: independent calls, each half a sum of negatively associated indicators;
    # by Jensen the Chernoff bound with the mean chance pi-bar over calls holds for the sum
    if pooled["calls"] > 1:
        c = pooled["calls"]
        lags = np.arange(1, n // 2 + 1)
        pairs = n - lags
        even = (pairs // (2 * lags)) * lags + np.minimum(lags, pairs % (2 * lags))
        pi_bar = pooled["pi"] / c
        half = np.ceil(pooled["auto"] / 2)
        log_pool = np.minimum(np.logaddexp(_chernoff_log_sf(half, c * even, pi_bar),
                                           _chernoff_log_sf(half, c * (pairs - even), pi_bar)), 0.0)
        i = int(np.argmin(log_pool))
        if log_pool[i] + math.log(max(n // 2, 1)) < best[0] + math.log(max(done, 1) * max(n // 2, 1)):
            best = (float(log_pool[i]) - math.log(max(done, 1)), -1, int(lags[i]), float(pooled["auto"][i]),
                    float(c * pairs[i] * pi_bar))
    # two statistics (the most extreme call, Bonferroni over calls; the pooled calls): x 2
    tests = 2 * max(done, 1) * max(n // 2, 1)
    log_all = min(0.0, math.log(tests) + best[0])
    p_all = math.exp(log_all)
    from . import _conditioned
    if not _conditioned.ENABLED:
        log_c, c_lag = -math.inf, 0
    elif p_all <= FALSE_ALARM:
        log_c, c_lag = _conditioned.lag_log_p([(kept[i], kept[i + 1]) for i in range(0, len(kept) - 1, 2)])
    else:
        log_c, c_lag = 0.0, 0
    p_cond = math.exp(log_c)
    details = {"calls": done, "units": n, "lags": n // 2, "p_bonferroni": p_all, "log_p_bonferroni": log_all,
               "threshold": FALSE_ALARM, "worst_call": best[1], "worst_lag": best[2], "co_events": best[3],
               "expected_co_events": best[4], "p_conditioned": p_cond, "conditioned_lag": c_lag,
               "statistic": "co-events of units i and i+L in one call; Chernoff bound on each half of disjoint pairs; "
                            "a FAIL also needs the sign co-events of call differences, conditioned on the marginal "
                            "rates"}
    ok = p_all > FALSE_ALARM or p_cond > FALSE_ALARM
    if ok and p_all <= FALSE_ALARM:
        observed = (f"no shared draws once the marginal rates are conditioned on: the excess co-events at lag "
                    f"{best[2]} (p <= {p_all:.3g}) come from uneven drop rates (conditioned p <= {p_cond:.3g})")
    elif ok:
        observed = f"no shared draws: smallest Bonferroni bound over {n // 2} lags x {done} calls = {fmt(p_all)}"
    else:
        where = f"in call {best[1]}" if best[1] >= 0 else f"over {done} calls"
        observed = (f"elements {best[2]} apart share one draw ({best[3]:.0f} co-events at lag {best[2]} {where} "
                    f"vs {best[4]:.1f} expected; p <= {p_all:.3g})")
    expected = f"independent units: no lag with chance probability <= {FALSE_ALARM:g}"
    return [exact_result(ctx, LAG, ok, observed, expected, details, time.perf_counter() - start)]
