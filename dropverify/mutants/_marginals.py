"""Uneven marginal drop rates with independent draws (issue 22): faults of the RATE that the
per-position check (which pools the batch axis) and the expectation check miss, and that the
dependence statistics once misread as dependence. Each is killed by
``drop_rate_marginals_by_hypergeometric``; its diagnosis must name the uneven rate first and
no dependence cause.

Every random choice is drawn from the layer's own generator (``self.rng``), so re-seeding
reproduces the mutant exactly.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from ..variants.dropout import Dropout
from ._core import Mutant, mutant


class PerSampleRateRamp(Dropout):
    """Sample i of the batch drops at p + (2 i / (N - 1) - 1) x ``spread`` (0.2 for sample 0, 0.4
    for sample 63 at p = 0.3): the mean rate is p, every position pooled over the batch drops at
    p, and units are independent (a per-sample rate read from a wrong schedule index)."""

    spread = 0.1

    def draw_keep(self, shape: Tuple[int, ...]) -> np.ndarray:
        mshape = tuple(self.mask_shape(shape))
        n = mshape[0] if mshape else 1
        ramp = np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(n)
        rate = np.clip(self.p + self.spread * ramp, 0.0, 1.0).reshape((n,) + (1,) * (len(mshape) - 1))
        return self.rng.random(mshape) >= rate


class FlatTailNeverDropped(Dropout):
    """The last 896 elements of the flattened mask are never dropped (a kernel whose last,
    partial tile skips the random draw and keeps everything); the rest is correct dropout."""

    TAIL = 896

    def draw_keep(self, shape: Tuple[int, ...]) -> np.ndarray:
        keep = super().draw_keep(shape).reshape(-1)
        keep[-min(self.TAIL, keep.size // 2):] = True
        return keep.reshape(self.mask_shape(shape))


class HalfBatchBeyondMargin(Dropout):
    """Adversary just beyond the marginal margin: the first half of the batch drops at
    p + ``delta``, the second half at p - ``delta`` (mean p); ``delta`` = 1.2 x the default
    margin 0.25 x min(p, 1 - p)."""

    delta = 1.2 * 0.25 * 0.3

    def draw_keep(self, shape: Tuple[int, ...]) -> np.ndarray:
        mshape = tuple(self.mask_shape(shape))
        n = mshape[0]
        side = np.where(np.arange(n) < n // 2, self.delta, -self.delta)
        rate = (self.p + side).reshape((n,) + (1,) * (len(mshape) - 1))
        return self.rng.random(mshape) >= rate


KILLS = ("drop_rate_marginals_by_hypergeometric",)
_SRC = "issue 22 (uneven marginal rates read as dependence; unseen broken torch layers)"

MUTANTS: Tuple[Mutant, ...] = (
    mutant("per_sample_rate_ramp", "dropout", PerSampleRateRamp, params={"p": 0.3}, kills=KILLS,
           bug_class="obvious slip", source=_SRC + "; a per-sample rate ramp across the batch"),
    mutant("flat_tail_never_dropped", "dropout", FlatTailNeverDropped, params={"p": 0.3}, kills=KILLS,
           bug_class="obvious slip", source=_SRC + "; the last partial tile never dropped"),
)
