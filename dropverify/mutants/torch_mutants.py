"""``nn.Module`` mutants, verified through the generic torch adapter
(:func:`dropverify.targets.torch_nn.torch_spec`; factories take the canonical parameters as
keywords). Importing this module imports torch.

Each mutant names a correct torch module as its ``reference`` (``nn.Dropout``,
``nn.Dropout2d``), so a kill is shown to come from the slip and not from the adapter.
"""
from __future__ import annotations

from typing import Dict, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..targets import torch_nn as _adapter  # noqa: F401  (ImportError here hides these mutants)
from ._core import Mutant
from ._torch_layouts import NON_CONTIGUOUS_GRAD, BackwardMaskStorageOrder


def _keep_mask(x: torch.Tensor, p: float, shape: Tuple[int, ...] = None) -> torch.Tensor:
    """Bool keep mask, True with probability 1 - p, drawn in float32 from torch's generator."""
    shape = tuple(x.shape) if shape is None else shape
    return torch.rand(shape, device=x.device, dtype=torch.float32) >= p


def _inverted(p: float) -> float:
    return 0.0 if p >= 1.0 else 1.0 / (1.0 - p)


class _P(nn.Module):
    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p={p!r}, but should be in [0, 1]")
        self.p = float(p)


class FDropoutRescaledTwice(_P):
    """``F.dropout(x, p) * (1 - p)``: the author believed F.dropout does not rescale and
    'corrects' it, so kept units come out unscaled."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.p, self.training) * (1.0 - self.p) if self.training else x


class MaskCachedForever(_P):
    """Draws its mask on the first training call for a shape and reuses it forever (a mask
    kept as a buffer and never reset)."""

    def __init__(self, p: float) -> None:
        super().__init__(p)
        self._masks: Dict[Tuple[int, ...], torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        key = tuple(x.shape)
        if key not in self._masks:
            self._masks[key] = _keep_mask(x, self.p)
        keep = self._masks[key]
        return torch.where(keep, x * _inverted(self.p), torch.zeros((), dtype=x.dtype))


class Dropout2dOnRows(_P):
    """Dropout2d-style layer that treats (N, C, H, W) as (N, C*H, W): one draw per
    (sample, channel, row) (pytorch 69801: a (C, H, W) map read as (N, C, L))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return F.dropout1d(x.reshape(n, c * h, w), self.p, self.training).reshape(n, c, h, w)


class _FreshMaskInBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        ctx.p = p
        keep = _keep_mask(x, p)
        return torch.where(keep, x * _inverted(p), torch.zeros((), dtype=x.dtype))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        keep = _keep_mask(grad, ctx.p)          # the slip: recomputed, not saved
        return torch.where(keep, grad * _inverted(ctx.p), torch.zeros((), dtype=grad.dtype)), None


class BackwardDrawsFreshMask(_P):
    """autograd.Function that saves nothing and redraws the mask in backward (activation
    recomputation without restoring the RNG state)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return _FreshMaskInBackward.apply(x, self.p)


class _BackwardByP(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        keep = _keep_mask(x, p)
        ctx.save_for_backward(keep)
        ctx.p = p
        return torch.where(keep, x * _inverted(p), torch.zeros((), dtype=x.dtype))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (keep,) = ctx.saved_tensors
        return torch.where(keep, grad * ctx.p, torch.zeros((), dtype=grad.dtype)), None


class BackwardScaledByP(_P):
    """Fused-kernel style autograd.Function whose backward multiplies by p instead of
    1/(1-p)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return _BackwardByP.apply(x, self.p)


class DropsInEval(_P):
    """Calls ``F.dropout(x, p, training=True)`` whatever the module's mode."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.p, training=True)


class Bf16RandMask(_P):
    """Keep where a bfloat16 uniform is > p, no p = 0 short cut: torch.rand in bfloat16 is
    exactly 0 about 0.2 % of the time, so p = 0 still drops."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        keep = torch.rand(x.shape, device=x.device, dtype=torch.bfloat16) > self.p
        return torch.where(keep, x * _inverted(self.p), torch.zeros((), dtype=x.dtype))


