"""Adversaries of the certifying checks: layers that deviate by MORE than a check's margin,
but only on some calls — the faults that pooled within-call statistics cannot see. A PASS
against one of them is a false pass; its rate must stay at or below the check's alpha
(measured in tests/meta/test_false_pass.py and ``make quality``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Tuple, Type

from ..variants.dropout import Dropout


class IntermittentRate(Dropout):
    """Drops at ``bad_rate`` on a fraction ``strike`` of calls (its own draw per call), at p
    otherwise: mean rate p + strike (bad_rate - p)."""

    strike = 0.1
    bad_rate = 0.8

    def draw_keep(self, shape):
        t = self.bad_rate if self.rng.random() < self.strike else self.p
        return self.rng.random(self.mask_shape(shape)) >= t


class RareTotalDrop(IntermittentRate):
    """Drops everything on 6 % of calls: mean rate 0.53 at p = 0.5."""

    strike = 0.06
    bad_rate = 1.0


class StaleMask(Dropout):
    """Reuses the previous call's mask on a fraction ``strike`` of calls: at p = 0.5 the
    relative risk of a drop given a drop at lag 1 is 1 + strike."""

    strike = 0.25

    def draw_keep(self, shape):
        last = getattr(self, "_last", None)
        if last is not None and last.shape == tuple(shape) and self.rng.random() < self.strike:
            return last
        self._last = self.rng.random(self.mask_shape(shape)) >= self.p
        return self._last


@dataclass(frozen=True)
class Adversary:
    """A call-level fault, the check that must not PASS it, and its true deviation (on the
    check's scale), which exceeds the default margin."""

    layer: Type[Dropout]
    check: str
    deviation: float
    params: Tuple[Tuple[str, Any], ...] = (("p", 0.5),)
    variant: str = "dropout"

    @property
    def name(self) -> str:
        return self.layer.__name__

    def factory(self, prm: Dict[str, Any]) -> Dropout:
        return self.layer(**prm)


ADVERSARIES: Tuple[Adversary, ...] = (
    Adversary(IntermittentRate, "drop_rate_matches_by_binomial", 0.1 * 0.3),
    Adversary(RareTotalDrop, "drop_rate_matches_by_binomial", 0.06 * 0.5),
    Adversary(StaleMask, "masks_fresh_across_calls_by_fisher", 0.25),
)
"""At p = 0.5 the default margins are 0.025 (rate) and 0.2 (relative risk)."""


def _input_adversaries() -> Tuple[Tuple[Adversary, ...], Tuple[Adversary, ...]]:
    from ._inputs import (CHECK, BoundarySignRate, GaussianSignMean, IntermittentSignRate, SignDependentRate,
                          SmallMagnitudeRate, SubMarginSignRate, contrast)

    def adv(layer: Any, variant: str = "dropout") -> Adversary:
        return Adversary(layer, CHECK, contrast(layer, 0.3), (("p", 0.3),), variant)

    beyond = (adv(SignDependentRate), adv(SmallMagnitudeRate), adv(BoundarySignRate), adv(IntermittentSignRate),
              adv(GaussianSignMean, "gaussian_dropout"))
    return beyond, (adv(SubMarginSignRate),)


INPUT_ADVERSARIES, INPUT_WITHIN_MARGIN = _input_adversaries()
"""Input-dependent rates against ``drop_rate_independent_of_input_by_stratum`` at p = 0.3
(default margins: 0.015 on a rate difference, 0.01 on a mean multiplier difference):
``INPUT_ADVERSARIES`` deviate by more (a PASS is a false pass), from 1.2 x the margin
(BoundarySignRate) to 10 x; ``INPUT_WITHIN_MARGIN`` by 0.4 x the margin (a PASS is right; a
FAIL is a true, small deviation and must say that its estimate lies inside the margin)."""


# ------------------------------------------------------------------------------ issue 16

class OverDispersed25(Dropout):
    """Each call drops at its own rate p + tau Z (Z standard normal), tau^2 = 1.5 p (1 - p) / n:
    the per-call count's variance is 2.5x binomial, beyond the default dispersion margin
    (1 ± 0.5); the mean rate is p."""

    def draw_keep(self, shape):
        import numpy as np
        mshape = self.mask_shape(shape)
        n = max(int(np.prod(mshape, dtype=np.int64)), 1)
        tau = (1.5 * self.p * (1 - self.p) / n) ** 0.5
        rate = float(np.clip(self.p + tau * self.rng.standard_normal(), 0.0, 1.0))
        return self.rng.random(mshape) >= rate


class LagSharedOnQuarter(Dropout):
    """Draws shared 96 elements apart in a quarter of the 192-element blocks of the flattened
    mask only (a weaker version of ``mutant:shared_draw_at_lag_96``)."""

    def draw_keep(self, shape):
        keep = super().draw_keep(shape).reshape(-1)
        blocks = keep[:(keep.size // 192) * 192].reshape(-1, 2, 96)
        blocks[::4, 1, :] = blocks[::4, 0, :]
        return keep.reshape(self.mask_shape(shape))
