"""Layout-dependent backward slips (numpy): the forward is right on every memory layout, the
backward reads the mask it saved in another memory order than forward wrote it, so only the
gradient rows of a non-contiguous layout (``gradient_uses_forward_mask[transposed]``) FAIL.
The torch twin is :mod:`._torch_layouts`."""
from __future__ import annotations

from typing import Tuple

import numpy as np

from ..variants.dropout import Dropout
from ._core import Mutant, mutant


class MaskSavedInMemoryOrder(Dropout):
    """Forward right on every layout; the mask is saved flat in the INPUT's memory order
    (``ravel(order='K')``, as a kernel walking the storage would) and backward restores it in
    row-major order: on a Fortran-ordered (transposed) input the gradient's mask is transposed;
    contiguous and row-major strided inputs are unaffected."""

    def _forward(self, x: np.ndarray) -> np.ndarray:
        y = super()._forward(x)
        if self._saved[0] == "mask":
            _, keep, scale = self._saved
            laid = np.empty_like(x, dtype=bool)  # order='K': the input's memory layout
            laid[...] = keep
            self._saved = ("mask", laid.ravel(order="K"), scale)
        return y

    def _backward(self, grad_out: np.ndarray) -> np.ndarray:
        if self._saved[0] == "identity":
            return grad_out
        _, flat, scale = self._saved
        keep = flat.reshape(grad_out.shape)  # row-major: not the order it was saved in
        return np.where(keep, grad_out * grad_out.dtype.type(scale), grad_out.dtype.type(0))


TRANSPOSED_GRAD: Tuple[str, ...] = ("gradient_uses_forward_mask[transposed]",
                                    "gradient_matches_finite_differences[transposed]")

MUTANTS: Tuple[Mutant, ...] = (
    mutant("dropout_backward_mask_memory_order", "dropout", MaskSavedInMemoryOrder, params={"p": 0.5},
           kills=TRANSPOSED_GRAD, bug_class="backward uses a different mask or scale than forward",
           source="xformers PR 755 (RNG indexing differs fwd/bwd); pytorch 47176 / 174078 (non-contiguous, "
                  "transposed inputs)"),
)


class OneElementOffOffContiguous(Dropout):
    """Adversary for the measurements (not in the corpus): forward right; on a non-C-contiguous
    grad_out, backward moves ONE kept element's gradient by ``delta * max(|dx|, 1)`` -- a
    relative (absolute below 1) error of exactly ``delta`` at one element, the quantity the
    gradient check bounds by its tolerance."""

    def __init__(self, p: float = 0.5, delta: float = 2e-9) -> None:
        super().__init__(p=p)
        self.delta = float(delta)

    def _backward(self, grad_out: np.ndarray) -> np.ndarray:
        dx = np.array(super()._backward(grad_out), np.float64)
        if self._saved[0] == "mask" and not grad_out.flags.c_contiguous:
            i = int(np.argmax(self._saved[1].reshape(-1)))  # the first kept element
            flat = dx.reshape(-1)
            flat[i] += self.delta * max(abs(flat[i]), 1.0)
        return dx.astype(grad_out.dtype)
