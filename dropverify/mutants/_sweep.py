"""Corner-case mutants: correct in the default configuration, broken in one corner of the
configuration space (one per sweep axis). A single-configuration run at the defaults passes
them; a default ``--sweep`` must find each and shrink it to a configuration that still fails
(tests/meta/test_sweep_mutants.py). Their probe shapes are small so the test stays quick."""
from __future__ import annotations

from typing import Tuple

import numpy as np

from ..variants.dropblock import DropBlock2d
from ..variants.dropout import Dropout
from ._core import Mutant, mutant
from ._dropblock import EvenBlockOffByOne, GammaHeightOnly


class HalfPrecisionNoRescale(Dropout):
    """float16 kernel path forgets the 1/(1-p) rescale (other dtypes are right)."""

    def scale(self) -> float:
        return 1.0 if getattr(self, "_dtype", None) == np.float16 else super().scale()

    def _forward(self, x):
        self._dtype = x.dtype
        return super()._forward(x)


class NonContiguousHalvesRate(Dropout):
    """A non-contiguous input takes another kernel that drops at p / 2."""

    def _forward(self, x):
        self._rate = self.p if x.flags.c_contiguous else self.p / 2
        return super()._forward(x)

    def draw_keep(self, shape):
        return self.rng.random(self.mask_shape(shape)) >= getattr(self, "_rate", self.p)


class QuantisedThreshold(Dropout):
    """Uniform draws quantised to 8 bits: the drop threshold is round(p * 256) / 256, right at
    round p, 0 at p = 0.001 (nothing dropped) and 1 at p = 0.999."""

    def draw_keep(self, shape):
        u = self.rng.integers(0, 256, size=self.mask_shape(shape))
        return u >= int(round(self.p * 256))


class StreamWrapsAt2To20(Dropout):
    """The random stream wraps after 2^20 draws: element i reuses the draw of i mod 2^20, so a
    tensor beyond 2^20 elements repeats its mask (invisible at the default shapes)."""

    period = 2 ** 20

    def draw_keep(self, shape):
        n = int(np.prod(shape))
        draws = self.rng.random(min(n, self.period))
        return (np.resize(draws, n) >= self.p).reshape(shape)


class OddBatchTailCopiesHead(Dropout):
    """Masks drawn for pairs of batch items: with an odd batch the last item gets item 0's mask."""

    def draw_keep(self, shape):
        keep = self.rng.random(shape) >= self.p
        if shape and shape[0] % 2 == 1 and shape[0] > 1:
            keep[-1] = keep[0]
        return keep


class Float16BackwardFreshMask(Dropout):
    """float16 backward recomputes the mask from the generator (a fresh mask), other dtypes
    reuse the forward's."""

    def _backward(self, grad_out):
        if grad_out.dtype == np.float16 and self._saved[0] == "mask":
            _, keep, scale = self._saved
            fresh = self.rng.random(keep.shape) >= self.p
            return np.where(fresh, grad_out * grad_out.dtype.type(scale), grad_out.dtype.type(0))
        return super()._backward(grad_out)


class EvenBlockOnly(EvenBlockOffByOne):
    """DropBlock whose blocks are one cell short for even block sizes only (declared at an odd
    block size, where it is correct)."""


class HeightOnlyGamma(GammaHeightOnly):
    """DropBlock gamma from the map height only: right on square maps, wrong on non-square."""


class AbsValue(Dropout):
    """Loses the input's sign: y = |x| * m / (1 - p)."""

    def _forward(self, x):
        return super()._forward(np.abs(x))


_SMALL = (16, 8, 4, 4)
_SOURCE = "issue 9 corner cases (sweeps.md); the bug classes of bug-classes.md moved into one corner"

SWEEP_MUTANTS: Tuple[Mutant, ...] = (
    mutant("sweep_float16_no_rescale", "dropout", HalfPrecisionNoRescale, params={"p": 0.1}, shape=_SMALL,
           kills=("multiplier_values_exact",), bug_class="obvious slip", source=_SOURCE + ": dtype axis"),
    mutant("sweep_noncontiguous_rate", "dropout", NonContiguousHalvesRate, params={"p": 0.1}, shape=_SMALL,
           kills=("drop_rate_matches_by_binomial",), bug_class="values scrambled on unusual layouts",
           source=_SOURCE + ": layout axis (pytorch 47176 class)"),
    mutant("sweep_quantised_threshold", "dropout", QuantisedThreshold, params={"p": 0.1}, shape=_SMALL,
           kills=("drop_rate_matches_by_binomial",), bug_class="edge probabilities",
           source=_SOURCE + ": p axis (boltz 553 class: low-precision uniforms)"),
    mutant("sweep_stream_wraps", "dropout", StreamWrapsAt2To20, params={"p": 0.1}, shape=_SMALL,
           kills=("masks_independent_at_flat_offsets_by_fisher",),
           bug_class="same mask on every device / replica / batch element",
           source=_SOURCE + ": large-tensor axis (32-bit RNG offsets)"),
    mutant("sweep_odd_batch_tail", "dropout", OddBatchTailCopiesHead, params={"p": 0.1}, shape=_SMALL,
           kills=("masks_never_repeat_by_hash",), bug_class="same mask on every device / replica / batch element",
           source=_SOURCE + ": shape axis (odd batch sizes)"),
    mutant("sweep_float16_backward_fresh_mask", "dropout", Float16BackwardFreshMask, params={"p": 0.1},
           shape=_SMALL, kills=("gradient_uses_forward_mask",),
           bug_class="backward uses a different mask or scale than forward",
           source=_SOURCE + ": backward of one dtype (pytorch 190717 class)"),
    mutant("sweep_even_block_size", "dropblock_2d", EvenBlockOnly, params={"p": 0.2, "block_size": 3},
           shape=(16, 4, 9, 9), kills=("dropped_set_is_union_of_blocks",), bug_class="DropBlock gamma or geometry wrong",
           source=_SOURCE + ": variant parameter axis (torchvision drop_block2d even sizes)"),
    mutant("sweep_nonsquare_gamma", "dropblock_2d", HeightOnlyGamma, params={"p": 0.2, "block_size": 3},
           shape=(16, 4, 9, 9), kills=("gamma_matches_by_binomial",), bug_class="DropBlock gamma or geometry wrong",
           source=_SOURCE + ": shape axis (non-square maps; timm PR 2569 class)"),
    mutant("sweep_signed_abs", "dropout", AbsValue, params={"p": 0.1}, shape=_SMALL,
           kills=("multiplier_values_exact",), bug_class="obvious slip",
           source=_SOURCE + ": signed inputs (every probe is signed and wide-range, so every configuration sees it)"),
)
"""One mutant per sweep axis; ``kills`` names the check that must FAIL in the minimal configuration."""


def sweep_mutant(name: str) -> Mutant:
    """The sweep mutant called ``name`` (InvalidArgument otherwise)."""
    from ..errors import InvalidArgument
    for m in SWEEP_MUTANTS:
        if m.name == name:
            return m
    raise InvalidArgument(f"mutant={name!r}, but should be one of: {', '.join(m.name for m in SWEEP_MUTANTS)}")


__all__ = ["SWEEP_MUTANTS", "sweep_mutant", "DropBlock2d"]
