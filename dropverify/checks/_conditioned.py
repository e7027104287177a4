"""Dependence evidence conditioned on the marginal rates: the sign-concordance test.

The pair tests compare co-events with the product of the contract's (or the step's) rates, so
a layer whose units drop at UNEVEN but independent rates (a ramp across the batch, a tail that
never drops) shows an excess of co-events along every axis (Simpson): E[c - a b] is the
covariance of the paired units' rates, not zero. Such a layer has a marginal fault, not
dependent draws.

Conditioning. Take two independent steps s, s' of the same pairing (the same units, two
different calls or groups of calls) and difference each unit's event: Delta = x(s) - x(s'),
in {-1, 0, +1}. Let D be the units with Delta != 0 and, among them, the sign of Delta. Under
independent units whose log-odds are ANY unit effect plus ANY call effect (a Rasch model:
arbitrary per-unit rates, arbitrary per-call rate shifts), the signs of the units in D are
exchangeable given D: the unit effect cancels in P(+ | D) = e^b_s / (e^b_s + e^b_s'). So, over
the pairs (u, v) with both units in D, given the number r of u-side plus signs, the u-side
signs are a uniformly random r-subset, independent of the v-side signs: the count a of pairs
with both signs + is exactly Hypergeom(|P|, r, c), c the v-side plus signs. The CMH test over
step pairs (strata) is therefore exact whatever the marginal rates are. Dependent draws (a
shared draw makes Delta_u = Delta_v) still make signs concordant.

A pair test FAILs only when this conditioned test also rejects (an intersection-union test:
its false alarm under the contract stays <= alpha, and a layer with uneven but independent
rates FAILs at most alpha), except on "identical steps" evidence (every pair equal on a step),
which stands on its own. Blind spot: a dependence that never changes between two steps (a mask
frozen for the whole stream) has Delta = 0 and no sign: the hash and identical-step evidence
see it.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..stats import cmh_p

MIN_PAIRS = 16
"""Pairs per step below which a lane is not conditioned (one unit per call has no marginal to
condition on, and a step pair with a single pair carries no conditional information)."""

ENABLED = True
"""Module switch (benchmarks/issue22_marginals.py measures the pair tests with and without)."""


class SignTables:
    """Per lane, the sign 2x2 tables of consecutive step pairs (steps 0-1, 2-3, ...)."""

    def __init__(self, lanes: int) -> None:
        self.tables: List[Tuple[List[int], List[int], List[int], List[int]]] = [([], [], [], []) for _ in range(lanes)]
        self._prev: Optional[Tuple[np.ndarray, np.ndarray]] = None
        self._prev_lists: Optional[List[Tuple[np.ndarray, np.ndarray]]] = None

    def add_stacked(self, eu: np.ndarray, ev: np.ndarray, counts) -> None:
        """Events of every lane at once (``counts(bool array) -> per-lane counts``)."""
        if self._prev is None:
            self._prev = (eu, ev)
            return
        pu, pv = self._prev
        self._prev = None
        du = pu.view(np.int8) - eu.view(np.int8)
        dv = pv.view(np.int8) - ev.view(np.int8)
        both = (du != 0) & (dv != 0)
        up, vp = both & (du > 0), both & (dv > 0)
        for i, row in enumerate(zip(counts(up & vp), counts(up), counts(vp), counts(both))):
            self._append(i, *row)

    def add_lists(self, events: Sequence[Tuple[np.ndarray, np.ndarray]]) -> None:
        """One (eu, ev) pair of event arrays per lane."""
        if self._prev_lists is None:
            self._prev_lists = list(events)
            return
        prev, self._prev_lists = self._prev_lists, None
        for i, ((pu, pv), (eu, ev)) in enumerate(zip(prev, events)):
            du = pu.view(np.int8) - eu.view(np.int8)
            dv = pv.view(np.int8) - ev.view(np.int8)
            both = (du != 0) & (dv != 0)
            up, vp = both & (du > 0), both & (dv > 0)
            self._append(i, int(np.count_nonzero(up & vp)), int(np.count_nonzero(up)), int(np.count_nonzero(vp)),
                         int(np.count_nonzero(both)))

    def _append(self, i: int, a: int, r: int, c: int, m: int) -> None:
        t = self.tables[i]
        t[0].append(int(a)); t[1].append(int(r)); t[2].append(int(c)); t[3].append(int(m))

    def p_value(self, i: int) -> float:
        """Two-sided exact / normal CMH p-value of lane ``i`` (1.0 before any step pair)."""
        a, r, c, n = self.tables[i]
        return cmh_p(a, r, c, n) if a else 1.0

    def pairs(self, i: int) -> int:
        """Pairs with both units differing between the two steps, summed over step pairs."""
        return int(sum(self.tables[i][3]))


# ------------------------------------------------------------------------------ long-horizon statistics

def _signs(a: np.ndarray, b: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(plus, minus, differing) float64 indicators of Delta = a - b (event arrays of two calls)."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    return (d > 0).astype(np.float64), (d < 0).astype(np.float64), (d != 0).astype(np.float64)


def shift_log_p(quads: Sequence[Sequence[np.ndarray]]) -> Tuple[float, int, int]:
    """Conditioned shifted-reuse evidence from groups of four consecutive calls (t .. t+3):
    Delta_1 = call t - call t+2, Delta_2 = call t+1 - call t+3. Given Delta_1's support D_1 and
    its number of + signs, its + signs are a uniform subset of D_1 (Rasch-exchangeable; the
    unit rates cancel), independent of Delta_2, so the co-events of + signs at shift s are
    exactly Hypergeom(|D_1|, K_1+, #{i in D_1: Delta_2(i + s) = +}); the same for - signs.
    Returns (log of the Bonferroni p over shifts, signs and groups, worst group, worst shift)."""
    from scipy import fft as spfft
    from .longhorizon import _hypergeom_sf_top, _xcorr
    best, where, shift = 1.0, -1, 0
    tests = 0
    for g, (e0, e1, e2, e3) in enumerate(quads):
        n = e0.size
        size = spfft.next_fast_len(2 * n - 1, real=True)
        shifts = np.arange(-(n - 1), n)
        p1, m1, d1 = _signs(e0, e2)
        p2, m2, _ = _signs(e1, e3)
        fd1 = spfft.rfft(d1, size)
        for x1, x2 in ((p1, p2), (m1, m2)):
            tests += 2 * n - 1
            good, total = int(x1.sum()), int(d1.sum())
            if good == 0 or good == total:
                continue
            f2 = spfft.rfft(x2, size)
            count = _xcorr(spfft.rfft(x1, size), f2, n, size).astype(np.int64)
            draws = _xcorr(fd1, f2, n, size).astype(np.int64)
            p, i = _hypergeom_sf_top(count, draws, good, total)
            if p < best:
                best, where, shift = p, g, int(shifts[i])
    return min(0.0, math.log(max(tests, 1)) + math.log(max(best, 1e-300))), where, shift


def lag_log_p(pairs: Sequence[Tuple[np.ndarray, np.ndarray]], screen: int = 16) -> Tuple[float, int]:
    """Conditioned within-call evidence at every flat lag 1 <= L <= n/2 from pairs of calls:
    Delta = call a - call b; given its support D and its number K of + signs, the + units are a
    uniform K-subset of D, so among the disjoint D-pairs (i, i + L) of each half (floor(i / L)
    even / odd) the co-events of + signs are negatively associated indicators with chance
    pi = K (K - 1) / (M (M - 1)) each; the same for - signs. Pooled over the call pairs (independent;
    by Jensen the Chernoff bound holds with the pair-weighted mean chance), the Chernoff bound of
    each half is computed exactly for the ``screen`` lags with the largest pooled z (Bonferroni
    over ALL lags, both signs and both halves stays valid). Returns (log Bonferroni p, worst lag)."""
    from scipy import fft as spfft
    from .longhorizon import _chernoff_log_sf
    kept = []
    n = 0
    for a, b in pairs:
        n = a.size
        if n // 2 >= 1:
            kept.append(_signs(a, b))
    half_n = n // 2
    if not kept or half_n < 1:
        return 0.0, 0
    size = spfft.next_fast_len(2 * n, real=True)

    def auto(x: np.ndarray) -> np.ndarray:
        f = spfft.rfft(x, size)
        return np.rint(spfft.irfft(f * np.conj(f), size)[1:half_n + 1])

    ms = [auto(d) for _, _, d in kept]
    best, lag_at = 0.0, 0
    for sign in (0, 1):
        xs = [k[sign] for k in kept]
        pis = []
        for x, (_, _, d) in zip(xs, kept):
            k, total = float(x.sum()), float(d.sum())
            pis.append(k * (k - 1) / (total * (total - 1)) if k >= 2 and total >= 2 else 0.0)
        if not any(pis):
            continue
        c = sum(auto(x) for x in xs)
        m = sum(ms)
        mp = sum(mi * pi for mi, pi in zip(ms, pis))
        z = (c - mp) / np.sqrt(np.maximum(mp, 1e-9))
        top = np.argsort(-z)[:screen]
        for j in top[c[top] > mp[top]]:
            lag = int(j) + 1
            even = (np.arange(n - lag) // lag) % 2 == 0
            logs = []
            for h in (even, ~even):
                cnt = sum(float((x[:-lag] * x[lag:])[h].sum()) for x in xs)
                mh = [float((d[:-lag] * d[lag:])[h].sum()) for _, _, d in kept]
                tot = sum(mh)
                if tot <= 0:
                    continue
                pi_bar = sum(a * b for a, b in zip(mh, pis)) / tot
                logs.append(float(_chernoff_log_sf(np.array([cnt]), np.array([tot]), max(pi_bar, 1e-300))[0]))
            lp = min(logs, default=0.0)
            if lp < best:
                best, lag_at = lp, lag
    tests = 2 * 2 * half_n  # signs x halves x lags
    return min(0.0, math.log(tests) + best), lag_at
