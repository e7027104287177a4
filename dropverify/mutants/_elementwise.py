"""Mutants of the element-wise family: dropout, Gaussian, alpha and feature-alpha dropout.

Each class is the reference with one deliberate slip; the docstring's first paragraph says
what it is and becomes the mutant's ``notes``.
"""
from __future__ import annotations

import math
from typing import Tuple

import numpy as np

from ..contracts import inverted_scale
from ..variants.dropout import (ALPHA_PRIME, AlphaDropout, Dropout, FeatureAlphaDropout, GaussianDropout,
                                alpha_affine)
from ._core import Mutant, mutant


# ------------------------------------------------------------------------------ scale slips

class ScaleByP(Dropout):
    """Kept units scaled by p instead of 1/(1-p)."""

    def scale(self) -> float:
        return self.p


class NoRescale(Dropout):
    """Kept units left unscaled (forgot the inverted-dropout 1/(1-p))."""

    def scale(self) -> float:
        return 1.0


class ScaleOffTwoPercent(Dropout):
    """Scale 1.02/(1-p): a 2 % bias (e.g. a rounded reciprocal in a fused kernel) that only
    an exact value check or a well-powered mean test sees."""

    def scale(self) -> float:
        return 1.02 * inverted_scale(self.p)


class KeepDropSwapped(Dropout):
    """Keep mask drawn as ``u < p``: keeps with probability p and drops with 1-p (scale still
    1/(1-p))."""

    def draw_keep(self, shape: Tuple[int, ...]) -> np.ndarray:
        return self.rng.random(self.mask_shape(shape)) < self.p


class SilentlyNoEffect(Dropout):
    """Dropout applied only between stacked layers: with a single layer the training forward
    is the identity, silently (expectation preserved, so only the rate and the values see it)."""

    def _forward(self, x: np.ndarray) -> np.ndarray:
        self._saved = ("identity", x.shape)
        return x


# ------------------------------------------------------------------------------ randomness slips

class ReseededEveryCall(Dropout):
    """Re-seeds its own generator with a constant on every call: the same mask every call and
    whatever seed the caller sets."""

    def draw_keep(self, shape: Tuple[int, ...]) -> np.ndarray:
        self.rng = np.random.default_rng(1234)
        return super().draw_keep(shape)


class MaskSharedAcrossBatch(Dropout):
    """One mask of shape (1, ...) broadcast over the batch: every sample gets the same mask."""

    def mask_shape(self, shape: Tuple[int, ...]) -> Tuple[int, ...]:
        return (1,) + tuple(shape[1:])


