"""Neighbour strata of ``drop_rate_independent_of_input_by_stratum``: the input values next to
a mask unit, not only its own.

A layer whose drop decision reads the wrong element (x[i+1] instead of x[i], a shifted
pointer, a mask derived from bits of the neighbouring value) keeps the rate p in every stratum
of the unit's OWN value, because on a fresh i.i.d. probe the neighbour is independent of the
element: strata of x alone cannot see it, and a PASS on them certifies only those strata. On
the fixed probes of the other checks such a rate varies by position, which the dependence
checks then read as stale masks or an ignored seed. A feature here is the value of one
neighbour (the previous / next unit along one axis of the unit array); its strata are the
sign of that value and, along the last axis, its |x| deciles. Units at the edge of an axis
have no neighbour there and join none of that feature's strata. Under the contract the mask
is independent of the whole input, so every contrast of every feature has mean 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np


@dataclass(frozen=True)
class Feature:
    """The value a unit is classified by: its own (``step`` 0) or its neighbour ``step`` units
    away along ``axis`` of the unit array (``orig`` the input axis it is, ``last``: the input's
    last axis)."""

    axis: int = -1
    step: int = 0
    orig: int = -1
    last: bool = False

    @property
    def own(self) -> bool:
        return self.step == 0

    @property
    def symbol(self) -> str:
        """``x``, ``x[i+1]``, ``x[i-1]``, ``x[i+1 on axis 1]``."""
        if self.own:
            return "x"
        where = "" if self.last else f" on axis {self.orig}"
        return f"x[i{'+' if self.step > 0 else '-'}1{where}]"

    def noun(self, unit: str) -> str:
        """'the next element x[i+1]', 'the previous unit along axis 1 x[i-1 on axis 1]'."""
        side = "next" if self.step > 0 else "previous"
        where = "" if self.last else f" along axis {self.orig}"
        return f"the {side} {unit}{where} {self.symbol}"

    def sign_lane(self) -> str:
        return f"{self.symbol} < 0 vs {self.symbol} > 0"

    def bin_lane(self, k: int, groups: int) -> str:
        return f"|{self.symbol}| bin {k + 1} of {groups} vs the rest"

    def deciles(self) -> bool:
        """|x| bins for this feature: the unit's own value and its neighbours along the last axis
        (bins of every axis's neighbours would multiply the lanes for little more)."""
        return self.own or self.last

    def pair(self, cell: np.ndarray, v: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(cells of this feature, values they classify), flat: the unit's own cell, or the cell
        of its neighbour, for every unit that has one."""
        if self.own:
            return cell.reshape(-1), v.reshape(-1)
        head = [slice(None)] * cell.ndim
        tail = [slice(None)] * cell.ndim
        head[self.axis], tail[self.axis] = slice(None, -1), slice(1, None)
        mine, theirs = (head, tail) if self.step > 0 else (tail, head)
        return cell[tuple(theirs)].reshape(-1), v[tuple(mine)].reshape(-1)

    def valid(self, shape: Sequence[int]) -> float:
        """Fraction of units that have this neighbour."""
        return 1.0 if self.own else (shape[self.axis] - 1) / shape[self.axis]


def features(unit_shape: Sequence[int], shared: Sequence[int], ndim: int) -> List[Feature]:
    """The unit's own value, then its previous and next neighbour along every axis of the unit
    array with at least two units (``shared``: input axes the units span, removed from it)."""
    orig = [i for i in range(ndim) if i not in set(shared)]
    out = [Feature()]
    for a, size in enumerate(unit_shape):
        if size >= 2:
            out += [Feature(a, s, orig[a], orig[a] == ndim - 1) for s in (-1, 1)]
    return out


def lanes_of(feats: Sequence[Feature], signed: bool, groups: int,
             own_sign: str, own_bin) -> Tuple[List[str], List[Tuple[int, Optional[int]]]]:
    """(lane names, (feature index, |x| bin or None for the sign contrast)) in order: every
    feature's sign contrast (signed probes), then its |x| bins (where :meth:`Feature.deciles`)."""
    names: List[str] = []
    keys: List[Tuple[int, Optional[int]]] = []
    for f, feat in enumerate(feats):
        if signed:
            names.append(own_sign if feat.own else feat.sign_lane())
            keys.append((f, None))
        if groups > 1 and feat.deciles():
            for k in range(groups):
                names.append(own_bin(k, groups) if feat.own else feat.bin_lane(k, groups))
                keys.append((f, k))
    return names, keys
