"""Call-level faults of element-wise dropout: slips that strike whole calls, batch items or
positions, so that pooling mask units within a call hides them.

Each class is the dropout reference with one deliberate slip; the docstring's first paragraph
says what it is and becomes the mutant's ``notes``. Every random choice a slip makes is drawn
from the layer's own generator (``self.rng``), so re-seeding reproduces the mutant exactly.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np

from ..variants.dropout import Dropout
from ._core import Mutant, mutant


class PoolOfFiveMasks(Dropout):
    """Five masks drawn on the first call after (re)seeding, then used round-robin (a mask
    cache keyed by a call counter modulo 5): calls t and t + 5 carry the same mask."""

    POOL = 5

    def draw_keep(self, shape: Tuple[int, ...]) -> np.ndarray:
        if getattr(self, "_pool_rng", None) is not self.rng:
            self._pool_rng, self._pool = self.rng, {}
        key = tuple(shape)
        if key not in self._pool:
            masks: List[np.ndarray] = []
            for _ in range(self.POOL):
                masks.append(super().draw_keep(shape))
            self._pool[key] = [masks, 0]
        masks, count = self._pool[key]
        self._pool[key][1] = count + 1
        return masks[count % self.POOL]


class BatchTailReusesHead(Dropout):
    """The last 8 batch items reuse the masks of the first 8 (items N-8..N-1 get the masks of
    items 0..7, as when a per-sample RNG offset wraps around modulo N - 8); each item alone is
    still Bernoulli(1-p)."""

    TAIL = 8

    def draw_keep(self, shape: Tuple[int, ...]) -> np.ndarray:
        keep = super().draw_keep(shape)
        if keep.ndim >= 1 and keep.shape[0] >= 2 * self.TAIL:
            keep[-self.TAIL:] = keep[:self.TAIL]
        return keep


class StaleMask15Percent(Dropout):
    """On each call, with probability 0.15, the previous call's mask is reused exactly (a mask
    buffer that is sometimes not refreshed, e.g. a skipped RNG update on some steps)."""

    STALE = 0.15

    def draw_keep(self, shape: Tuple[int, ...]) -> np.ndarray:
        last: Dict[Tuple[int, ...], np.ndarray] = self.__dict__.setdefault("_last", {})
        key = tuple(shape)
        stale = self.rng.random() < self.STALE
        if not (stale and key in last):
            last[key] = super().draw_keep(shape)
        return last[key].copy()


class IntermittentRate(Dropout):
    """On about 10 % of calls (a coin per call) units drop at 0.8 instead of p, with the usual
    1/(1-p) scale: at p = 0.5 the mean rate is 0.53, and every call alone looks like dropout."""

    STRUCK, STRUCK_RATE = 0.10, 0.8

    def draw_keep(self, shape: Tuple[int, ...]) -> np.ndarray:
        rate = self.STRUCK_RATE if self.rng.random() < self.STRUCK else self.p
        return self.rng.random(self.mask_shape(shape)) >= rate


class PositionSkew(Dropout):
    """Drop rate depends on the position: features in the first half of the flattened
    non-batch axes drop at 1.25 p, the second half at 0.75 p (mean p over positions)."""

    def draw_keep(self, shape: Tuple[int, ...]) -> np.ndarray:
        mshape = tuple(self.mask_shape(shape))
        if len(mshape) < 2:
            return super().draw_keep(shape)
        per_item = int(np.prod(mshape[1:], dtype=np.int64))
        rate = np.where(np.arange(per_item) < per_item // 2, 1.25 * self.p, 0.75 * self.p)
        u = self.rng.random((mshape[0], per_item))
        return (u >= np.minimum(rate, 1.0)).reshape(mshape)


class AbsValue(Dropout):
    """Output |x| * keep / (1 - p) (an abs folded into the kernel): identical to dropout on
    positive inputs, wrong sign on negative ones. The backward is the true derivative of this
    forward (sign(x) * mask), so only the output values betray it."""

    def _forward(self, x: np.ndarray) -> np.ndarray:
        y = super()._forward(np.abs(x))
        self._sign = np.sign(x)
        return y

    def _backward(self, grad_out: np.ndarray) -> np.ndarray:
        return super()._backward(grad_out) * self._sign.astype(grad_out.dtype)


_REPEATS = "masks_never_repeat_by_hash"
_REVIEW = "review 2026-11 (harness-review.md / issue 8: call-level faults)"

MUTANTS: Tuple[Mutant, ...] = (
    mutant("pool_of_5_masks", "dropout", PoolOfFiveMasks, params={"p": 0.5}, kills=(_REPEATS,),
           bug_class="same mask every call (RNG never advances)",
           source="keras 18426 class (masks fixed at trace time; here five cached masks cycled)"),
    mutant("batch_tail_reuses_head", "dropout", BatchTailReusesHead, params={"p": 0.5}, kills=(_REPEATS,),
           bug_class="same mask on every device / replica / batch element",
           source="functorch vmap batching rule pytorch 92283 class (per-sample draws reused); " + _REVIEW),
    mutant("stale_mask_15pct", "dropout", StaleMask15Percent, params={"p": 0.5},
           kills=("masks_fresh_across_calls_by_fisher", _REPEATS),
           bug_class="same mask every call (RNG never advances)",
           source="tensorflow 29391 / 32543 class (masks not reset on some steps); " + _REVIEW),
    mutant("intermittent_rate", "dropout", IntermittentRate, params={"p": 0.5},
           kills=("drop_rate_matches_by_binomial",), bug_class="obvious slip", source=_REVIEW),
    mutant("position_skew", "dropout", PositionSkew, params={"p": 0.1},
           kills=("drop_rate_per_position_by_binomial",), bug_class="obvious slip", source=_REVIEW),
    mutant("abs_value", "dropout", AbsValue, params={"p": 0.5}, kills=("multiplier_values_exact",),
           bug_class="obvious slip", source=_REVIEW + "; value-dependent output"),
)
