"""Element-wise dropout family: standard (inverted), Gaussian, alpha and feature-alpha dropout."""
from __future__ import annotations

import math
from typing import Any, Tuple

import numpy as np

from ..contracts import (inverted_kept, zero_value, P_SPEC, Contract, Inputs, Params, Shape, identity_eval, all_axes_independent,
                         multiplier_gradients, plant_zeros, register, signed_probe, value_tolerance)
from ..errors import InvalidArgument
from ._base import BernoulliMaskVariant, Variant


# ------------------------------------------------------------------------------
# moments shared by the inverted-Bernoulli variants, exact at p = 1 as well

def inverted_mean(inputs: Inputs, params: Params) -> np.ndarray:
    """E[y|x] of inverted Bernoulli dropout: x for p < 1, 0 at p = 1 (everything dropped)."""
    x = np.asarray(inputs[0], np.float64)
    return x if params["p"] < 1.0 else np.zeros_like(x)


def inverted_variance(inputs: Inputs, params: Params) -> np.ndarray:
    """Var[y|x] of inverted Bernoulli dropout: x^2 p/(1-p) for p < 1, 0 at p = 1."""
    p = params["p"]
    x = np.asarray(inputs[0], np.float64)
    return x * x * (p / (1.0 - p)) if p < 1.0 else np.zeros_like(x)


DROPOUT = register(Contract(
    name="dropout",
    summary="Element-wise dropout: each element kept with probability 1-p and scaled by 1/(1-p).",
    reference="Srivastava et al. 2014, JMLR 15:1929",
    params=(P_SPEC(),),
    layout="any shape (N, ...)",
    default_shape=(64, 32, 8, 8),
    ranks=(1, 2, 3, 4, 5),
    structure="elementwise",
    shared_axes=all_axes_independent,
    drop_probability=lambda params, shape: params["p"],
    dropped_value=zero_value,
    kept_value=inverted_kept,
    mean_scope="elementwise",
    output_mean=inverted_mean,
    output_variance=inverted_variance,
    eval_output=identity_eval,
    gradient_rule="dx = grad_out * m, m in {0, 1/(1-p)} the forward mask",
    input_gradients=multiplier_gradients,
    p_one_allowed=True,
))


class Dropout(BernoulliMaskVariant):
    """Element-wise inverted dropout: ``y = x * m / (1 - p)``, ``m ~ Bernoulli(1 - p)``."""

    contract = DROPOUT


# ------------------------------------------------------------------------------
# Gaussian dropout

def gaussian_sigma(p: float) -> float:
    """Standard deviation sqrt(p/(1-p)) of the Gaussian multiplier, p in [0, 1)."""
    return math.sqrt(p / (1.0 - p))


GAUSSIAN_DROPOUT = register(Contract(
    name="gaussian_dropout",
    summary="Multiplicative Gaussian noise: y = x * m, m ~ N(1, p/(1-p)) independently per element.",
    reference="Srivastava et al. 2014, JMLR 15:1929, sec. 10; Wang & Manning 2013 (fast dropout)",
    params=(P_SPEC(high_closed=False, doc="matched Bernoulli drop rate; noise variance p/(1-p)"),),
    layout="any shape (N, ...)",
    default_shape=(64, 32, 8, 8),
    ranks=(1, 2, 3, 4, 5),
    structure="continuous",
    shared_axes=all_axes_independent,
    drop_probability=lambda params, shape: 0.0,
    dropped_value=None,
    kept_value=None,
    mean_scope="elementwise",
    output_mean=lambda inputs, params: np.asarray(inputs[0], np.float64),
    output_variance=lambda inputs, params: inverted_variance(inputs, params),
    eval_output=identity_eval,
    gradient_rule="dx = grad_out * m, m the forward's Gaussian multiplier (= y / x)",
    input_gradients=multiplier_gradients,
    p_one_allowed=False,
    multiplicative=True,
    notes=(
        "p is the Bernoulli rate whose variance the noise matches: sigma^2 = p/(1-p); p = 1 would need "
        "infinite variance and is rejected.",
        "No element is ever dropped exactly: drop_probability is 0 and the mask is the continuous "
        "multiplier y / x (which may be negative for large p).",
    ),
))


