"""Base classes shared by the numpy reference variants.

Every variant: ``forward(*inputs)``, ``backward(grad_out)`` (uses exactly the mask of the
last forward), a ``training`` flag, and randomness only from its own
``numpy.random.Generator`` (given, or seeded from ``seed``) — never the global state.
"""
from __future__ import annotations

from typing import Any, ClassVar, Optional, Tuple

import numpy as np

from ..contracts import Contract, inverted_scale
from ..errors import InvalidArgument

FLOAT_DTYPES = (np.float16, np.float32, np.float64)


def as_float_array(x: Any, name: str = "x") -> np.ndarray:
    """Return ``x`` as an ndarray of a float dtype, or raise InvalidArgument."""
    arr = np.asarray(x)
    if arr.dtype not in [np.dtype(d) for d in FLOAT_DTYPES]:
        raise InvalidArgument(f"{name}.dtype={arr.dtype}, but should be float16, float32 or float64")
    return arr


class Variant:
    """A reference layer. Subclasses set ``contract`` and implement ``_forward``/``_backward``."""

    contract: ClassVar[Contract]

    def __init__(self, *, rng: Optional[np.random.Generator] = None, seed: Optional[int] = None,
                 **params: Any) -> None:
        self.params = self.contract.validate_params(params)
        if rng is not None and not isinstance(rng, np.random.Generator):
            raise InvalidArgument(f"rng={rng!r}, but should be a numpy.random.Generator")
        self.rng = rng if rng is not None else np.random.default_rng(seed)
        self.training = True
        self._saved: Any = None

    # -- mode -------------------------------------------------------------------
    def train(self, mode: bool = True) -> "Variant":
        self.training = bool(mode)
        return self

    def eval(self) -> "Variant":
        return self.train(False)

    @property
    def p(self) -> float:
        return float(self.params.get("p", 0.0))

    # -- API --------------------------------------------------------------------
    def forward(self, *inputs: Any) -> np.ndarray:
        arrays = tuple(as_float_array(a, f"input{i}") for i, a in enumerate(inputs))
        self.contract.check_shape(arrays[0].shape)
        return self._forward(*arrays)

    __call__ = forward

    def backward(self, grad_out: Any) -> Any:
        """Gradient of the last forward w.r.t. its inputs (and parameters, where it has them)."""
        if self._saved is None:
            raise InvalidArgument("backward called before forward")
        return self._backward(as_float_array(grad_out, "grad_out"))

    def _forward(self, *inputs: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _backward(self, grad_out: np.ndarray) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"


class BernoulliMaskVariant(Variant):
    """Inverted Bernoulli dropout with one draw per entry of ``mask_shape(x.shape)``,
    broadcast to ``x``: kept entries are ``x * 1/(1-p)``, dropped entries exactly 0.

    Subclasses only say which mask shape they draw (and may override ``scale``).
    In eval mode, or when p = 0, the input is returned unchanged (bit for bit).
    """

    def mask_shape(self, shape: Tuple[int, ...]) -> Tuple[int, ...]:
        return shape

    def scale(self) -> float:
        return inverted_scale(self.p)

    def draw_keep(self, shape: Tuple[int, ...]) -> np.ndarray:
        """Bool keep mask of ``mask_shape(shape)``: True with probability 1 - p.

        ``random() >= p`` keeps exactly with probability 1 - p for p in [0, 1]; p = 0 keeps
        every unit (random() is never negative), p = 1 none.
        """
        return self.rng.random(self.mask_shape(shape)) >= self.p

    def _forward(self, x: np.ndarray) -> np.ndarray:
        if not self.training or self.p == 0.0:
            self._saved = ("identity", x.shape)
            return x
        keep = self.draw_keep(x.shape)
        scale = x.dtype.type(self.scale())
        self._saved = ("mask", keep, scale)
        return np.where(keep, x * scale, x.dtype.type(0))

    def _backward(self, grad_out: np.ndarray) -> np.ndarray:
        if self._saved[0] == "identity":
            return grad_out
        _, keep, scale = self._saved
        return np.where(keep, grad_out * grad_out.dtype.type(scale), grad_out.dtype.type(0))
