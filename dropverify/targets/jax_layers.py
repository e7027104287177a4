"""Adapter core for JAX (shared by the Flax and Equinox adapters) and plain JAX functions.

Translation only: numpy probes -> ``jnp`` arrays (dtype kept; bfloat16 through ml_dtypes),
explicit PRNG keys, train/eval flags, ``jax.jit`` or eager, and gradients from ``jax.vjp``.

Importing this module turns on 64-bit mode: ``jax.config.update("jax_enable_x64", True)``
(a process-wide JAX setting), so float64 probes stay float64 instead of being truncated to
float32. A side effect users should know: with x64 on, ``jax.random.bernoulli(key, p, shape)``
compares float64 uniforms (its ``p`` is canonicalised to the default float), so a given key
yields other masks than in an x64-off process; the distribution is the same.

Keys. A key-taking target (plain function, Linen, Equinox) holds ``jax.random.key(seed)``
after ``seed(seed)`` and splits it before every call (``key, sub = split(key)``), passing
``sub``: the same seed reproduces, successive calls get fresh keys, seeds are independent.
Seeds are taken modulo 2**63 (threefry seeds are 64-bit integers).

jit. A ``[jit]`` target calls ``jax.jit`` of the same function with the key as an argument
(the mode static), so a correct layer draws a fresh mask per key; a layer that fixes its
randomness at trace time (a key drawn in Python while tracing) repeats one mask and FAILs the
freshness checks.

Layouts. JAX arrays have no user-visible memory layout: ``transposed`` and ``strided``
hand ``jnp.asarray`` a non-contiguous numpy array (Fortran order, every other element of a
wider buffer), which checks the host-to-device copy keeps every value in place.

Plain functions. ``f(x, key, *, deterministic)``: ``x`` the input (several inputs come
first, positionally), ``key`` a ``jax.random.key``, ``deterministic=True`` in eval mode.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import jax  # noqa: E402  (ImportError here -> TargetUnavailable in the registry)
import jax.numpy as jnp
import ml_dtypes
import numpy as np

jax.config.update("jax_enable_x64", True)

from ..contracts import Inputs  # noqa: E402
from ..errors import InvalidArgument  # noqa: E402
from ._base import TargetSpec, relayout  # noqa: E402

JAX_DTYPES: Tuple[Any, ...] = (np.float16, ml_dtypes.bfloat16, np.float32, np.float64)
JAX_LAYOUTS: Tuple[str, ...] = ("contiguous", "transposed", "strided")
SEED_MOD = 2 ** 63
# call(operand, xs, key, training) -> y: one pure application of a layer (its pytree operand:
# None, Linen variables, an Equinox module) to its inputs under a key
KeyedCall = Callable[[Any, Tuple[Any, ...], Any, bool], Any]


def make_key(seed: int) -> Any:
    """``jax.random.key(seed mod 2**63)`` (a typed threefry key)."""
    return jax.random.key(int(seed) % SEED_MOD)


def to_jax(a: np.ndarray, layout: str = "contiguous") -> Any:
    """A device array with ``a``'s values and dtype, read from ``a`` laid out as ``layout``."""
    return jnp.asarray(relayout(np.asarray(a), layout))


def to_numpy(y: Any) -> np.ndarray:
    """A numpy copy in the array's own dtype (bfloat16 as ml_dtypes.bfloat16)."""
    return np.array(y, copy=True)


