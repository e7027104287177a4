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
