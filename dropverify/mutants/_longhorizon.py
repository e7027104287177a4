"""Faults outside the short-horizon statistics: masks that repeat after many calls, freeze
after a warm-up, reuse draws at an odd flat offset or a shifted counter, or wander in rate
from call to call. Each passes every check that looks at a few lags, a few offsets or the
mean rate; each is caught by exactly one long-horizon statistic (its ``kills``).

Every random choice is drawn from the layer's own generator (``self.rng``), so re-seeding
reproduces the mutant exactly; call counters count calls on the instance since it was built.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np

from ..variants.dropout import Dropout
from ._core import Mutant, mutant


class MaskBank256(Dropout):
    """A bank of 256 cached masks replayed in turn (a mask cache indexed by a call counter
    modulo 256): calls t and t + 256 carry the same mask; any 256 consecutive calls are
    independent draws."""

    BANK = 256

    def draw_keep(self, shape: Tuple[int, ...]) -> np.ndarray:
        if getattr(self, "_bank_rng", None) is not self.rng:  # re-seeding clears the bank
            self._bank_rng, self._bank, self._count = self.rng, {}, {}
        bank: Dict[Tuple[int, ...], List[np.ndarray]] = self._bank
        count: Dict[Tuple[int, ...], int] = self._count
        key = tuple(shape)
        t = count.get(key, 0)
        count[key] = t + 1
        masks = bank.setdefault(key, [])
        if len(masks) < self.BANK:
            masks.append(super().draw_keep(shape))
            return masks[-1]
        return masks[t % self.BANK]


class FrozenAfter1000(Dropout):
    """The mask freezes after 1000 calls since seeding (a generator state that stops advancing
    once a buffer of 1000 offsets allocated at seeding is used up): calls 999, 1000, 1001, ...
    all carry call 999's mask."""

    WARM_UP = 1000

    def draw_keep(self, shape: Tuple[int, ...]) -> np.ndarray:
        if getattr(self, "_state_rng", None) is not self.rng:  # re-seeding resets the offset buffer
            self._state_rng, self._calls, self._frozen = self.rng, {}, {}
        key = tuple(shape)
        t = self._calls.get(key, 0)
        self._calls[key] = t + 1
        if t < self.WARM_UP or key not in self._frozen:
            self._frozen[key] = super().draw_keep(shape)
        return self._frozen[key]


class SharedDrawAtLag96(Dropout):
    """One draw serves two elements 96 apart: in the flattened mask, each block of 192
    elements reuses its first 96 draws for its last 96 (a vectorised kernel whose second
    half-tile re-reads the first half's random numbers). No single axis and no power-of-two
    offset shows it."""

    LAG = 96

    def draw_keep(self, shape: Tuple[int, ...]) -> np.ndarray:
        keep = super().draw_keep(shape).reshape(-1)
        full = (keep.size // (2 * self.LAG)) * 2 * self.LAG
        blocks = keep[:full].reshape(-1, 2, self.LAG)
        blocks[:, 1, :] = blocks[:, 0, :]
        return keep.reshape(self.mask_shape(shape))


class ShiftedCounter(Dropout):
    """The random counter advances by 4000 per call instead of the numel: call t + 1's draw
    for element j is call t's draw for element j + 4000 (a Philox offset increment computed
    from the wrong size)."""

    STEP = 4000

    def draw_keep(self, shape: Tuple[int, ...]) -> np.ndarray:
        mshape = self.mask_shape(shape)
        n = int(np.prod(mshape, dtype=np.int64))
        tail = self.__dict__.get("_tail")
        if tail is None or tail.size != n or getattr(self, "_tail_rng", None) is not self.rng:
            u = self.rng.random(n)
        else:
            step = min(self.STEP, n)
            u = np.concatenate([tail[step:], self.rng.random(step)])
        self._tail, self._tail_rng = u, self.rng
        return (u >= self.p).reshape(mshape)


class OverDispersedRate(Dropout):
    """Each call drops at its own rate p_t = p + tau Z (Z standard normal, tau the binomial
    standard deviation of a call's rate, sqrt(p (1 - p) / n)): the mean rate is p and every
    call alone looks like dropout, but the per-call count varies twice as much as binomial
    (a rate read from a noisy, per-step schedule)."""

    def draw_keep(self, shape: Tuple[int, ...]) -> np.ndarray:
        mshape = self.mask_shape(shape)
        n = max(int(np.prod(mshape, dtype=np.int64)), 1)
        tau = (self.p * (1 - self.p) / n) ** 0.5
        rate = float(np.clip(self.p + tau * self.rng.standard_normal(), 0.0, 1.0))
        return self.rng.random(mshape) >= rate


_SRC = "issue 16 (new broken layers outside the short-horizon statistics)"

MUTANTS: Tuple[Mutant, ...] = (
    mutant("mask_bank_256", "dropout", MaskBank256, params={"p": 0.5}, shape=(8, 64),
           kills=("masks_never_repeat_over_stream_by_hash",), bug_class="same mask every call (RNG never advances)",
           source=_SRC + "; mask caches keyed by a step counter"),
    mutant("frozen_after_1000", "dropout", FrozenAfter1000, params={"p": 0.5}, shape=(8, 64),
           kills=("masks_never_repeat_over_stream_by_hash",), bug_class="same mask every call (RNG never advances)",
           source=_SRC + "; tensorflow 29391 class (state stops advancing)"),
    mutant("shared_draw_at_lag_96", "dropout", SharedDrawAtLag96, params={"p": 0.3}, shape=(16, 8, 8, 8),
           kills=("draws_not_shared_at_any_flat_lag",), bug_class="same mask on every device / replica / batch element",
           source=_SRC + "; vectorised kernels re-reading random numbers"),
    mutant("shifted_counter_4000", "dropout", ShiftedCounter, params={"p": 0.3}, shape=(16, 32, 4, 4),
           kills=("draws_not_reused_shifted_across_calls",), bug_class="same mask every call (RNG never advances)",
           source=_SRC + "; Philox offset advanced by the wrong numel"),
    mutant("over_dispersed_rate", "dropout", OverDispersedRate, params={"p": 0.5}, shape=(16, 64),
           kills=("per_call_rate_dispersion_by_chi_square",), bug_class="obvious slip",
           source=_SRC + "; a per-step noisy rate"),
)
