"""Input-dependent drop rates: layers whose mask depends on the value it masks.

Each keeps the right mean rate over a signed probe or a bias that the pooled checks average
away: only ``drop_rate_independent_of_input_by_stratum`` (a fresh probe per call, rates per
stratum of x) sees them for what they are. The docstring's first paragraph is the mutant's
``notes``; every random choice comes from the layer's own generator.
"""
from __future__ import annotations

import math
from typing import Tuple

import numpy as np

from ..contracts import probe_magnitudes
from ..variants.dropout import Dropout, GaussianDropout, gaussian_sigma
from ._core import Mutant, mutant

CHECK = "drop_rate_independent_of_input_by_stratum"


class _InputRate(Dropout):
    """Dropout whose per-element drop probability is ``rate(x)`` instead of p."""

    def rate(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _forward(self, x: np.ndarray) -> np.ndarray:
        self._x = x
        return super()._forward(x)

    def draw_keep(self, shape: Tuple[int, ...]) -> np.ndarray:
        rate = np.clip(self.rate(np.asarray(self._x, np.float64)), 0.0, 1.0)
        return self.rng.random(self.mask_shape(shape)) >= rate


class SignDependentRate(_InputRate):
    """Drop rate p * 1.2 for x < 0 and p * 0.8 for x >= 0 (a sign-dependent threshold, e.g. a
    mask derived from bits of x): the mean rate over a signed probe is p, and the signed mean
    error cancels."""

    BIAS = 0.2

    def rate(self, x: np.ndarray) -> np.ndarray:
        return np.where(x < 0, (1 + self.BIAS) * self.p, (1 - self.BIAS) * self.p)


class SubMarginSignRate(SignDependentRate):
    """Drop rate p * 1.01 for x < 0 and p * 0.99 for x >= 0: a difference of 0.02 p between the
    strata, 0.4 x the default ``rate`` margin (0.05 min(p, 1 - p)) — inside the margin."""

    BIAS = 0.01


class BoundarySignRate(SignDependentRate):
    """Drop rate p * 1.03 for x < 0 and p * 0.97 for x >= 0: a difference of 0.06 p between
    the strata, 1.2 x the default ``rate`` margin — just outside it (a PASS is a false pass)."""

    BIAS = 0.03


class IntermittentSignRate(_InputRate):
    """On about 10 % of calls (a coin per call) the drop rate is p * 1.8 for x < 0 and p * 0.2
    for x >= 0, p otherwise: every other call is correct, and the mean difference between the
    strata over calls is 0.16 p (3.2 x the default ``rate`` margin)."""

    STRUCK, BIAS = 0.10, 0.8

    def draw_keep(self, shape: Tuple[int, ...]) -> np.ndarray:
        self._struck = self.rng.random() < self.STRUCK
        return super().draw_keep(shape)

    def rate(self, x: np.ndarray) -> np.ndarray:
        if not self._struck:
            return np.full(x.shape, self.p)
        return np.where(x < 0, (1 + self.BIAS) * self.p, (1 - self.BIAS) * self.p)


class SmallMagnitudeRate(_InputRate):
    """Drop rate 1.5 p where |x| lies in the lowest decile of the probe's magnitude law
    (|x| < lo (hi / lo)^0.1 of ``probe_magnitudes``: 1.6e-5 in float64), p elsewhere (a
    kept value that underflows or is flushed to zero and then reads as dropped)."""

    FACTOR = 1.5

    def rate(self, x: np.ndarray) -> np.ndarray:
        lo, hi = probe_magnitudes(self._x.dtype)
        small = np.abs(x) < lo * (hi / lo) ** 0.1
        return np.where(small, self.FACTOR * self.p, self.p)


class GaussianSignMean(GaussianDropout):
    """Gaussian dropout whose multiplier has mean 1.02 for x < 0 and 0.98 for x >= 0 (noise
    drawn around a sign-dependent centre): E[y / x] = 1 on a signed probe, so the expectation
    check's signed mean error cancels."""

    SHIFT = 0.02

    def _forward(self, x: np.ndarray) -> np.ndarray:
        if not self.training or self.p == 0.0:
            return super()._forward(x)
        centre = np.where(x < 0, 1.0 + self.SHIFT, 1.0 - self.SHIFT)
        m = (centre + gaussian_sigma(self.p) * self.rng.standard_normal(x.shape)).astype(x.dtype)
        self._saved = ("noise", m)
        return x * m


class NeighbourSignRate(_InputRate):
    """Drop rate p * 1.2 where the NEXT element along the last axis is negative (x[i+1] < 0,
    wrapping at the end) and p * 0.8 elsewhere (a mask drawn from bits of the wrong, shifted
    element): every element's own strata see the rate p; on a fixed probe the rate varies by
    position, which the dependence checks read as stale masks or an ignored seed."""

    BIAS = 0.2

    def rate(self, x: np.ndarray) -> np.ndarray:
        nxt = np.roll(x, -1, axis=-1)
        return np.where(nxt < 0, (1 + self.BIAS) * self.p, (1 - self.BIAS) * self.p)


class BoundaryNeighbourSignRate(NeighbourSignRate):
    """Drop rate p * 1.03 where x[i+1] < 0 and p * 0.97 elsewhere: a difference of 0.06 p between
    the neighbour's strata, 1.2 x the default ``rate`` margin — just outside it (a PASS is a
    false pass)."""

    BIAS = 0.03


class GaussianNeighbourMean(GaussianDropout):
    """Gaussian dropout whose multiplier has mean 1.006 where x[i+1] < 0 and 0.994 elsewhere: a
    difference of 0.012 between the neighbour's strata, 1.2 x the default ``mean`` margin (0.01)
    — just outside it (a PASS is a false pass)."""

    SHIFT = 0.006

    def _forward(self, x: np.ndarray) -> np.ndarray:
        if not self.training or self.p == 0.0:
            return super()._forward(x)
        centre = np.where(np.roll(x, -1, axis=-1) < 0, 1.0 + self.SHIFT, 1.0 - self.SHIFT)
        m = (centre + gaussian_sigma(self.p) * self.rng.standard_normal(x.shape)).astype(x.dtype)
        self._saved = ("noise", m)
        return x * m


_SOURCE = "issue 16 item 4 (input-dependent drop rates; biases of opposite sign cancel in pooled checks)"

MUTANTS: Tuple[Mutant, ...] = (
    mutant("sign_dependent_rate", "dropout", SignDependentRate, params={"p": 0.3}, kills=(CHECK,),
           bug_class="obvious slip", source=_SOURCE),
    mutant("small_magnitude_rate", "dropout", SmallMagnitudeRate, params={"p": 0.3}, kills=(CHECK,),
           bug_class="obvious slip", source=_SOURCE),
    mutant("gaussian_sign_mean", "gaussian_dropout", GaussianSignMean, params={"p": 0.3}, kills=(CHECK,),
           bug_class="obvious slip", source=_SOURCE),
    mutant("neighbour_sign_rate", "dropout", NeighbourSignRate, params={"p": 0.3}, kills=(CHECK,),
           bug_class="obvious slip",
           source="issue 22 item 5 (a rate set by the neighbour x[i+1], blamed on stale masks / the seed)"),
)
"""The input-dependent mutants the harness must kill (``SubMarginSignRate`` is not one: its
deviation lies inside the margin; see ``adversaries.INPUT_WITHIN_MARGIN``)."""


def contrast(layer: type, p: float) -> float:
    """The true largest stratum contrast of an input-dependent layer at rate p on the default
    float64 probe (rate scale; GaussianSignMean: multiplier scale)."""
    if issubclass(layer, (SignDependentRate, NeighbourSignRate)):
        return 2 * layer.BIAS * p
    if issubclass(layer, IntermittentSignRate):
        return layer.STRUCK * 2 * layer.BIAS * p
    if issubclass(layer, SmallMagnitudeRate):
        return (layer.FACTOR - 1) * p
    if issubclass(layer, (GaussianSignMean, GaussianNeighbourMean)):
        return 2 * layer.SHIFT
    return math.nan
