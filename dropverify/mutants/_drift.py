"""Faults that only a long look at the stream shows (issue 22): draws reused two calls later by
interleaved generators, a drop rate that warms up over the first calls, a drop rate that
creeps up over thousands of calls. Each passes the checks that compare neighbouring calls or
read the mean rate of the first calls; each is caught by one statistic (its ``kills``).

Every random choice is drawn from the layer's own generator (``self.rng``), so re-seeding
reproduces the mutant exactly; call counters count calls per shape since the last seeding.
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

from ..variants.dropout import Dropout
from ._core import Mutant, mutant


class _Counted(Dropout):
    """Dropout with a per-shape call counter, reset when the layer is re-seeded."""

    def _tick(self, shape: Tuple[int, ...]) -> int:
        if getattr(self, "_count_rng", None) is not self.rng:
            self._count_rng, self._counts = self.rng, {}
        counts: Dict[Tuple[int, ...], int] = self._counts
        key = tuple(shape)
        t = counts.get(key, 0)
        counts[key] = t + 1
        return t


class InterleavedShiftedCounters(_Counted):
    """Two random streams used in turn (even calls from one, odd calls from the other), each
    advanced by STEP draws per call instead of the numel: call t + 2's draw for element j is
    call t's draw for element j + STEP. Neighbouring calls come from different streams, so
    call t + 1 never resembles call t."""

    STEP = 20000

    def draw_keep(self, shape: Tuple[int, ...]) -> np.ndarray:
        mshape = self.mask_shape(shape)
        n = int(np.prod(mshape, dtype=np.int64))
        g = self._tick(shape) % 2
        if getattr(self, "_tails_rng", None) is not self.rng:  # re-seeding restarts both streams
            self._tails_rng, self._tails = self.rng, {}
        tails: Dict[Tuple[int, int], np.ndarray] = self._tails
        tail = tails.get((g, n))
        if tail is None:
            u = self.rng.random(n)
        else:
            step = min(self.STEP, n)
            u = np.concatenate([tail[step:], self.rng.random(step)])
        tails[(g, n)] = u
        return (u >= self.p).reshape(mshape)


class WarmUpRate(_Counted):
    """The drop rate ramps up linearly from 0 to p over the first WARM_UP calls since seeding
    (a rate schedule meant for the optimiser's warm-up applied to dropout), scaled by 1/(1-p)
    throughout: every later call is correct dropout."""

    WARM_UP = 500

    def draw_keep(self, shape: Tuple[int, ...]) -> np.ndarray:
        t = self._tick(shape)
        rate = self.p * min(1.0, t / self.WARM_UP)
        return self.rng.random(self.mask_shape(shape)) >= rate


class CreepingRate(_Counted):
    """The drop rate creeps up linearly from p to (1 + CREEP) p over the first SPAN calls, then
    stays there (a rate recomputed from a running statistic that accumulates), scaled by
    1/(1-p) throughout: neighbouring calls look alike, the stream does not."""

    CREEP = 0.4
    SPAN = 4000

    def draw_keep(self, shape: Tuple[int, ...]) -> np.ndarray:
        t = self._tick(shape)
        rate = min(1.0, self.p * (1.0 + self.CREEP * min(1.0, t / self.SPAN)))
        return self.rng.random(self.mask_shape(shape)) >= rate


_SRC = "issue 22 (faults outside the lag-1 and mean-rate statistics)"
DRIFT = "drop_rate_steady_over_stream_by_windows"
"""The drift check's name (also :data:`dropverify.checks.drift.NAME`)."""

MUTANTS: Tuple[Mutant, ...] = (
    mutant("interleaved_counters_lag2", "dropout", InterleavedShiftedCounters, params={"p": 0.3},
           shape=(16, 32, 8, 8), kills=("draws_not_reused_shifted_across_calls",),
           bug_class="same mask every call (RNG never advances)",
           source=_SRC + "; two generators interleaved, each with a Philox offset advanced by the wrong numel"),
    mutant("warm_up_rate_500", "dropout", WarmUpRate, params={"p": 0.3}, shape=(16, 64), kills=(DRIFT,),
           bug_class="obvious slip", source=_SRC + "; a warm-up schedule applied to the drop rate"),
    mutant("creeping_rate", "dropout", CreepingRate, params={"p": 0.3}, shape=(16, 64), kills=(DRIFT,),
           bug_class="obvious slip", source=_SRC + "; a rate that creeps up over thousands of calls"),
)


# ------------------------------------------------------------------------------ adversaries (tests/meta)

WINDOWS = 8  # the drift check's windows (dropverify.checks.drift.WINDOWS)


class DriftBeyondMargin(_Counted):
    """A linear drift centred on p over the SPAN calls the drift check reads, so the mean rate
    is p: its first and last windows of SPAN / 8 calls deviate from the stream's rate by
    EXCESS x the drift check's default margin (0.1 min(p, 1 - p)): a PASS of it is a false pass."""

    SPAN = 400
    EXCESS = 1.1
    REL = 0.1  # the drift check's margin: 2 x rate_rel x min(p, 1 - p)

    def _delta(self) -> float:
        # window w's mean deviates by about delta (w + 1/2 - WINDOWS/2) / WINDOWS: 7/16 delta at the ends
        return self.EXCESS * self.REL * min(self.p, 1 - self.p) * 2 * WINDOWS / (WINDOWS - 1)

    def draw_keep(self, shape: Tuple[int, ...]) -> np.ndarray:
        t = self._tick(shape)
        rate = self.p + self._delta() * ((t + 0.5) / self.SPAN - 0.5)
        return self.rng.random(self.mask_shape(shape)) >= rate


class WarmUpBeyondMargin(_Counted):
    """The first SPAN / 8 calls drop at p - delta, the rest at p, with delta (1 - 1/8) = EXCESS x
    the default margin: the first window of the drift check deviates from the stream's rate by
    EXCESS x the margin."""

    SPAN = 400
    EXCESS = 1.1
    REL = 0.1  # the drift check's margin: 2 x rate_rel x min(p, 1 - p)

    def draw_keep(self, shape: Tuple[int, ...]) -> np.ndarray:
        t = self._tick(shape)
        delta = self.EXCESS * self.REL * min(self.p, 1 - self.p) * WINDOWS / (WINDOWS - 1)
        rate = self.p - delta if t < self.SPAN // WINDOWS else self.p
        return self.rng.random(self.mask_shape(shape)) >= rate


class LagReuseOnQuarter(_Counted):
    """On a quarter of the calls (its own draw per call), call t reuses call t - LAG's uniforms
    shifted by SHIFT (element j = call t - LAG's element j + SHIFT, fresh draws past the end);
    every other call is fresh: reuse at lag 3 in a fraction of the calls."""

    LAG = 3
    SHIFT = 3000
    STRIKE = 0.25

    def draw_keep(self, shape: Tuple[int, ...]) -> np.ndarray:
        mshape = self.mask_shape(shape)
        n = int(np.prod(mshape, dtype=np.int64))
        t = self._tick(shape)
        if getattr(self, "_hist_rng", None) is not self.rng:
            self._hist_rng, self._hist = self.rng, {}
        hist: Dict[int, np.ndarray] = self._hist
        old = hist.get(t - self.LAG)
        if old is not None and old.size == n and self.rng.random() < self.STRIKE:
            step = min(self.SHIFT, n)
            u = np.concatenate([old[step:], self.rng.random(step)])
        else:
            u = self.rng.random(n)
        hist[t] = u
        hist.pop(t - self.LAG, None)
        return (u >= self.p).reshape(mshape)
