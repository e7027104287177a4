"""Sequence-model dropout family: attention, token-embedding, word-type embedding,
variational (locked) dropout and zoneout."""
from __future__ import annotations

import dataclasses
from typing import Any, Optional, Tuple

import numpy as np

from ..contracts import (inverted_kept, zero_value, P_SPEC, ZERO_FRACTION, Contract, ParamSpec, Shape, all_axes_independent,
                         identity_eval, inverted_scale, multiplier_gradients, plant_zeros, register, signed_probe,
                         value_tolerance)
from ..errors import InvalidArgument
from ._base import BernoulliMaskVariant, Variant
from .dropout import inverted_mean, inverted_variance


# ------------------------------------------------------------------------------
# shared contract helpers for inverted masks (kept scale s = 1/(1-p), 0 at p = 1)

def _inverted_fields() -> dict:
    return dict(drop_probability=lambda params, shape: params["p"], dropped_value=zero_value,
                kept_value=inverted_kept, mean_scope="elementwise", output_mean=inverted_mean,
                output_variance=inverted_variance, eval_output=identity_eval,
                input_gradients=multiplier_gradients, p_one_allowed=True)


# ------------------------------------------------------------------------------
# attention dropout

def _softmax_probe(shape: Shape, rng: np.random.Generator, dtype: Any = np.float64) -> Tuple[np.ndarray]:
    """Softmax over the last axis of logits in [0, 1): every weight > 0, rows sum to 1,
    and weights within a factor e of each other (no weight close to 0). Positive by contract
    (attention weights are a probability row), so unlike the default probe it is not signed;
    no ``zeros`` option (the torch plumbing takes log(x))."""
    logits = rng.random(shape)
    w = np.exp(logits - logits.max(axis=-1, keepdims=True)) if logits.size else logits
    w = w / w.sum(axis=-1, keepdims=True) if w.size else w
    return (w.astype(dtype),)


def _renorm_kept(inputs, params, dropped):
    x = np.asarray(inputs[0], np.float64)
    if not params["renormalize"] or params["p"] == 0.0:     # p = 0 is the identity (eval output)
        return x * inverted_scale(params["p"])
    total = np.sum(np.where(dropped, 0.0, x), axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, x / total, 0.0)


def _renorm_gradients(inputs, y, grad_out, params):
    """renormalize: y_i = k_i x_i / S, S = sum_j k_j x_j, so dx_j = k_j (g_j - sum_i g_i y_i) / S,
    with the kept mask k read off the observed y (probe inputs are all > 0); p = 0 is the identity."""
    if not params["renormalize"] or params["p"] == 0.0:
        return multiplier_gradients(inputs, y, grad_out, params)
    x = np.asarray(inputs[0], np.float64)
    y64 = np.asarray(y, np.float64)
    return (_renorm_backward(y64 != 0, x, y64, np.asarray(grad_out, np.float64)),)


