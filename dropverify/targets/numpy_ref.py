"""Adapter for numpy layers that follow the reference interface (ours or a user's).

A numpy layer has ``forward(*inputs)``, ``backward(grad_out)``, a ``training`` flag
(or ``train(mode)``), and draws its randomness from an attribute ``rng`` holding a
``numpy.random.Generator``; ``seed`` replaces that generator. A layer with ``lookup(ids)``
(word-type embedding dropout) exposes it as ``NumpyTarget.lookup``.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Tuple

import numpy as np

from ..contracts import Inputs
from ._base import InputWatch, TargetSpec, relayout, same_values


class NumpyTarget:
    dtypes = (np.float16, np.float32, np.float64)
    layouts = ("contiguous", "transposed", "strided")
    has_gradients = True

    def __init__(self, layer: Any) -> None:
        self.layer = layer

    def seed(self, seed: int) -> None:
        self.layer.rng = np.random.default_rng(seed)

    def _mode(self, training: bool) -> None:
        if hasattr(self.layer, "train"):
            self.layer.train(training)
        else:
            self.layer.training = training

    def forward(self, inputs: Inputs, *, training: bool = True, layout: str = "contiguous") -> np.ndarray:
        self._mode(training)
        return np.asarray(self.layer.forward(*(relayout(a, layout) for a in inputs)))

    def forward_watched(self, inputs: Inputs, *, training: bool = True,
                        layout: str = "contiguous") -> Tuple[np.ndarray, InputWatch]:
        """:meth:`forward` on copies of the inputs that it keeps: whether the call changed them,
        and whether the output holds input 0's values after it (a layer declares in-place work
        with a truthy ``inplace`` attribute)."""
        passed = tuple(relayout(np.array(a, copy=True), layout) for a in inputs)  # never the caller's memory
        before = tuple(a.copy() for a in passed)
        self._mode(training)
        y = np.asarray(self.layer.forward(*passed))
        changed = tuple(not same_values(b, a) for b, a in zip(before, passed))
        holds = bool(passed) and same_values(y, passed[0])
        return y, InputWatch(changed, holds, bool(getattr(self.layer, "inplace", False)))

    @property
    def has_lookup(self) -> bool:
        """Whether the layer has ``lookup(ids)`` (word-type embedding dropout)."""
        return callable(getattr(self.layer, "lookup", None))

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        """The layer's ``lookup(ids)``: rows of its last forward output (an extension of the
        Target protocol that only numpy targets offer; checks test ``has_lookup`` first)."""
        return np.asarray(self.layer.lookup(ids))

    def forward_backward(self, inputs: Inputs, grad_out: np.ndarray, *,
                         layout: str = "contiguous") -> Tuple[np.ndarray, Tuple[np.ndarray, ...]]:
        """One training forward, then ``backward(grad_out)``; the inputs and ``grad_out`` are
        handed over in ``layout`` (Fortran order, a strided view: see ``relayout``)."""
        self._mode(True)
        y = np.asarray(self.layer.forward(*(relayout(a, layout) for a in inputs)))
        grads = self.layer.backward(relayout(np.asarray(grad_out), layout))
        if not isinstance(grads, tuple):
            grads = (grads,)
        return y, tuple(np.asarray(g) for g in grads)


def reference_spec(variant: str, params: Mapping[str, Any] | None = None, **kw: Any) -> TargetSpec:
    """The target spec of our own reference implementation of ``variant``."""
    from ..variants import variant_class
    cls = variant_class(variant)
    kw.setdefault("ref", (f"numpy:{variant}", 0))  # rebuildable by name in a worker process
    return numpy_spec(f"numpy:{variant}", variant, lambda prm: cls(**prm), params, **kw)


def numpy_spec(name: str, variant: str, factory: Callable[..., Any],
               params: Mapping[str, Any] | None = None, **kw: Any) -> TargetSpec:
    """A spec for any numpy layer built by ``factory(params_dict)``."""
    return TargetSpec(name=name, variant=variant, build=lambda prm: NumpyTarget(factory(dict(prm))),
                      params=dict(params or {}), **kw)
