"""Adapter for Flax: NNX modules (``flax.nnx``) and Linen modules (``flax.linen``).

Translation only (see :mod:`dropverify.targets.jax_layers` for arrays, keys, jit, layouts and
the process-wide ``jax_enable_x64`` that importing this module turns on): canonical ``p`` ->
Flax ``rate``.

NNX. The layer owns its randomness: an ``RngStream`` (``nnx.Rngs(dropout=...)``) whose count
advances on every call. ``seed(s)`` calls ``nnx.reseed(module, dropout=jax.random.key(s))``
(the ``default`` stream where the module has no ``dropout`` stream), so the same seed
reproduces and successive calls advance. Modes through ``module.train()`` / ``module.eval()``
(``deterministic=False`` / ``True`` on every nested Dropout). ``[jit]``: ``nnx.jit`` of
``lambda m, *xs: m(*xs)`` (the stream's count is state ``nnx.jit`` carries out of the trace).
Gradients: ``jax.vjp`` of ``(state, *xs) -> nnx.merge(graphdef, state)(*xs)`` (input gradients
returned), the updated state written back
(``nnx.update``) so the stream advances exactly as in a forward call.

Linen. The module is stateless: ``m.apply(variables, *xs, deterministic=not training,
rngs={"dropout": key})`` with a fresh key split per call from ``jax.random.key(seed)``
(``train=`` / ``training=`` instead where ``__call__`` takes that flag). Variables come from
``m.init`` on the first input of each dtype and trailing shape, floating leaves cast to the
input's dtype (Flax creates parameters in float32).
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import numpy as np

from .jax_layers import JAX_DTYPES, JAX_LAYOUTS, KeyedTarget, make_key, to_jax, to_numpy  # noqa: F401

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import linen, nnx  # noqa: E402  (ImportError here -> TargetUnavailable in the registry)

from ..contracts import Inputs  # noqa: E402
from ..errors import InvalidArgument  # noqa: E402
from ._base import TargetSpec  # noqa: E402

Factory = Callable[..., Any]


# ------------------------------------------------------------------------------ NNX

def nnx_streams(module: Any) -> Tuple[str, ...]:
    """Tags of the RngStreams ``module`` holds (e.g. ``('dropout',)``)."""
    return tuple(sorted({s.key.tag for _, s in nnx.iter_graph(module) if isinstance(s, nnx.RngStream)}))


def check_nnx(module: Any, what: str = "the factory's module") -> str:
    """The stream the adapter reseeds (``dropout``, else ``default``); InvalidArgument if the
    module is no ``nnx.Module`` or holds neither stream."""
    if not isinstance(module, nnx.Module):
        raise InvalidArgument(f"{what} is a {type(module).__name__}, but should be an nnx.Module")
    streams = nnx_streams(module)
    for tag in ("dropout", "default"):
        if tag in streams:
            return tag
    raise InvalidArgument(f"{what} holds RngStreams {list(streams)}, but should hold a 'dropout' (or 'default') "
                          "stream: build it with rngs=nnx.Rngs(dropout=0)")


class NNXTarget:
    """An ``nnx.Module`` with its own ``dropout`` RngStream, eagerly or under ``nnx.jit``."""

    has_gradients = True
    strided_tensors = False  # jax arrays have no strides: a layout is the host array's only

    def __init__(self, module: Any, jit: bool = False, dtypes: Tuple[Any, ...] = JAX_DTYPES,
                 layouts: Tuple[str, ...] = JAX_LAYOUTS) -> None:
        self.stream = check_nnx(module)
        self.module, self.jit = module, jit
        self.dtypes, self.layouts = tuple(dtypes), tuple(layouts)
        self._training: Optional[bool] = None
        self._forward = nnx.jit(lambda m, *xs: m(*xs)) if jit else None
        self._vjp: Dict[Any, Callable] = {}

    def seed(self, seed: int) -> None:
        """``nnx.reseed(module, <stream>=jax.random.key(seed mod 2**63))``: key set, count 0."""
        nnx.reseed(self.module, **{self.stream: make_key(seed)})

    def _mode(self, training: bool) -> None:
        if self._training is not training:
            self.module.train() if training else self.module.eval()
            self._training = training

    def forward(self, inputs: Inputs, *, training: bool = True, layout: str = "contiguous") -> np.ndarray:
        self._mode(training)
        xs = tuple(to_jax(a, layout) for a in inputs)
        y = self._forward(self.module, *xs) if self.jit else self.module(*xs)
        return to_numpy(y)

    def forward_backward(self, inputs: Inputs, grad_out: np.ndarray, *,
                         layout: str = "contiguous") -> Tuple[np.ndarray, Tuple[np.ndarray, ...]]:
        """A training call as ``jax.vjp`` of the merged module (jitted for ``[jit]``); the module's
        state after the call (stream count) is written back. Inputs and cotangent are converted
        from host arrays in ``layout``."""
        self._mode(True)
        graphdef, state = nnx.split(self.module)
        if graphdef not in self._vjp:
            def fn(state, xs, g):
                def f(st, *a):  # the state is an argument: NNX refuses updates to a closed-over one
                    m = nnx.merge(graphdef, st)
                    return m(*a), nnx.state(m)
                y, pullback, new_state = jax.vjp(f, state, *xs, has_aux=True)
                return y, pullback(g.astype(y.dtype))[1:], new_state
            self._vjp[graphdef] = jax.jit(fn) if self.jit else fn
        xs = tuple(to_jax(a, layout) for a in inputs)
        y, grads, new_state = self._vjp[graphdef](state, xs, to_jax(grad_out, layout))
        nnx.update(self.module, new_state)
        return to_numpy(y), tuple(to_numpy(g) for g in grads)


def nnx_spec(name: str, variant: str, factory: Factory, params: Optional[Mapping[str, Any]] = None,
             jit: bool = False, **kw: Any) -> TargetSpec:
    """A spec for an ``nnx.Module`` built by ``factory(**canonical_params)``, holding a
    ``dropout`` (or ``default``) RngStream. ``dtypes`` / ``layouts`` in ``kw`` go to
    :class:`NNXTarget`, the rest to :class:`TargetSpec`."""
    target_kw = {k: kw.pop(k) for k in ("dtypes", "layouts") if k in kw}
    return TargetSpec(name=name, variant=variant,
                      build=lambda prm: NNXTarget(factory(**dict(prm)), jit=jit, **target_kw),
                      params=dict(params or {}), **kw)


# ------------------------------------------------------------------------------ Linen

_LINEN_FLAGS = (("deterministic", True), ("train", False), ("training", False))


def linen_flag(module: Any, what: str = "the factory's module") -> Tuple[str, bool]:
    """(name, means_eval) of the mode flag ``module.__call__`` takes: ``deterministic`` (True in
    eval), else ``train`` / ``training`` (False in eval); InvalidArgument otherwise."""
    if not isinstance(module, linen.Module):
        raise InvalidArgument(f"{what} is a {type(module).__name__}, but should be a flax.linen Module")
    try:
        names = inspect.signature(type(module).__call__).parameters
    except (TypeError, ValueError):
        names = {}
    for flag, means_eval in _LINEN_FLAGS:
        if flag in names:
            return flag, means_eval
    raise InvalidArgument(f"{what}.__call__ takes none of deterministic / train / training, but should take "
                          "deterministic (True in eval)")


def linen_call(module: Any) -> Callable[[Any, Tuple[Any, ...], Any, bool], Any]:
    """``call(variables, xs, key, training)``: ``module.apply`` with the mode flag and the key
    as the ``dropout`` rng."""
    flag, means_eval = linen_flag(module)

    def call(variables: Any, xs: Tuple[Any, ...], key: Any, training: bool) -> Any:
        value = (not training) if means_eval else training
        return module.apply(variables, *xs, rngs={"dropout": key}, **{flag: value})
    return call


class LinenTarget(KeyedTarget):
    """A Linen module applied with explicit variables and a fresh ``dropout`` key per call."""

    def __init__(self, module: Any, jit: bool = False, dtypes: Tuple[Any, ...] = JAX_DTYPES,
                 layouts: Tuple[str, ...] = JAX_LAYOUTS) -> None:
        self.module = module
        self._variables: Dict[Any, Any] = {}
        super().__init__(linen_call(module), jit=jit, dtypes=dtypes, layouts=layouts)

    def operand(self, xs: Tuple[Any, ...]) -> Any:
        """``module.init`` on inputs like ``xs`` (cached per dtype and trailing shape), floating
        leaves cast to the input dtype."""
        slot = tuple((str(x.dtype), tuple(x.shape[1:])) for x in xs)
        if slot not in self._variables:
            k = make_key(0)
            flag, means_eval = linen_flag(self.module)
            made = self.module.init({"params": k, "dropout": k}, *xs, **{flag: means_eval})
            dt = xs[0].dtype if xs else None
            self._variables[slot] = jax.tree_util.tree_map(
                lambda v: v.astype(dt) if dt is not None and jnp.issubdtype(v.dtype, jnp.floating) else v, made)
        return self._variables[slot]


def linen_spec(name: str, variant: str, factory: Factory, params: Optional[Mapping[str, Any]] = None,
               jit: bool = False, **kw: Any) -> TargetSpec:
    """A spec for a Linen module built by ``factory(**canonical_params)``, whose ``__call__``
    takes ``deterministic`` (or ``train`` / ``training``) and draws from the ``dropout`` rng.
    ``dtypes`` / ``layouts`` in ``kw`` go to :class:`LinenTarget`, the rest to :class:`TargetSpec`."""
    target_kw = {k: kw.pop(k) for k in ("dtypes", "layouts") if k in kw}
    return TargetSpec(name=name, variant=variant,
                      build=lambda prm: LinenTarget(factory(**dict(prm)), jit=jit, **target_kw),
                      params=dict(params or {}), **kw)


# ------------------------------------------------------------------------------ built-in targets

_FLAX_CONVENTIONS = (
    "canonical p -> Flax rate; Flax does not validate rate: rate < 0 keeps everything scaled by 1/(1 - rate), "
    "rate > 1 drops everything (invalid_p_rejected FAILS by the library's design).",
    "rate == 1 returns zeros_like(x) (no 0/0), as the contract says.",
    "x64 is enabled process-wide by the adapter, so bernoulli compares float64 uniforms.",
)


def _nnx_dropout(p: float, batch_first: Optional[bool] = None) -> Any:
    dims = () if batch_first is None else ((1,) if batch_first else (0,))
    return nnx.Dropout(rate=float(p), broadcast_dims=dims, rngs=nnx.Rngs(dropout=0))


def _linen_dropout(p: float, batch_first: Optional[bool] = None) -> Any:
    dims = () if batch_first is None else ((1,) if batch_first else (0,))
    return linen.Dropout(rate=float(p), broadcast_dims=dims)


def _suffix(jit: bool) -> str:
    return "[jit]" if jit else ""


def _nnx(jit: bool) -> TargetSpec:
    return nnx_spec("flax:nnx.Dropout" + _suffix(jit), "dropout", lambda p: _nnx_dropout(p), jit=jit,
                    conventions=_FLAX_CONVENTIONS + (
                        "seed(s): nnx.reseed(module, dropout=jax.random.key(s)); call k folds the stream count "
                        "k into that key; train()/eval() switch deterministic.",)
                    + (("nnx.jit(lambda m, x: m(x)): the stream count is state carried out of the trace.",)
                       if jit else ()),
                    description="flax.nnx.Dropout(rate, rngs=nnx.Rngs(dropout=0))"
                                + (" under nnx.jit" if jit else ", eager") + ".")


def _nnx_broadcast(jit: bool) -> TargetSpec:
    return nnx_spec("flax:nnx.Dropout[broadcast_dims]" + _suffix(jit), "variational_dropout",
                    lambda p, batch_first=True: _nnx_dropout(p, batch_first), {"batch_first": True}, jit=jit,
                    conventions=("broadcast_dims=(1,) on (N, T, H): one draw per (n, h) shared along time = "
                                 "variational_dropout with batch_first=True (batch_first=False -> (0,))",)
                    + _FLAX_CONVENTIONS,
                    description="flax.nnx.Dropout(rate, broadcast_dims=(1,)): locked dropout"
                                + (" under nnx.jit." if jit else "."))


def _linen(jit: bool) -> TargetSpec:
    return linen_spec("flax:linen.Dropout" + _suffix(jit), "dropout", lambda p: _linen_dropout(p), jit=jit,
                      conventions=_FLAX_CONVENTIONS + (
                          "m.apply({}, x, deterministic=not training, rngs={'dropout': key}), key split per call "
                          "from jax.random.key(seed).",)
                      + (("jax.jit of the apply with the key an argument: a fresh mask per key.",) if jit else ()),
                      description="flax.linen.Dropout(rate)" + (" under jax.jit" if jit else ", eager") + ".")


def _linen_broadcast(jit: bool) -> TargetSpec:
    return linen_spec("flax:linen.Dropout[broadcast_dims]" + _suffix(jit), "variational_dropout",
                      lambda p, batch_first=True: _linen_dropout(p, batch_first), {"batch_first": True}, jit=jit,
                      conventions=("broadcast_dims=(1,) on (N, T, H): one draw per (n, h) shared along time = "
                                   "variational_dropout with batch_first=True (batch_first=False -> (0,))",)
                      + _FLAX_CONVENTIONS,
                      description="flax.linen.Dropout(rate, broadcast_dims=(1,)): locked dropout"
                                  + (" under jax.jit." if jit else "."))


TARGETS: Dict[str, Callable[[], Any]] = {
    "flax:nnx.Dropout": lambda: _nnx(False),
    "flax:nnx.Dropout[jit]": lambda: _nnx(True),
    "flax:nnx.Dropout[broadcast_dims]": lambda: _nnx_broadcast(False),
    "flax:nnx.Dropout[broadcast_dims][jit]": lambda: _nnx_broadcast(True),
    "flax:linen.Dropout": lambda: _linen(False),
    "flax:linen.Dropout[jit]": lambda: _linen(True),
    "flax:linen.Dropout[broadcast_dims]": lambda: _linen_broadcast(False),
    "flax:linen.Dropout[broadcast_dims][jit]": lambda: _linen_broadcast(True),
}

__all__ = ["LinenTarget", "NNXTarget", "TARGETS", "check_nnx", "linen_call", "linen_flag", "linen_spec",
           "nnx_spec", "nnx_streams"]