class GaussianDropout(Variant):
    """Gaussian dropout: ``y = x * m``, ``m ~ N(1, p/(1-p))`` i.i.d. per element.

    The multiplier is drawn in float64 from ``self.rng`` and rounded once to x's dtype;
    ``backward`` multiplies by that same rounded multiplier. Eval mode and p = 0 return x
    unchanged (bit for bit).
    """

    contract = GAUSSIAN_DROPOUT

    def _forward(self, x: np.ndarray) -> np.ndarray:
        if not self.training or self.p == 0.0:
            self._saved = ("identity",)
            return x
        noise = self.rng.standard_normal(x.shape)
        m = (1.0 + gaussian_sigma(self.p) * noise).astype(x.dtype)
        self._saved = ("noise", m)
        return x * m

    def _backward(self, grad_out: np.ndarray) -> np.ndarray:
        if self._saved[0] == "identity":
            return grad_out
        return grad_out * self._saved[1].astype(grad_out.dtype)


# ------------------------------------------------------------------------------
# alpha dropout (SELU networks)

ALPHA_PRIME = -1.7580993408473766
"""Value a dropped unit takes before the affine correction: -lambda * alpha of SELU."""


def alpha_affine(p: float) -> Tuple[float, float]:
    """The affine correction ``(a, b)`` of alpha dropout for drop rate p in [0, 1).

    ``a = ((1-p)(1 + p alpha'^2))^(-1/2)``, ``b = -a alpha' p``: with these, a standard-normal
    input keeps mean 0 and variance 1 in expectation. Undefined at p = 1 (raises).
    """
    if not 0.0 <= p < 1.0:
        raise InvalidArgument(f"p={p!r}, but should be in [0, 1) for the alpha-dropout affine")
    a = ((1.0 - p) * (1.0 + p * ALPHA_PRIME ** 2)) ** -0.5
    return a, -a * ALPHA_PRIME * p


def _alpha_dropped(inputs: Inputs, params: Params) -> np.ndarray:
    if params["p"] >= 1.0:
        return np.float64(0.0)
    a, b = alpha_affine(params["p"])
    return np.float64(a * ALPHA_PRIME + b)


def _alpha_kept(inputs: Inputs, params: Params, dropped: np.ndarray) -> np.ndarray:
    x = np.asarray(inputs[0], np.float64)
    if params["p"] >= 1.0:
        return np.zeros_like(x)
    a, b = alpha_affine(params["p"])
    return a * x + b


def _alpha_mean(inputs: Inputs, params: Params) -> np.ndarray:
    x = np.asarray(inputs[0], np.float64)
    p = params["p"]
    if p >= 1.0:
        return np.zeros_like(x)
    a, b = alpha_affine(p)
    return a * ((1.0 - p) * x + p * ALPHA_PRIME) + b


def _alpha_variance(inputs: Inputs, params: Params) -> np.ndarray:
    x = np.asarray(inputs[0], np.float64)
    p = params["p"]
    if p >= 1.0:
        return np.zeros_like(x)
    a, _ = alpha_affine(p)
    return a * a * p * (1.0 - p) * (x - ALPHA_PRIME) ** 2


def _alpha_gradients(inputs: Inputs, y: np.ndarray, grad_out: np.ndarray,
                     params: Params) -> Tuple[np.ndarray, ...]:
    """dx = grad_out * a where the output took the kept value, 0 where it took alpha'."""
    g = np.asarray(grad_out, np.float64)
    p = params["p"]
    if p >= 1.0:
        return (np.zeros_like(g),)
    a, _ = alpha_affine(p)
    rtol, atol = value_tolerance(np.asarray(y).dtype)
    dropped = np.isclose(np.asarray(y, np.float64), _alpha_dropped(inputs, params), rtol=rtol, atol=atol)
    if p == 0.0:
        dropped = np.zeros_like(dropped)
    return (np.where(dropped, 0.0, g * a),)


def alpha_probe(shape: Shape, rng: np.random.Generator, dtype: Any = np.float64,
                margin: float = 0.05, zeros: bool = False) -> Inputs:
    """Signed, wide-range inputs (:func:`~dropverify.contracts.signed_probe`: random signs,
    magnitudes log-uniform over ``probe_magnitudes(dtype)``, e.g. 1e-6 .. 1e6 in float64,
    0.1 .. 10 in float16), with every element whose |x - alpha'| <= margin * |alpha'| redrawn,
    so a kept element a*x + b never coincides with the dropped value a*alpha' + b.
    ``zeros=True`` also plants exact zeros (x = 0 is kept as b, distinct from the dropped value)."""
    x = signed_probe(shape, rng, dtype)
    width = margin * abs(ALPHA_PRIME)
    bad = np.abs(x.astype(np.float64) - ALPHA_PRIME) <= width
    while bad.any():  # each round redraws only the few offending elements, all at once
        x[bad] = signed_probe((int(bad.sum()),), rng, dtype)
        bad = np.abs(x.astype(np.float64) - ALPHA_PRIME) <= width
    return (plant_zeros(x, rng) if zeros else x,)


