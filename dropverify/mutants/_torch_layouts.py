"""Layout-dependent backward slip as a custom ``torch.autograd.Function`` (imports torch): the
forward is right on every memory layout, the backward reads the saved mask's storage as if it
were row-major. Registered in :mod:`.torch_mutants`; the numpy twin is :mod:`._layouts`."""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn as nn


class _StorageOrderMask(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        keep = torch.empty_like(x).bernoulli_(1.0 - p)  # empty_like keeps x's strides (preserve_format)
        ctx.save_for_backward(keep)
        ctx.scale = 0.0 if p >= 1.0 else 1.0 / (1.0 - p)
        return x * keep * ctx.scale

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (keep,) = ctx.saved_tensors
        # a hand-written kernel's view of the mask: its storage, walked as if row-major
        flat = keep.as_strided((keep.numel(),), (1,))
        return grad * flat.view(grad.shape) * ctx.scale, None


class BackwardMaskStorageOrder(nn.Module):
    """Custom autograd dropout, right in forward on every layout; backward reads the saved
    mask's storage as row-major (``as_strided(numel, 1).view(shape)``). The mask has the
    input's strides, so on transposed / channels-last inputs the gradient uses a permuted
    mask; contiguous inputs are unaffected."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p={p!r}, but should be in [0, 1]")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return _StorageOrderMask.apply(x, self.p)


NON_CONTIGUOUS_GRAD: Tuple[str, ...] = tuple(f"{check}[{layout}]" for check in (
    "gradient_uses_forward_mask", "gradient_matches_finite_differences") for layout in ("transposed", "channels_last"))