class RngOffsetOverlap(Dropout):
    """Counter-based RNG whose offset advances by 1 per 'thread' although each thread uses 4
    draws: thread t (elements 4t..4t+3) reads draws t..t+3, so element 4t+j shares its draw
    with elements 4t+j+3, 4t+j+6 ... (3 apart). Each element alone is Bernoulli(1-p)."""

    def draw_keep(self, shape: Tuple[int, ...]) -> np.ndarray:
        mshape = self.mask_shape(shape)
        n = int(np.prod(mshape, dtype=np.int64))
        u = self.rng.random(-(-n // 4) + 3)
        idx = np.arange(n)
        return (u[idx // 4 + idx % 4] >= self.p).reshape(mshape)


class MaskPoolCycled(Dropout):
    """Two masks drawn on the first call after (re)seeding, then cycled A, B, A, B ... (a
    mask cache per traced function, two traces alternating): consecutive calls differ, calls
    two apart repeat."""

    def draw_keep(self, shape: Tuple[int, ...]) -> np.ndarray:
        if getattr(self, "_pool_rng", None) is not self.rng:
            self._pool_rng, self._pool = self.rng, {}
        key = tuple(shape)
        if key not in self._pool:
            self._pool[key] = [[super().draw_keep(shape), super().draw_keep(shape)], 0]
        pool = self._pool[key]
        keep = pool[0][pool[1] % 2]
        pool[1] += 1
        return keep


class TensorParallelSameSeed(Dropout):
    """Two tensor-parallel shards of the channel axis (axis 1) seeded alike: the mask drawn
    for channels 0..C/2-1 is repeated for channels C/2..C-1 (no model-parallel RNG offset)."""

    def mask_shape(self, shape: Tuple[int, ...]) -> Tuple[int, ...]:
        return tuple(shape)

    def draw_keep(self, shape: Tuple[int, ...]) -> np.ndarray:
        shape = tuple(shape)
        if len(shape) < 2 or shape[1] % 2:
            return super().draw_keep(shape)
        half = (shape[0], shape[1] // 2) + shape[2:]
        shard = self.rng.random(half) >= self.p
        return np.concatenate([shard, shard], axis=1)


# ------------------------------------------------------------------------------ gradient slips

class BackwardFreshMask(Dropout):
    """Backward recomputes the mask from the generator instead of using the saved one, so it
    draws a new mask."""

    def _backward(self, grad_out: np.ndarray) -> np.ndarray:
        if self._saved[0] == "identity":
            return grad_out
        _, _, scale = self._saved
        keep = self.draw_keep(grad_out.shape)
        return np.where(keep, grad_out * grad_out.dtype.type(scale), grad_out.dtype.type(0))


class BackwardScaledByP(Dropout):
    """Backward multiplies the forward mask by p instead of 1/(1-p)."""

    def _backward(self, grad_out: np.ndarray) -> np.ndarray:
        if self._saved[0] == "identity":
            return grad_out
        _, keep, _ = self._saved
        return np.where(keep, grad_out * grad_out.dtype.type(self.p), grad_out.dtype.type(0))


# ------------------------------------------------------------------------------ mode and edge slips

class EvalStillDrops(Dropout):
    """Training hard-coded to True inside forward: eval mode still drops."""

    def _forward(self, x: np.ndarray) -> np.ndarray:
        mode, self.training = self.training, True
        try:
            return super()._forward(x)
        finally:
            self.training = mode


class POneGivesNaN(Dropout):
    """``y = x * keep / (1 - p)`` with no p = 1 special case: 0 / 0 gives NaN outputs and
    NaN gradients at p = 1."""

    def _forward(self, x: np.ndarray) -> np.ndarray:
        if not self.training or self.p == 0.0:
            self._saved = ("identity", x.shape)
            return x
        keep = self.draw_keep(x.shape)
        self._saved = ("mask", keep, None)
        with np.errstate(divide="ignore", invalid="ignore"):
            return (x * keep) / x.dtype.type(1.0 - self.p)

    def _backward(self, grad_out: np.ndarray) -> np.ndarray:
        if self._saved[0] == "identity":
            return grad_out
        with np.errstate(divide="ignore", invalid="ignore"):
            return (grad_out * self._saved[1]) / grad_out.dtype.type(1.0 - self.p)


class LowPrecisionUniform(Dropout):
    """Uniforms quantised to 11 bits (a float16 rand) and dropped where ``u <= p``, with no
    p = 0 short cut: u hits exactly 0 with probability 2^-11, so p = 0 still drops ~0.05 %."""

    def draw_keep(self, shape: Tuple[int, ...]) -> np.ndarray:
        u = np.floor(self.rng.random(self.mask_shape(shape)) * 2048.0) / 2048.0
        return ~(u <= self.p)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        if not self.training:
            self._saved = ("identity", x.shape)
            return x
        keep = self.draw_keep(x.shape)
        scale = x.dtype.type(self.scale())
        self._saved = ("mask", keep, scale)
        return np.where(keep, x * scale, x.dtype.type(0))


class RowAmaxScaled(Dropout):
    """Computes on x / amax(|row|) and multiplies amax back (the per-row scaling of a
    quantised fused kernel): one NaN or inf in a row turns the whole row into NaN."""

    def _forward(self, x: np.ndarray) -> np.ndarray:
        if not self.training or self.p == 0.0:
            self._saved = ("identity", x.shape)
            return x
        keep = self.draw_keep(x.shape)
        scale = x.dtype.type(self.scale())
        self._saved = ("mask", keep, scale)
        amax = np.max(np.abs(x), axis=-1, keepdims=True) if x.size else np.ones_like(x)
        with np.errstate(divide="ignore", invalid="ignore"):
            return (np.where(keep, (x / amax) * scale, x.dtype.type(0)) * amax).astype(x.dtype)


class MemoryOrderScramble(Dropout):
    """Flattens x in memory order (``ravel(order='K')``) and reshapes the result in C order:
    right for C-contiguous input, values scrambled for a Fortran-ordered (transposed) one."""

    def _forward(self, x: np.ndarray) -> np.ndarray:
        if not self.training or self.p == 0.0:
            self._saved = ("identity", x.shape)
            return x
        flat = x.ravel(order="K")
        keep = self.draw_keep(flat.shape)
        scale = x.dtype.type(self.scale())
        self._saved = ("mask", keep.reshape(x.shape), scale)
        return np.where(keep, flat * scale, x.dtype.type(0)).reshape(x.shape)


# ------------------------------------------------------------------------------ Gaussian / alpha

class GaussianVarianceP(GaussianDropout):
    """Gaussian multiplier N(1, p) (sigma = sqrt(p)) instead of N(1, p/(1-p))."""

    def _forward(self, x: np.ndarray) -> np.ndarray:
        if not self.training or self.p == 0.0:
            self._saved = ("identity",)
            return x
        m = (1.0 + math.sqrt(self.p) * self.rng.standard_normal(x.shape)).astype(x.dtype)
        self._saved = ("noise", m)
        return x * m


class GaussianCachedNoise(GaussianDropout):
    """Draws the Gaussian multiplier on the first call for a shape and reuses it forever."""

    def _forward(self, x: np.ndarray) -> np.ndarray:
        if not self.training or self.p == 0.0:
            self._saved = ("identity",)
            return x
        cache = self.__dict__.setdefault("_noise", {})
        key = (x.shape, x.dtype.str)
        if key not in cache:
            cache[key] = (1.0 + math.sqrt(self.p / (1.0 - self.p)) * self.rng.standard_normal(x.shape)).astype(x.dtype)
        m = cache[key]
        self._saved = ("noise", m)
        return x * m


class AlphaWrongB(AlphaDropout):
    """Affine offset b = -alpha' p (the factor a left out of b = -a alpha' p)."""

    def _forward(self, x: np.ndarray) -> np.ndarray:
        if not self.training or self.p == 0.0 or self.p >= 1.0:
            return super()._forward(x)
        keep = self.draw_keep(x.shape)
        a, _ = alpha_affine(self.p)
        b = -ALPHA_PRIME * self.p
        y = np.where(keep, a * x.astype(np.float64) + b, a * ALPHA_PRIME + b)
        self._saved = ("mask", keep, a)
        return y.astype(x.dtype)


class FeatureAlphaPerElement(FeatureAlphaDropout):
    """Feature alpha dropout drawing one mask value per element (plain alpha dropout), not
    one per (sample, channel)."""

    def mask_shape(self, shape: Tuple[int, ...]) -> Tuple[int, ...]:
        return tuple(shape)


# ------------------------------------------------------------------------------ the records

_VAL = "multiplier_values_exact"
_MEAN = "expectation_matches_by_t_test"
_GRAD = ("gradient_uses_forward_mask", "gradient_matches_finite_differences")

MUTANTS: Tuple[Mutant, ...] = (
    mutant("dropout_scale_p", "dropout", ScaleByP, params={"p": 0.3}, kills=(_VAL, _MEAN),
           bug_class="obvious slip",
           source="apex PR 816 (p used where 1/(1-p) belongs; here in the forward)"),
    mutant("dropout_no_rescale", "dropout", NoRescale, params={"p": 0.3}, kills=(_VAL, _MEAN),
           bug_class="obvious slip", source="obvious slip (inverted scaling forgotten)"),
    mutant("dropout_scale_off_2pct", "dropout", ScaleOffTwoPercent, params={"p": 0.5}, kills=(_VAL, _MEAN),
           bug_class="obvious slip", source="obvious slip (2 % scale bias; only a well-powered test sees it)"),
    mutant("dropout_keep_drop_swapped", "dropout", KeepDropSwapped, params={"p": 0.2},
           kills=("drop_rate_matches_by_binomial", _MEAN),
           bug_class="obvious slip", source="obvious slip (keep probability confused with drop probability)"),
    mutant("dropout_silently_no_effect", "dropout", SilentlyNoEffect, params={"p": 0.3},
           kills=("drop_rate_matches_by_binomial", "multiplier_values_exact"),
           bug_class="dropout silently has no effect",
           source="tensorflow 6466 (CudnnLSTM one-layer dropout ignored); mxnet 10304"),
    mutant("dropout_reseeded_every_call", "dropout", ReseededEveryCall, params={"p": 0.5},
           kills=("masks_fresh_across_calls_by_fisher", "masks_independent_across_seeds_by_fisher"),
           bug_class="same mask every call (RNG never advances)",
           source="flash-attention 314 (zero RNG offset); keras 18426 (seed fixed at trace time)"),
    mutant("dropout_mask_shared_across_batch", "dropout", MaskSharedAcrossBatch, params={"p": 0.5},
           kills=("masks_independent_along_axis0_by_fisher",),
           bug_class="same mask on every device / replica / batch element",
           source="transformers 31412; functorch vmap batching rule pytorch 92283"),
    mutant("dropout_rng_offset_overlap", "dropout", RngOffsetOverlap, params={"p": 0.5},
           kills=("masks_independent_along_axis3_by_fisher",),
           bug_class="same mask on every device / replica / batch element",
           source="flash-attention 314 / xformers PR 755 class (RNG offset arithmetic): draws reused 3 apart"),
    mutant("dropout_mask_pool_cycled", "dropout", MaskPoolCycled, params={"p": 0.5},
           kills=("masks_fresh_across_calls_by_fisher",), bug_class="same mask every call (RNG never advances)",
           source="keras 18426 class (masks fixed at trace time; two traces alternate)"),
    mutant("dropout_tensor_parallel_same_seed", "dropout", TensorParallelSameSeed, params={"p": 0.5},
           kills=("masks_independent_along_axis1_by_fisher",),
           bug_class="same mask on every device / replica / batch element",
           source="accelerate 114 / transformers 31412 (same mask on all ranks), here on channel shards"),
    mutant("dropout_backward_fresh_mask", "dropout", BackwardFreshMask, params={"p": 0.5}, kills=_GRAD,
           bug_class="backward uses a different mask or scale than forward",
           source="pytorch 190717 (recompute draws a new mask); OLMo-core PR 828"),
    mutant("dropout_backward_scaled_by_p", "dropout", BackwardScaledByP, params={"p": 0.3}, kills=_GRAD,
           bug_class="backward uses a different mask or scale than forward", source="apex PR 816"),
    mutant("dropout_eval_still_drops", "dropout", EvalStillDrops, params={"p": 0.5},
           kills=("eval_mode_deterministic_and_exact",), bug_class="still dropping in eval mode",
           source="awd-lstm-lm 72 (WeightDrop hard-codes training=True); pytorch 124464"),
    mutant("dropout_p_one_nan", "dropout", POneGivesNaN, params={"p": 0.5},
           kills=("p_one_gives_zeros_with_finite_gradients",), bug_class="edge probabilities",
           source="flax PR 2055 (rate 1 gave NaN); pytorch 100025"),
    mutant("dropout_p_zero_low_precision_uniform", "dropout", LowPrecisionUniform, params={"p": 0.5},
           kills=("p_zero_is_exact_identity",), bug_class="edge probabilities",
           source="boltz 553 (bf16 rand hits exactly 0, so p=0 still drops)"),
    mutant("dropout_nan_contaminates_row", "dropout", RowAmaxScaled, params={"p": 0.5},
           kills=("nonfinite_inputs_leave_others_untouched",), bug_class="non-finite inputs",
           source="pytorch 59421 (non-finite input handling differs by kernel)"),
    mutant("dropout_values_scrambled_transposed", "dropout", MemoryOrderScramble, params={"p": 0.5},
           kills=(f"{_VAL}[transposed]",), bug_class="values scrambled on unusual layouts",
           source="pytorch 47176 (non-contiguous input); pytorch 174078 (transposed tensor)"),
    mutant("gaussian_dropout_variance_p", "gaussian_dropout", GaussianVarianceP, params={"p": 0.5},
           kills=("variance_matches_by_t_test",), bug_class="obvious slip",
           source="obvious slip (noise variance p instead of p/(1-p); Keras documents sqrt(rate/(1-rate)))"),
    mutant("gaussian_dropout_noise_cached", "gaussian_dropout", GaussianCachedNoise, params={"p": 0.5},
           kills=("masks_fresh_across_calls_by_fisher",), bug_class="same mask every call (RNG never advances)",
           source="tensorflow 29391 / 32543 (dropout masks never reset)"),
    mutant("alpha_dropout_wrong_b", "alpha_dropout", AlphaWrongB, params={"p": 0.5}, kills=(_VAL, _MEAN),
           bug_class="obvious slip", source="obvious slip (Klambauer et al. 2017: b = -a alpha' p, a dropped)"),
    mutant("feature_alpha_dropout_per_element", "feature_alpha_dropout", FeatureAlphaPerElement,
           params={"p": 0.5}, kills=("mask_constant_along_shared_axes",),
           bug_class="mask shared along the wrong axis", source="pytorch 69960 (FeatureAlphaDropout axes)"),
)