def _feature_axes(params: Params, shape: Shape) -> Tuple[int, ...]:
    return tuple(range(2, len(shape)))


_ALPHA_COMMON = dict(
    reference="Klambauer et al. 2017, Self-Normalizing Neural Networks (NeurIPS), sec. 'New dropout technique'",
    params=(P_SPEC(),),
    dropped_value=_alpha_dropped,
    kept_value=_alpha_kept,
    mean_scope="elementwise",
    output_mean=_alpha_mean,
    output_variance=_alpha_variance,
    eval_output=identity_eval,
    gradient_rule="dx = grad_out * a where kept, 0 where dropped (a = ((1-p)(1+p alpha'^2))^-1/2)",
    input_gradients=_alpha_gradients,
    make_inputs=alpha_probe,
    p_one_allowed=True,
    multiplicative=False,
)
_ALPHA_NOTES = (
    "Dropped units take alpha' = -1.7580993408473766, then every unit goes through a*v + b: kept "
    "a*x + b, dropped a*alpha' + b. Per element E[y|x] = a((1-p)x + p alpha') + b, which is not x.",
    "Mean 0 / variance 1 hold in expectation over standard-normal inputs, not for every sample "
    "(pytorch 74004: small samples differ and that is not a bug).",
    "p = 1 returns zeros with zero gradients (the PyTorch convention; a and b are undefined there).",
)

ALPHA_DROPOUT = register(Contract(
    name="alpha_dropout",
    summary="Alpha dropout for SELU nets: dropped units set to alpha', then an affine map keeping mean 0 / var 1.",
    layout="any shape (N, ...)",
    default_shape=(64, 32, 8, 8),
    ranks=(1, 2, 3, 4, 5),
    structure="elementwise",
    shared_axes=all_axes_independent,
    drop_probability=lambda params, shape: params["p"],
    notes=_ALPHA_NOTES,
    **_ALPHA_COMMON,
))

FEATURE_ALPHA_DROPOUT = register(Contract(
    name="feature_alpha_dropout",
    summary="Alpha dropout with one mask value per (sample, channel), broadcast over the remaining axes.",
    layout="(N, C, ...) channels-first, rank >= 2",
    default_shape=(64, 32, 8, 8),
    ranks=(2, 3, 4, 5),
    structure="shared",
    shared_axes=_feature_axes,
    drop_probability=lambda params, shape: params["p"],
    notes=_ALPHA_NOTES + (
        "The input must be batched (N, C, ...): an unbatched (C, H, W) map would share the mask "
        "along the wrong axes (pytorch 69960).",),
    **_ALPHA_COMMON,
))


class AlphaDropout(BernoulliMaskVariant):
    """Alpha dropout: ``y = a * (x if kept else alpha') + b``, one draw per element.

    Values are computed in float64 and rounded once to x's dtype. Eval mode and p = 0
    return x unchanged; p = 1 returns zeros (gradients zero).
    """

    contract = ALPHA_DROPOUT

    def _forward(self, x: np.ndarray) -> np.ndarray:
        if not self.training or self.p == 0.0:
            self._saved = ("identity",)
            return x
        if self.p >= 1.0:
            self._saved = ("zeros",)
            return np.zeros_like(x)
        keep = self.draw_keep(x.shape)
        a, b = alpha_affine(self.p)
        y = np.where(keep, a * x.astype(np.float64) + b, a * ALPHA_PRIME + b)
        self._saved = ("mask", keep, a)
        return y.astype(x.dtype)

    def _backward(self, grad_out: np.ndarray) -> np.ndarray:
        kind = self._saved[0]
        if kind == "identity":
            return grad_out
        if kind == "zeros":
            return np.zeros_like(grad_out)
        _, keep, a = self._saved
        return np.where(keep, grad_out * grad_out.dtype.type(a), grad_out.dtype.type(0))


class FeatureAlphaDropout(AlphaDropout):
    """Alpha dropout with one draw per (N, C), broadcast over the axes after the channel."""

    contract = FEATURE_ALPHA_DROPOUT

    def mask_shape(self, shape: Tuple[int, ...]) -> Tuple[int, ...]:
        return tuple(shape[:2]) + (1,) * (len(shape) - 2)


VARIANTS = (Dropout, GaussianDropout, AlphaDropout, FeatureAlphaDropout)