def accepts(fn: Callable[..., Any], name: str) -> Optional[inspect.Parameter]:
    """The parameter ``name`` of ``fn`` (a ``**kwargs`` parameter if it has no such name), or None."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    if name in sig.parameters:
        return sig.parameters[name]
    return next((p for p in sig.parameters.values() if p.kind is p.VAR_KEYWORD), None)


class KeyedTarget:
    """A layer applied as ``call(operand, xs, key, training)``, eagerly or under ``jax.jit``.

    ``operand`` (a pytree argument of the jitted function, never a trace-time constant) is
    what :meth:`operand` returns for the inputs (default: the ``operand`` given). ``jitter``
    wraps a function ``(operand, xs, key) -> y`` of one mode (default ``jax.jit``; Equinox
    passes ``eqx.filter_jit``). The key is split from the seed's key before every call (see
    the module docstring); gradients are ``jax.vjp`` of the same function under the same key.
    """

    has_gradients = True
    strided_tensors = False  # jax arrays have no strides: a layout is the host array's only

    def __init__(self, call: KeyedCall, jit: bool = False, jitter: Optional[Callable[[Callable], Callable]] = None,
                 dtypes: Tuple[Any, ...] = JAX_DTYPES, layouts: Tuple[str, ...] = JAX_LAYOUTS,
                 operand: Any = None) -> None:
        self.call, self.jit, self._operand = call, jit, operand
        self.jitter = jitter or jax.jit
        self.dtypes, self.layouts = tuple(dtypes), tuple(layouts)
        self._key = make_key(0)
        self._fns: Dict[Tuple[str, bool], Callable] = {}

    def seed(self, seed: int) -> None:
        self._key = make_key(seed)

    def operand(self, xs: Tuple[Any, ...]) -> Any:
        """The pytree the layer is applied with, for inputs ``xs``."""
        return self._operand

    def _next_key(self) -> Any:
        self._key, sub = jax.random.split(self._key)
        return sub

    def _fn(self, kind: str, training: bool) -> Callable:
        """``forward(operand, xs, key)`` or ``vjp(operand, xs, key, g) -> (y, grads)`` of one
        mode, jitted if asked."""
        if (kind, training) not in self._fns:
            call = self.call
            if kind == "forward":
                def fn(operand, xs, key):
                    return call(operand, xs, key, training)
            else:
                def fn(operand, xs, key, g):
                    y, pullback = jax.vjp(lambda *a: call(operand, a, key, training), *xs)
                    return y, pullback(g.astype(y.dtype))
            self._fns[kind, training] = self.jitter(fn) if self.jit else fn
        return self._fns[kind, training]

    def forward(self, inputs: Inputs, *, training: bool = True, layout: str = "contiguous") -> np.ndarray:
        xs = tuple(to_jax(a, layout) for a in inputs)
        return to_numpy(self._fn("forward", training)(self.operand(xs), xs, self._next_key()))

    def forward_backward(self, inputs: Inputs, grad_out: np.ndarray, *,
                         layout: str = "contiguous") -> Tuple[np.ndarray, Tuple[np.ndarray, ...]]:
        """One training call and ``jax.vjp``'s gradients of ``sum(grad_out * y)`` w.r.t. the inputs
        (the cotangent cast to the output dtype); inputs and cotangent converted from host
        arrays in ``layout`` (jax arrays themselves have none)."""
        xs = tuple(to_jax(a, layout) for a in inputs)
        y, grads = self._fn("vjp", True)(self.operand(xs), xs, self._next_key(), to_jax(grad_out, layout))
        return to_numpy(y), tuple(to_numpy(g) for g in grads)


# ------------------------------------------------------------------------------ plain JAX functions

def check_function(fn: Any, what: str = "the factory's function") -> None:
    """InvalidArgument unless ``fn`` is callable as ``fn(x, key, *, deterministic)``."""
    if not callable(fn):
        raise InvalidArgument(f"{what} is a {type(fn).__name__}, but should be a function f(x, key, *, deterministic)")
    for name in ("key", "deterministic"):
        if accepts(fn, name) is None:
            raise InvalidArgument(f"{what} takes no {name!r} parameter, but should be f(x, key, *, deterministic)")


def function_call(fn: Callable[..., Any]) -> KeyedCall:
    """``fn(*xs, key, deterministic=not training)`` (key by keyword where it is keyword-only)."""
    check_function(fn)
    param = accepts(fn, "key")
    by_name = param is not None and param.kind in (param.KEYWORD_ONLY, param.VAR_KEYWORD)

    def call(_: Any, xs: Tuple[Any, ...], key: Any, training: bool) -> Any:
        if by_name:
            return fn(*xs, key=key, deterministic=not training)
        return fn(*xs, key, deterministic=not training)
    return call


def function_spec(name: str, variant: str, factory: Callable[..., Callable[..., Any]],
                  params: Optional[Mapping[str, Any]] = None, jit: bool = False, **kw: Any) -> TargetSpec:
    """A spec for a plain JAX function ``factory(**canonical_params) -> f(x, key, *, deterministic)``.

    The factory may raise for parameters it rejects (the edge-case checks rely on that);
    ``jit=True`` verifies ``jax.jit`` of the function. ``dtypes`` / ``layouts`` in ``kw`` go to
    :class:`KeyedTarget`, the rest to :class:`TargetSpec`.
    """
    target_kw = {k: kw.pop(k) for k in ("dtypes", "layouts") if k in kw}
    return TargetSpec(name=name, variant=variant,
                      build=lambda prm: KeyedTarget(function_call(factory(**dict(prm))), jit=jit, **target_kw),
                      params=dict(params or {}), **kw)


# ------------------------------------------------------------------------------ built-in targets

def bernoulli_dropout(p: float) -> Callable[..., Any]:
    """A correct inverted dropout in plain JAX: keep with probability 1 - p
    (``jax.random.bernoulli``), kept values divided by 1 - p; p = 1 gives zeros (and zero
    gradients); p outside [0, 1] raises ValueError."""
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p={p!r}, but should be in [0, 1]")

    def dropout(x: Any, key: Any, *, deterministic: bool) -> Any:
        if deterministic or p == 0.0:
            return x
        if p == 1.0:
            return jnp.zeros_like(x)
        keep = jax.random.bernoulli(key, 1.0 - p, jnp.shape(x))
        return jnp.where(keep, x / jnp.asarray(1.0 - p, x.dtype), jnp.zeros_like(x))
    return dropout


def _bernoulli(jit: bool) -> TargetSpec:
    return function_spec(
        "jax:random.bernoulli" + ("[jit]" if jit else ""), "dropout", bernoulli_dropout, jit=jit,
        conventions=("A hand-written inverted dropout f(x, key, *, deterministic) in plain JAX (no library layer): "
                     "the reference a user writing their own would aim for.",
                     "x64 is enabled process-wide by the adapter, so bernoulli compares float64 uniforms.")
        + (("jax.jit(f) with the key an argument: a fresh mask per key.",) if jit else ()),
        description="jnp.where(jax.random.bernoulli(key, 1 - p, x.shape), x / (1 - p), 0)"
                    + (" under jax.jit" if jit else ", eager") + ".")


TARGETS: Dict[str, Callable[[], Any]] = {
    "jax:random.bernoulli": lambda: _bernoulli(False),
    "jax:random.bernoulli[jit]": lambda: _bernoulli(True),
}

__all__ = ["JAX_DTYPES", "JAX_LAYOUTS", "KeyedTarget", "TARGETS", "accepts", "bernoulli_dropout",
           "check_function", "function_call", "function_spec", "make_key", "to_jax", "to_numpy"]
