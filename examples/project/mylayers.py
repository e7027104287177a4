"""Two numpy dropout layers, as a project of yours might have them.

dropverify drives a numpy layer through this protocol: ``forward(*inputs)`` returns the
output; ``backward(grad_out)`` returns the gradient w.r.t. the input of the last forward (a
tuple, one per input, for layers with several inputs); ``training`` (or ``train(mode)``)
switches modes; the randomness comes from ``self.rng``, a ``numpy.random.Generator`` that
dropverify replaces to seed the layer. Factories take the variant's parameters as keyword
arguments.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np


class InvertedDropout:
    """y = x * keep / (1 - p), keep ~ Bernoulli(1 - p) per element; identity in eval mode."""

    def __init__(self, p: float) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p={p!r}, but should be in [0, 1]")
        self.p = float(p)
        self.training = True
        self.rng = np.random.default_rng()
        self._keep: Optional[np.ndarray] = None
        self._scale = 1.0

    def mask_shape(self, shape: Tuple[int, ...]) -> Tuple[int, ...]:
        return shape

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if not self.training or self.p == 0.0:
            self._keep = None
            return x
        self._keep = self.rng.random(self.mask_shape(x.shape)) >= self.p
        self._scale = 0.0 if self.p == 1.0 else 1.0 / (1.0 - self.p)
        return np.where(self._keep, x * x.dtype.type(self._scale), x.dtype.type(0))

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        if self._keep is None:
            return grad_out
        return np.where(self._keep, grad_out * grad_out.dtype.type(self._scale), grad_out.dtype.type(0))


class ChannelDropout(InvertedDropout):
    """Drops whole channels of (N, C, H, W) maps. By design it clips p into [0, 1] instead of
    raising (the project's config schema validates p before it gets here)."""

    def __init__(self, p: float) -> None:
        super().__init__(min(max(float(p), 0.0), 1.0))

    def mask_shape(self, shape: Tuple[int, ...]) -> Tuple[int, ...]:
        return tuple(shape[:2]) + (1,) * (len(shape) - 2)


def make_dropout(p: float) -> InvertedDropout:
    return InvertedDropout(p)


def make_channel_dropout(p: float) -> ChannelDropout:
    return ChannelDropout(p)
