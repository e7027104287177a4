"""Slips at the edges of the contract that no statistic sees: p out of range accepted, the
dtype widened, an empty batch refused, a seed that does not reproduce, seeded streams that
overlap one call apart, a depth schedule without its linear decay. One mutant per check that
had none, so that every check in the registry has a slip only it (with its consequences) is
there to catch (``tests/test_registry.py`` requires one).
"""
from __future__ import annotations

from typing import Any, Tuple

import numpy as np

from ..variants.depth_network import StochasticDepthNetwork
from ..variants.dropout import Dropout
from ._core import Mutant, mutant


def clamped_p_dropout(**params: Any) -> Dropout:
    """p outside [0, 1] is clamped into it instead of refused (a `min(max(p, 0), 1)` in the
    constructor): `Dropout(p=1.5)` silently becomes `Dropout(p=1)`."""
    p = float(params.get("p", 0.5))
    return Dropout(**{**params, "p": min(max(p, 0.0), 1.0)})


class WidenedDtype(Dropout):
    """The output is computed and returned in float64 whatever the input dtype (a mask built
    in float64 multiplied in without a cast back)."""

    def forward(self, *inputs: Any) -> np.ndarray:
        return np.asarray(super().forward(*inputs), np.float64)


class EmptyBatchRefused(Dropout):
    """An empty batch raises (a kernel launch with a zero-sized grid refused)."""

    def forward(self, *inputs: Any) -> np.ndarray:
        if np.size(inputs[0]) == 0:
            raise ValueError("cannot launch a kernel on an empty tensor")
        return super().forward(*inputs)


class UnseededDraws(Dropout):
    """Masks come from a generator seeded from the operating system's entropy once, at
    construction: seeding the layer changes nothing, so no run can be reproduced."""

    def draw_keep(self, shape: Tuple[int, ...]) -> np.ndarray:
        if getattr(self, "_entropy", None) is None:
            self._entropy = np.random.default_rng()
        return self._entropy.random(self.mask_shape(shape)) >= self.p


class OverlappingSeedStreams(Dropout):
    """Call k after seeding with s draws from a generator seeded with s + k (a per-step seed
    computed as base seed + step): call 1 under seed s is call 0 under seed s + 1, so replicas
    seeded base + rank replay each other's masks one step apart."""

    def draw_keep(self, shape: Tuple[int, ...]) -> np.ndarray:
        if getattr(self, "_seeded_by", None) is not self.rng:  # the target re-seeded: restart the count
            self._seeded_by, self._step = self.rng, 0
            self._base = int(self.rng.bit_generator.seed_seq.entropy or 0)
        step = self._step
        self._step += 1
        return np.random.default_rng(self._base + step).random(self.mask_shape(shape)) >= self.p


class UniformDepthSchedule(StochasticDepthNetwork):
    """Every block is dropped with the last block's rate p (no linear decay over depth): the
    network is shallower than the schedule promises, L (1 - p) blocks instead of L - p (L + 1) / 2."""

    def _forward(self, x: np.ndarray) -> np.ndarray:
        if not self.training:
            return super()._forward(x)
        keep = self.rng.random(x.shape) >= self.p
        self._saved = ("train",)
        return np.where(keep, x + np.float64(1.0) / (1.0 - self.p), x).astype(x.dtype)


_SRC = "issue 18 (every check has a mutant)"

MUTANTS: Tuple[Mutant, ...] = (
    mutant("invalid_p_clamped", "dropout", clamped_p_dropout, params={"p": 0.3}, kills=("invalid_p_rejected",),
           bug_class="obvious slip", source=_SRC + "; constructors that clip the rate"),
    mutant("dtype_widened_to_float64", "dropout", WidenedDtype, params={"p": 0.3},
           kills=("dtype_and_shape_preserved",), bug_class="obvious slip",
           source=_SRC + "; a float64 mask multiplied in without a cast"),
    mutant("empty_batch_refused", "dropout", EmptyBatchRefused, params={"p": 0.3}, kills=("empty_batch_works",),
           bug_class="obvious slip", source=_SRC + "; zero-sized launches"),
    mutant("unseeded_draws", "dropout", UnseededDraws, params={"p": 0.3}, kills=("same_seed_reproduces",),
           bug_class="obvious slip", source=_SRC + "; a generator created once from OS entropy"),
    mutant("seed_streams_overlap", "dropout", OverlappingSeedStreams, params={"p": 0.3}, shape=(16, 8, 8, 8),
           kills=("seed_streams_do_not_overlap_by_fisher",),
           bug_class="same mask on every device / replica / batch element",
           source=_SRC + "; per-step seeds computed as base seed + step"),
    mutant("depth_schedule_uniform", "stochastic_depth_network", UniformDepthSchedule, params={"p": 0.5},
           kills=("expected_depth_matches_by_t_test",), bug_class="obvious slip",
           source=_SRC + "; stochastic depth with one rate for every block"),
)