def _renorm_backward(keep: np.ndarray, x: np.ndarray, y: np.ndarray, g: np.ndarray) -> np.ndarray:
    total = np.sum(np.where(keep, x, 0.0), axis=-1, keepdims=True)
    inner = np.sum(g * y, axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(keep & (total > 0), (g - inner) / total, 0.0)


def _attention_mean(inputs, params):
    return None if params["renormalize"] else inverted_mean(inputs, params)


def _attention_variance(inputs, params):
    return None if params["renormalize"] else inverted_variance(inputs, params)


def attention_contract(params: Optional[dict] = None) -> Contract:
    """The contract that applies to ``params``: the renormalising one has mean_scope 'none'."""
    p = ATTENTION_DROPOUT.validate_params(params)
    return ATTENTION_DROPOUT_RENORMALIZED if p["renormalize"] else ATTENTION_DROPOUT


ATTENTION_DROPOUT = register(Contract(
    name="attention_dropout",
    summary="Element-wise inverted dropout on post-softmax attention weights (B, H, Lq, Lk).",
    reference="Vaswani et al. 2017, NeurIPS, 'Attention Is All You Need'; torch scaled_dot_product_attention",
    params=(P_SPEC(), ParamSpec("renormalize", bool, False,
                                doc="renormalise kept weights so each row sums to 1")),
    layout="(B, H, Lq, Lk) or (B, Lq, Lk) attention weights, softmax over the last axis",
    default_shape=(8, 4, 16, 16),
    ranks=(3, 4),
    structure="elementwise",
    shared_axes=all_axes_independent,
    drop_probability=lambda params, shape: params["p"],
    dropped_value=zero_value,
    kept_value=_renorm_kept,
    mean_scope="elementwise",
    output_mean=_attention_mean,
    output_variance=_attention_variance,
    eval_output=identity_eval,
    gradient_rule=("dx = grad_out * m (inverted); renormalize: dx_j = k_j (g_j - sum_i g_i y_i) / "
                   "sum_i k_i x_i over the row"),
    input_gradients=_renorm_gradients,
    make_inputs=_softmax_probe,
    p_one_allowed=True,
    notes=(
        "renormalize=False: rows of dropped weights sum to more or less than 1; expected, not a bug "
        "(pytorch 42929).",
        "renormalize=True: kept weights are divided by their row's kept sum, so rows sum to 1 (rows "
        "with every weight dropped stay 0). NOT expectation preserving: mean_scope='none', output_mean "
        "None; kept_value depends on the dropped mask: x / (sum over the row of kept x).",
        "p=0 returns the input unchanged for both settings (the eval output); renormalize applies "
        "only when 0 < p.",
        "Probe weights are softmax(U[0,1)) rows, all within a factor e of 1/Lk; for float16 keep "
        "Lk <= ~200 so no weight falls within atol of 0.",
        "This registered contract promises moments only for renormalize=False (output_mean and "
        "output_variance return None otherwise); extra['contract_for'](params) returns the contract "
        "for given params (mean_scope='none', output_mean=None when renormalize=True).",
    ),
    extra={"contract_for": attention_contract},
))
# mean_scope is a plain field, so the renormalising convention gets its own contract object
# (not registered: same name); attention_contract(params) / extra["contract_for"] pick it.
ATTENTION_DROPOUT_RENORMALIZED = dataclasses.replace(
    ATTENTION_DROPOUT, mean_scope="none", output_mean=None, output_variance=None,
    extra={**ATTENTION_DROPOUT.extra, "not_applicable": {
        "nonfinite_inputs_leave_others_untouched":
            "renormalising divides a row by its kept sum, so a NaN/inf in a row reaches every element of that "
            "row by design"}})


class AttentionDropout(BernoulliMaskVariant):
    """Inverted dropout on attention weights; with ``renormalize`` each row's kept weights
    are divided by their sum instead (all-dropped rows stay 0)."""

    contract = ATTENTION_DROPOUT

    def _forward(self, x: np.ndarray) -> np.ndarray:
        if not self.params["renormalize"] or not self.training or self.p == 0.0:
            return super()._forward(x)
        keep = self.draw_keep(x.shape)
        x64 = np.where(keep, x.astype(np.float64), 0.0)
        total = x64.sum(axis=-1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            y64 = np.where(keep & (total > 0), x64 / total, 0.0)
        self._saved = ("renorm", keep, x64, y64)
        return y64.astype(x.dtype)

    def _backward(self, grad_out: np.ndarray) -> np.ndarray:
        if self._saved[0] != "renorm":
            return super()._backward(grad_out)
        _, keep, x64, y64 = self._saved
        g = _renorm_backward(keep, x64, y64, grad_out.astype(np.float64))
        return g.astype(grad_out.dtype)


# ------------------------------------------------------------------------------
# token-embedding dropout and word-type (embedding-matrix row) dropout

EMBEDDING_DROPOUT = register(Contract(
    name="embedding_dropout",
    summary="Drops whole token vectors: one Bernoulli(1-p) draw per (n, l), shared over D, scaled 1/(1-p).",
    reference="Merity et al. 2018, ICLR (AWD-LSTM); Gal & Ghahramani 2016, NeurIPS",
    params=(P_SPEC(doc="probability of dropping a token vector"),),
    layout="(N, L, D) token embeddings",
    default_shape=(32, 64, 16),
    ranks=(3,),
    structure="shared",
    shared_axes=lambda params, shape: (2,),
    gradient_rule="dx = grad_out * m, m in {0, 1/(1-p)} one per token position",
    **_inverted_fields(),
))


class EmbeddingDropout(BernoulliMaskVariant):
    """Token dropout on ``(N, L, D)`` embeddings: mask ``(N, L, 1)``."""

    contract = EMBEDDING_DROPOUT

    def mask_shape(self, shape: Shape) -> Shape:
        return tuple(shape[:2]) + (1,)


WORD_EMBEDDING_DROPOUT = register(Contract(
    name="word_embedding_dropout",
    summary=("Drops whole rows (word types) of the embedding matrix (V, D), scaled 1/(1-p); every "
             "occurrence of a word in a batch shares its row's mask."),
    reference="Gal & Ghahramani 2016, NeurIPS, section 4; AWD-LSTM embed_regularize.embedded_dropout",
    params=(P_SPEC(doc="probability of dropping a word type (matrix row)"),),
    layout="(V, D) embedding matrix",
    default_shape=(512, 16),
    ranks=(2,),
    structure="shared",
    shared_axes=lambda params, shape: (1,),
    gradient_rule="dW = grad_out * m, m in {0, 1/(1-p)} one per matrix row",
    notes=("forward(W) returns the dropped matrix; lookup(ids) gathers rows of the last output, "
           "so repeated ids get identical vectors and masks.",),
    extra={"lookup": "lookup(ids) returns rows of the last forward output"},
    **_inverted_fields(),
))


class WordEmbeddingDropout(BernoulliMaskVariant):
    """Row dropout on an embedding matrix ``(V, D)`` (mask ``(V, 1)``), then :meth:`lookup`."""

    contract = WORD_EMBEDDING_DROPOUT

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._weight: Optional[np.ndarray] = None
        self._ids: Optional[np.ndarray] = None

    def mask_shape(self, shape: Shape) -> Shape:
        return (shape[0], 1)

    def _forward(self, w: np.ndarray) -> np.ndarray:
        self._weight = super()._forward(w)
        return self._weight

    def lookup(self, ids: Any) -> np.ndarray:
        """Rows of the last dropped matrix for integer ``ids`` (any shape, e.g. (N, L)) in [0, V).

        Returns ``ids.shape + (D,)``. Raises InvalidArgument before any forward, for
        non-integer ids or ids out of range.
        """
        if self._weight is None:
            raise InvalidArgument("lookup called before forward: call forward(W) first")
        ids = np.asarray(ids)
        vocab = self._weight.shape[0]
        if ids.dtype.kind not in "iu":
            raise InvalidArgument(f"ids.dtype={ids.dtype}, but should be an integer dtype")
        if ids.size and (ids.min() < 0 or ids.max() >= vocab):
            raise InvalidArgument(f"ids in [{ids.min()}, {ids.max()}], but should be in [0, {vocab - 1}]")
        self._ids = ids
        return self._weight[ids]

    def lookup_backward(self, grad_emb: Any) -> np.ndarray:
        """Gradient w.r.t. the matrix of ``sum(grad_emb * lookup(ids))`` (the last lookup)."""
        if self._ids is None:
            raise InvalidArgument("lookup_backward called before lookup")
        g = np.asarray(grad_emb)
        expected = self._ids.shape + self._weight.shape[1:]
        if g.shape != expected:
            raise InvalidArgument(f"grad_emb.shape={g.shape}, but should be {expected}")
        dense = np.zeros(self._weight.shape, dtype=self._weight.dtype)
        np.add.at(dense, self._ids, g.astype(dense.dtype))
        return self.backward(dense)


# ------------------------------------------------------------------------------
# variational (locked) dropout

VARIATIONAL_DROPOUT = register(Contract(
    name="variational_dropout",
    summary="Locked dropout: one Bernoulli(1-p) draw per (sample, feature), the same at every time step.",
    reference="Gal & Ghahramani 2016, NeurIPS; AWD-LSTM LockedDropout",
    params=(P_SPEC(), ParamSpec("batch_first", bool, True,
                                doc="input (N, T, H) if True, (T, N, H) if False")),
    layout="(N, T, H) when batch_first=True (default), (T, N, H) when batch_first=False",
    default_shape=(32, 20, 16),
    ranks=(3,),
    structure="shared",
    shared_axes=lambda params, shape: (1,) if params["batch_first"] else (0,),
    gradient_rule="dx = grad_out * m, m in {0, 1/(1-p)} one per (sample, feature), shared over time",
    **_inverted_fields(),
))


class VariationalDropout(BernoulliMaskVariant):
    """Locked dropout: mask ``(N, 1, H)`` (batch_first) or ``(1, N, H)``."""

    contract = VARIATIONAL_DROPOUT

    def mask_shape(self, shape: Shape) -> Shape:
        time_axis = 1 if self.params["batch_first"] else 0
        return tuple(1 if i == time_axis else s for i, s in enumerate(shape))


# ------------------------------------------------------------------------------
# zoneout

def _zoneout_probe(shape: Shape, rng: np.random.Generator, dtype: Any = np.float64,
                   zeros: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """(h_prev, h_new): independent signed, wide-range draws (``signed_probe``: magnitudes
    log-uniform over ``probe_magnitudes(dtype)``), with h_new negated wherever
    |h_prev - h_new| < max(|h_prev|, |h_new|) / 2, so the two differ everywhere by at least
    half the larger magnitude (a wide relative margin in every dtype). ``zeros=True`` sets
    about 1/8 of the positions to 0 in h_prev and as many others to 0 in h_new (never both)."""
    h_prev = signed_probe(shape, rng, dtype)
    h_new = signed_probe(shape, rng, dtype)
    a, b = h_prev.astype(np.float64), h_new.astype(np.float64)
    close = np.abs(a - b) < 0.5 * np.maximum(np.abs(a), np.abs(b))
    h_new = np.where(close, -h_new, h_new).astype(dtype)
    if zeros and h_prev.size:
        spots = plant_zeros(np.ones(h_prev.shape), rng, 2 * ZERO_FRACTION) == 0
        to_prev = spots & (rng.random(h_prev.shape) < 0.5)
        h_prev = np.where(to_prev, 0, h_prev).astype(dtype)
        h_new = np.where(spots & ~to_prev, 0, h_new).astype(dtype)
    return h_prev, h_new


def _zoneout_mean(inputs, params):
    p = params["p"]
    return p * np.asarray(inputs[0], np.float64) + (1.0 - p) * np.asarray(inputs[1], np.float64)


def _zoneout_variance(inputs, params):
    p = params["p"]
    d = np.asarray(inputs[0], np.float64) - np.asarray(inputs[1], np.float64)
    return p * (1.0 - p) * d * d


def _zoneout_gradients(inputs, y, grad_out, params):
    h_prev = np.asarray(inputs[0], np.float64)
    rtol, atol = value_tolerance(np.asarray(y).dtype)
    zone = np.isclose(np.asarray(y, np.float64), h_prev, rtol=rtol, atol=atol)
    g = np.asarray(grad_out, np.float64)
    return (np.where(zone, g, 0.0), np.where(zone, 0.0, g))


ZONEOUT = register(Contract(
    name="zoneout",
    summary="Zoneout: each unit keeps its previous state h_prev with probability p, else takes h_new; no scaling.",
    reference="Krueger et al. 2017, ICLR, 'Zoneout: Regularizing RNNs by Randomly Preserving Hidden Activations'",
    params=(P_SPEC(doc="probability that a unit is zoned out (keeps h_prev)"),),
    layout="forward(h_prev, h_new), both (N, H) (any shape (N, ...), the same for both)",
    default_shape=(64, 128),
    ranks=(1, 2, 3, 4, 5),
    structure="elementwise",
    shared_axes=all_axes_independent,
    drop_probability=lambda params, shape: params["p"],
    dropped_value=lambda inputs, params: np.asarray(inputs[0], np.float64),
    kept_value=lambda inputs, params, dropped: np.asarray(inputs[1], np.float64),
    mean_scope="elementwise",
    output_mean=_zoneout_mean,
    output_variance=_zoneout_variance,
    eval_output=_zoneout_mean,
    gradient_rule="d h_prev = grad_out * zone, d h_new = grad_out * (1 - zone), zone the forward mask",
    input_gradients=_zoneout_gradients,
    make_inputs=_zoneout_probe,
    p_one_allowed=True,
    multiplicative=False,
    notes=(
        "The 'dropped' state is zoned out: the output equals h_prev there, h_new elsewhere; no scaling.",
        "Eval output is the expectation p h_prev + (1-p) h_new (the paper's test-time rule, as for "
        "dropout's weight scaling); p=0 gives h_new and p=1 gives h_prev exactly.",
    ),
))


class Zoneout(Variant):
    """``forward(h_prev, h_new)``: per element ``h_prev`` with probability ``p`` (zoned out),
    else ``h_new``. Eval returns ``p h_prev + (1-p) h_new``. ``backward`` returns
    ``(d h_prev, d h_new)``."""

    contract = ZONEOUT

    def _forward(self, *inputs: np.ndarray) -> np.ndarray:
        if len(inputs) != 2:
            raise InvalidArgument(f"zoneout got {len(inputs)} inputs, but should be 2: forward(h_prev, h_new)")
        h_prev, h_new = inputs
        if h_prev.shape != h_new.shape or h_prev.dtype != h_new.dtype:
            raise InvalidArgument(f"h_new has shape {h_new.shape} and dtype {h_new.dtype}, but should "
                                  f"match h_prev: {h_prev.shape}, {h_prev.dtype}")
        p = self.p
        if p == 0.0 or (p == 1.0 and not self.training):
            zone = np.full(h_new.shape, p == 1.0)
            self._saved = ("mask", zone)
            return h_prev if p == 1.0 else h_new
        if not self.training:
            t = h_new.dtype.type
            self._saved = ("eval", t(p))
            return t(p) * h_prev + t(1.0 - p) * h_new
        zone = self.rng.random(h_new.shape) < p
        self._saved = ("mask", zone)
        return np.where(zone, h_prev, h_new)

    def _backward(self, grad_out: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        zero = grad_out.dtype.type(0)
        if self._saved[0] == "eval":
            p = grad_out.dtype.type(self._saved[1])
            return grad_out * p, grad_out * (grad_out.dtype.type(1) - p)
        zone = self._saved[1]
        return np.where(zone, grad_out, zero), np.where(zone, zero, grad_out)


VARIANTS = (AttentionDropout, EmbeddingDropout, WordEmbeddingDropout, VariationalDropout, Zoneout)