class SharedAcrossBatch(_P):
    """One mask of shape (1, ...) for the whole batch (a mask drawn once outside vmap)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = _keep_mask(x, self.p, (1,) + tuple(x.shape[1:]))
        return torch.where(keep, x * _inverted(self.p), torch.zeros((), dtype=x.dtype))


def _factory(cls: type):
    """``factory(p, channels_last=False)``: canonical parameters in; channels_last=True is
    rejected (none of these modules has the option)."""
    def build(p: float, channels_last: bool = False) -> nn.Module:
        if channels_last:
            raise ValueError(f"channels_last={channels_last!r}, but {cls.__name__} has no such option")
        return cls(p)
    return build


def _torch(name: str, variant: str, cls: type, reference: type, kills: Tuple[str, ...], bug_class: str,
           source: str, params: Dict[str, float]) -> Mutant:
    return Mutant(name=name, variant=variant, params=dict(params), bug_class=bug_class, source=source,
                  kills=kills, factory=_factory(cls), framework="torch", reference=_factory(reference),
                  notes=" ".join((cls.__doc__ or "").split()))


_GRAD = ("gradient_uses_forward_mask", "gradient_matches_finite_differences")

MUTANTS: Tuple[Mutant, ...] = (
    _torch("torch_f_dropout_rescaled_twice", "dropout", FDropoutRescaledTwice, nn.Dropout,
           ("multiplier_values_exact", "expectation_matches_by_t_test"), "obvious slip",
           "obvious slip (F.dropout already divides by 1-p)", {"p": 0.3}),
    _torch("torch_mask_cached_forever", "dropout", MaskCachedForever, nn.Dropout,
           ("masks_fresh_across_calls_by_fisher",), "same mask every call (RNG never advances)",
           "tensorflow 29391 / 32543 (masks never reset); elixir-nx/axon 423", {"p": 0.5}),
    _torch("torch_dropout2d_on_rows", "spatial_dropout_2d", Dropout2dOnRows, nn.Dropout2d,
           ("mask_constant_along_shared_axes",), "mask shared along the wrong axis",
           "pytorch 69801 (Dropout2d on (C,H,W) drops rows, not channels)", {"p": 0.5}),
    _torch("torch_backward_fresh_mask", "dropout", BackwardDrawsFreshMask, nn.Dropout, _GRAD,
           "backward uses a different mask or scale than forward",
           "pytorch 190717; OLMo-core PR 828 (recompute without RNG restore)", {"p": 0.5}),
    _torch("torch_backward_scaled_by_p", "dropout", BackwardScaledByP, nn.Dropout, _GRAD,
           "backward uses a different mask or scale than forward", "apex PR 816", {"p": 0.3}),
    _torch("torch_eval_still_drops", "dropout", DropsInEval, nn.Dropout,
           ("eval_mode_deterministic_and_exact",), "still dropping in eval mode",
           "pytorch 124464; awd-lstm-lm 72", {"p": 0.5}),
    _torch("torch_p_zero_bf16_rand", "dropout", Bf16RandMask, nn.Dropout,
           ("p_zero_is_exact_identity",), "edge probabilities",
           "boltz 553 (bf16 rand hits exactly 0, so p=0 still drops ~0.2 %)", {"p": 0.5}),
    _torch("torch_mask_shared_across_batch", "dropout", SharedAcrossBatch, nn.Dropout,
           ("masks_independent_along_axis0_by_fisher",), "same mask on every device / replica / batch element",
           "functorch vmap batching rule pytorch 92283; transformers 31412", {"p": 0.5}),
    _torch("torch_backward_mask_storage_order", "dropout", BackwardMaskStorageOrder, nn.Dropout, NON_CONTIGUOUS_GRAD,
           "backward uses a different mask or scale than forward",
           "xformers PR 755 (RNG indexing differs fwd/bwd); pytorch 47176 (channels-last / non-contiguous input), "
           "174078 (compiled dropout on a transposed tensor)", {"p": 0.5}),
)

from ._patterns_torch import MUTANTS as _PATTERNS  # noqa: E402  (issue 22: call patterns)

MUTANTS = MUTANTS + _PATTERNS
