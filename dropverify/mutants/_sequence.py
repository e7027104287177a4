"""Mutants of the sequence family (attention, token and word-type embedding, variational,
zoneout) and of DropConnect."""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from ..contracts import inverted_scale
from ..variants.dropconnect import DropConnectLinear
from ..variants.dropout import Dropout
from ..variants.sequence import (AttentionDropout, EmbeddingDropout, VariationalDropout, WordEmbeddingDropout,
                                 Zoneout)
from ._core import Mutant, mutant


def _force_training(layer: Any, forward: Any, *inputs: Any) -> Any:
    """Call ``forward`` with ``layer.training`` forced to True (restored afterwards)."""
    mode, layer.training = layer.training, True
    try:
        return forward(*inputs)
    finally:
        layer.training = mode


# ------------------------------------------------------------------------------ attention

class AttentionNotRescaled(AttentionDropout):
    """Attention weights dropped but the kept ones not divided by 1-p."""

    def scale(self) -> float:
        return 1.0


class AttentionEvalActive(AttentionDropout):
    """Dropout on the attention weights applied whatever the mode (a stateless functional
    call given the configured rate in eval too)."""

    def _forward(self, x: np.ndarray) -> np.ndarray:
        return _force_training(self, super()._forward, x)


class AttentionRenormDetached(AttentionDropout):
    """renormalize=True, but backward treats the row's kept sum as a constant (a detached
    normaliser): dx = k g / S, missing the -sum(g y) / S term."""

    def _backward(self, grad_out: np.ndarray) -> np.ndarray:
        if self._saved[0] != "renorm":
            return super()._backward(grad_out)
        _, keep, x64, _ = self._saved
        total = x64.sum(axis=-1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            g = np.where(keep & (total > 0), grad_out.astype(np.float64) / total, 0.0)
        return g.astype(grad_out.dtype)


# ------------------------------------------------------------------------------ embeddings

class EmbeddingPerElement(EmbeddingDropout):
    """Token dropout drawing one value per (n, l, d) element instead of one per token."""

    def mask_shape(self, shape: Tuple[int, ...]) -> Tuple[int, ...]:
        return tuple(shape)


class WordDropoutPerOccurrence(WordEmbeddingDropout):
    """``dropout(embedding(ids))``: a fresh element-wise mask for every occurrence, instead of
    one mask per word type (matrix row). forward(W) treats each row as one occurrence; lookup
    draws anew for every id it returns."""

    def mask_shape(self, shape: Tuple[int, ...]) -> Tuple[int, ...]:
        return tuple(shape)

    def forward(self, *inputs: Any) -> np.ndarray:
        out = super().forward(*inputs)
        self._raw = np.asarray(inputs[0])
        return out

    def lookup(self, ids: Any) -> np.ndarray:
        super().lookup(ids)  # validation
        rows = self._raw[np.asarray(ids)]
        keep = self.rng.random(rows.shape) >= self.p
        return np.where(keep, rows * rows.dtype.type(self.scale()), rows.dtype.type(0))


class WordDropoutRedrawnAtLookup(WordEmbeddingDropout):
    """forward(W) drops matrix rows correctly, but lookup(ids) ignores that mask and draws a
    fresh whole-vector mask for every occurrence (token dropout sold as word-type dropout):
    two occurrences of one word no longer share their mask."""

    def forward(self, *inputs: Any) -> np.ndarray:
        out = super().forward(*inputs)
        self._raw = np.asarray(inputs[0])
        return out

    def lookup(self, ids: Any) -> np.ndarray:
        super().lookup(ids)  # validation
        rows = self._raw[np.asarray(ids)]
        keep = self.rng.random(rows.shape[:-1] + (1,)) >= self.p
        return np.where(keep, rows * rows.dtype.type(self.scale()), rows.dtype.type(0))


# ------------------------------------------------------------------------------ variational

class VariationalRedrawnPerStep(VariationalDropout):
    """Locked dropout redrawing its mask at every time step (plain dropout per step)."""

    def mask_shape(self, shape: Tuple[int, ...]) -> Tuple[int, ...]:
        return tuple(shape)


class LockedDropoutTimeFirstMask(VariationalDropout):
    """AWD-LSTM's LockedDropout mask (1, N, H) written for (T, N, H), fed batch-first (N, T, H):
    the mask becomes (1, T, H), shared across the batch and redrawn per time step."""

    def mask_shape(self, shape: Tuple[int, ...]) -> Tuple[int, ...]:
        return (1,) + tuple(shape[1:])


class VariationalBatchFirstIgnored(VariationalDropout):
    """batch_first=False accepted but the mask is always (N, 1, H): on (T, N, H) input it is
    (T, 1, H), shared across the batch and redrawn per time step."""

    def mask_shape(self, shape: Tuple[int, ...]) -> Tuple[int, ...]:
        return (shape[0], 1, shape[2])


# ------------------------------------------------------------------------------ zoneout

class ZoneoutViaDropout(Zoneout):
    """Zoneout written as ``h_prev + dropout(h_new - h_prev, p)``: where the unit updates the
    change is scaled by 1/(1-p), and eval returns h_new."""

    def _forward(self, *inputs: np.ndarray) -> np.ndarray:
        h_prev, h_new = inputs
        if not hasattr(self, "_drop"):
            self._drop = Dropout(p=self.p, rng=self.rng)
        self._drop.rng, self._drop.training = self.rng, self.training
        y = h_prev + self._drop.forward(h_new - h_prev)
        self._saved = ("via_dropout",)
        return y

    def _backward(self, grad_out: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        g_new = self._drop.backward(grad_out)
        return grad_out - g_new, g_new


class ZoneoutEvalStochastic(Zoneout):
    """Eval mode keeps zoning out at random instead of returning p h_prev + (1-p) h_new."""

    def _forward(self, *inputs: np.ndarray) -> np.ndarray:
        return _force_training(self, super()._forward, *inputs)


class ZoneoutBackwardSwapped(Zoneout):
    """Backward routes the gradient of zoned-out units to h_new and of updated units to h_prev."""

    def _backward(self, grad_out: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        d_prev, d_new = super()._backward(grad_out)
        return d_new, d_prev


class ZoneoutProbabilitySwapped(Zoneout):
    """p read as the probability of UPDATING: units zone out with probability 1-p."""

    def _forward(self, *inputs: np.ndarray) -> np.ndarray:
        h_prev, h_new = inputs
        if not self.training or self.p in (0.0, 1.0):
            return super()._forward(*inputs)
        zone = self.rng.random(h_new.shape) < 1.0 - self.p
        self._saved = ("mask", zone)
        return np.where(zone, h_prev, h_new)


# ------------------------------------------------------------------------------ DropConnect

class _DropConnectForward(DropConnectLinear):
    """Shared plumbing: subclasses implement ``_train_forward(x, w, b) -> y``."""

    def forward(self, x: Any, weight: Any = None, bias: Any = None) -> np.ndarray:
        xa, w, b = self._resolve(x, weight, bias)
        if not self.training or self.p == 0.0:
            return super().forward(x, weight, bias)
        return self._train_forward(xa, w, b)

    __call__ = forward


class DropConnectPerSampleMask(DropConnectLinear):
    """One weight mask per sample (N, out, in), as Wan et al. 2013 describe, under a contract
    that declares one mask per call shared by the batch (mask_per='batch'); its gradients
    are right for the masks it draws."""

    def __init__(self, *args: Any, mask_per: str = "batch", **kw: Any) -> None:
        super().__init__(*args, mask_per="sample", **kw)


class DropConnectPerBatchMask(DropConnectLinear):
    """One weight mask per call shared by the whole batch (the usual library layer) under a
    contract that declares one mask per sample (mask_per='sample'); its gradients are right
    for the mask it draws."""

    def __init__(self, *args: Any, mask_per: str = "sample", **kw: Any) -> None:
        super().__init__(*args, mask_per="batch", **kw)


class DropConnectDropsInputs(_DropConnectForward):
    """Drops the inputs (standard dropout on x) instead of the weights."""

    def _train_forward(self, x: np.ndarray, w: np.ndarray, b: Optional[np.ndarray]) -> np.ndarray:
        dt = np.result_type(x, w)
        keep = self.rng.random(x.shape) >= self.p
        m = np.where(keep, dt.type(inverted_scale(self.p)), dt.type(0))
        y = (x * m) @ w.T
        if b is not None:
            y = y + b
        self._saved = ("inputs", x, w, m, (x.dtype, w.dtype, None if b is None else b.dtype))
        return y.astype(x.dtype, copy=False)

    def _backward(self, grad_out: np.ndarray) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
        if self._saved[0] != "inputs":
            return super()._backward(grad_out)
        _, x, w, m, (x_dt, w_dt, b_dt) = self._saved
        db = None if b_dt is None else grad_out.sum(axis=0).astype(b_dt, copy=False)
        return ((grad_out @ w) * m).astype(x_dt, copy=False), (grad_out.T @ (x * m)).astype(w_dt, copy=False), db


class DropConnectEvalDrops(DropConnectLinear):
    """WeightDrop-style wrapper that calls the dropout with training=True: eval still drops."""

    def forward(self, x: Any, weight: Any = None, bias: Any = None) -> np.ndarray:
        return _force_training(self, super().forward, x, weight, bias)

    __call__ = forward


class DropConnectNoWeightGrad(DropConnectLinear):
    """The raw weight gets no gradient (dW returned as zeros): the masked copy is what
    autograd saw, and it is thrown away."""

    def _backward(self, grad_out: np.ndarray) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
        dx, dw, db = super()._backward(grad_out)
        return dx, np.zeros_like(dw), db


_VAL = "multiplier_values_exact"
_MEAN = "expectation_matches_by_t_test"
_CONST = "mask_constant_along_shared_axes"
_EVAL = "eval_mode_deterministic_and_exact"
_FWD = "gradient_uses_forward_mask"
_GRAD = (_FWD, "gradient_matches_finite_differences")
_WRONG_AXIS = "mask shared along the wrong axis"
_CONV = "weight_mask_convention_exact"
_LOOKUP = "lookup_reuses_forward_mask_exact"

MUTANTS: Tuple[Mutant, ...] = (
    mutant("attention_dropout_not_rescaled", "attention_dropout", AttentionNotRescaled, params={"p": 0.3},
           kills=(_VAL, _MEAN), bug_class="obvious slip",
           source="obvious slip (attention dropout without 1/(1-p))"),
    mutant("attention_dropout_eval_active", "attention_dropout", AttentionEvalActive, params={"p": 0.3},
           kills=(_EVAL,), bug_class="still dropping in eval mode",
           source="pytorch 124464 (SDPA dropout_p is always applied)"),
    mutant("attention_renorm_backward_detached", "attention_dropout", AttentionRenormDetached,
           params={"p": 0.3, "renormalize": True}, kills=_GRAD,
           bug_class="backward uses a different mask or scale than forward",
           source="obvious slip (row normaliser treated as a constant in backward)"),
    mutant("embedding_dropout_per_element", "embedding_dropout", EmbeddingPerElement, params={"p": 0.3},
           kills=(_CONST,), bug_class=_WRONG_AXIS,
           source="AWD-LSTM token dropout replaced by nn.Dropout on the embeddings (PyTorch-NLP 71 class)"),
    mutant("word_embedding_dropout_per_occurrence", "word_embedding_dropout", WordDropoutPerOccurrence,
           params={"p": 0.3}, kills=(_CONST,), bug_class=_WRONG_AXIS,
           source="Gal & Ghahramani 2016 sec. 4 vs dropout(embedding(ids)); AWD-LSTM embedded_dropout"),
    mutant("word_embedding_dropout_redrawn_at_lookup", "word_embedding_dropout", WordDropoutRedrawnAtLookup,
           params={"p": 0.3}, kills=(_LOOKUP,), bug_class=_WRONG_AXIS,
           source="Gal & Ghahramani 2016 sec. 4 (one mask per word type) vs a per-occurrence mask at lookup"),
    mutant("variational_dropout_redrawn_per_step", "variational_dropout", VariationalRedrawnPerStep,
           params={"p": 0.3}, kills=(_CONST,), bug_class=_WRONG_AXIS,
           source="tensorflow 29391 / Gal & Ghahramani 2016 (naive per-step dropout)"),
    mutant("variational_dropout_shared_over_batch", "variational_dropout", LockedDropoutTimeFirstMask,
           params={"p": 0.3, "batch_first": True},
           kills=(_CONST, "masks_independent_along_axis0_by_fisher"), bug_class=_WRONG_AXIS,
           source="awd-lstm-lm PR 5 (LockedDropout broadcast the wrong axis)"),
    mutant("variational_dropout_batch_first_ignored", "variational_dropout", VariationalBatchFirstIgnored,
           params={"p": 0.3, "batch_first": False},
           kills=(_CONST, "masks_independent_along_axis1_by_fisher"), bug_class=_WRONG_AXIS,
           source="PyTorch-NLP 71 (documented layout vs the one used)"),
    mutant("zoneout_scaled", "zoneout", ZoneoutViaDropout, params={"p": 0.3}, kills=(_VAL, _MEAN),
           bug_class="obvious slip", source="zoneout implemented with F.dropout (Krueger et al. 2017: no scaling)"),
    mutant("zoneout_eval_stochastic", "zoneout", ZoneoutEvalStochastic, params={"p": 0.3}, kills=(_EVAL,),
           bug_class="still dropping in eval mode", source="awd-lstm-lm 72 (training=True hard-coded)"),
    mutant("zoneout_backward_swapped", "zoneout", ZoneoutBackwardSwapped, params={"p": 0.3}, kills=_GRAD,
           bug_class="backward uses a different mask or scale than forward",
           source="xformers PR 755 (backward indexes the mask differently from forward)"),
    mutant("zoneout_probability_swapped", "zoneout", ZoneoutProbabilitySwapped, params={"p": 0.2},
           kills=("drop_rate_matches_by_binomial", _MEAN), bug_class="obvious slip",
           source="obvious slip (zoneout rate read as the update rate)"),
    mutant("dropconnect_mask_per_sample", "dropconnect", DropConnectPerSampleMask, params={"p": 0.5},
           kills=(_CONV,), bug_class=_WRONG_AXIS,
           source="Wan et al. 2013 (one mask per sample) checked against a one-mask-per-call contract"),
    mutant("dropconnect_mask_per_batch", "dropconnect", DropConnectPerBatchMask,
           params={"p": 0.5, "mask_per": "sample"}, kills=(_CONV,),
           bug_class="same mask on every device / replica / batch element",
           source="WeightDrop / fastai WeightDropout (one masked weight per call) sold as Wan et al.'s "
                  "per-sample DropConnect"),
    mutant("dropconnect_drops_inputs", "dropconnect", DropConnectDropsInputs, params={"p": 0.5},
           kills=("masks_independent_along_axis1_by_fisher", _CONV), bug_class=_WRONG_AXIS,
           source="DropConnect confused with dropout on the layer input"),
    mutant("dropconnect_eval_drops", "dropconnect", DropConnectEvalDrops, params={"p": 0.5}, kills=(_EVAL,),
           bug_class="still dropping in eval mode", source="awd-lstm-lm 72 (WeightDrop hard-codes training=True)"),
    mutant("dropconnect_weight_grad_missing", "dropconnect", DropConnectNoWeightGrad, params={"p": 0.5},
           kills=_GRAD, bug_class="gradient missing",
           source="fastai2 PR 427 (WeightDropout raw weight got no gradient)"),
)
