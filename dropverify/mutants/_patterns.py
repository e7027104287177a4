"""Call-pattern faults (issue 22): a layer that replays its masks after every validation pass, a
mask cache shared by every instance of a class — slips that a single seeded stream of training
calls on one instance never shows — and the graded adversaries that measure the call-pattern
checks (``benchmarks/issue22_patterns.py``). Each layer is the dropout reference with one slip."""
from __future__ import annotations

from typing import ClassVar, Dict, List, Tuple

import numpy as np

from ..variants.dropout import Dropout
from ._core import Mutant, mutant


class ReplaysAfterEval(Dropout):
    """Snapshots its generator's state at the first training call after (re)seeding and restores it
    on every eval -> train transition (``train()`` resets the stream): every validation pass is
    followed by the same masks. Each call alone, and any run of training calls, is correct dropout."""

    strike = 1.0      # chance that a given eval -> train transition restores the snapshot
    fraction = 1.0    # share of the units a restored stream replays (the rest drawn fresh)

    def train(self, mode: bool = True) -> "ReplaysAfterEval":
        if mode and not self.training and getattr(self, "_snap_rng", None) is self.rng:
            if self.strike >= 1.0 or self.rng.random() < self.strike:
                self._replay = np.random.default_rng()
                self._replay.bit_generator.state = self._snapshot
        return super().train(mode)

    def draw_keep(self, shape: Tuple[int, ...]) -> np.ndarray:
        if getattr(self, "_snap_rng", None) is not self.rng:
            self._snap_rng, self._snapshot, self._replay = self.rng, self.rng.bit_generator.state, None
        replay = getattr(self, "_replay", None)
        if replay is None:
            return super().draw_keep(shape)
        old = replay.random(self.mask_shape(shape)) >= self.p
        if self.fraction >= 1.0:
            return old
        fresh = super().draw_keep(shape)
        return np.where(self.rng.random(old.shape) < self.fraction, old, fresh)


class ReplaysSometimes(ReplaysAfterEval):
    """Adversary: restores the snapshot on a quarter of the eval -> train transitions only."""

    strike = 0.25


class ReplaysPartly(ReplaysAfterEval):
    """Adversary: after every eval pass a random 5 % of the units replay the snapshot's stream
    (agreement with the earlier masks 0.5 + 0.05 / 2 at p = 0.5), the rest are fresh."""

    fraction = 0.05


class ClassLevelMaskCache(Dropout):
    """A mask cache keyed by shape in a CLASS attribute: an instance reuses the mask another
    instance drew last (once), else draws and caches its own. One instance alone draws a fresh mask
    every call; two instances called in turn share every mask."""

    _cache: ClassVar[Dict[tuple, list]] = {}
    share = 1.0   # chance that an unconsumed mask of another instance is reused

    def draw_keep(self, shape: Tuple[int, ...]) -> np.ndarray:
        cache = type(self)._cache
        key = (type(self).__name__, tuple(self.mask_shape(shape)))
        entry = cache.get(key)
        if entry is not None and entry[1] != id(self) and not entry[2]:
            entry[2] = True
            if self.share >= 1.0 or self.rng.random() < self.share:
                return entry[0].copy()
        keep = super().draw_keep(shape)
        cache[key] = [keep.copy(), id(self), False]
        return keep


class SharesSometimes(ClassLevelMaskCache):
    """Adversary: reuses the other instance's mask on a quarter of the calls only."""

    _cache: ClassVar[Dict[tuple, list]] = {}
    share = 0.25


class SharesPartly(Dropout):
    """Adversary: instances draw from one class-level generator state for 5 % of the units (a
    shared cache of per-unit draws): the rest of each mask is the instance's own."""

    _pool: ClassVar[Dict[tuple, List[np.ndarray]]] = {}
    fraction = 0.05

    def draw_keep(self, shape: Tuple[int, ...]) -> np.ndarray:
        mshape = tuple(self.mask_shape(shape))
        own = super().draw_keep(shape)
        pool = type(self)._pool.setdefault(mshape, [])
        if pool and pool[-1][1] != id(self):
            shared = pool.pop()[0]
            return np.where(self.rng.random(mshape) < self.fraction, shared, own)
        pool.append((own.copy(), id(self)))
        return own


_SOURCE = "issue 22 (a user's unseen broken layers: realistic call patterns)"

MUTANTS: Tuple[Mutant, ...] = (
    mutant("replays_masks_after_eval", "dropout", ReplaysAfterEval, params={"p": 0.5},
           kills=("masks_fresh_after_eval_by_hash",), bug_class="same mask every call (RNG never advances)",
           source=_SOURCE + "; every validation pass replays the same masks"),
    mutant("class_level_mask_cache", "dropout", ClassLevelMaskCache, params={"p": 0.5},
           kills=("instances_draw_independent_masks_by_hash",),
           bug_class="same mask on every device / replica / batch element", source=_SOURCE),
)
