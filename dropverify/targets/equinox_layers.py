"""Adapter for Equinox modules (``eqx.Module``), e.g. ``eqx.nn.Dropout``.

Translation only (see :mod:`dropverify.targets.jax_layers` for arrays, keys, jit, layouts and
the process-wide ``jax_enable_x64`` that importing this module turns on). The module is called
as ``m(*xs, key=key, inference=not training)`` with a fresh key split per call from
``jax.random.key(seed)``; ``inference=`` is passed where ``__call__`` takes it, and the module
is first put in the mode with ``eqx.nn.inference_mode(m, not training)`` (which sets
``inference`` on every nested Dropout, the Equinox way to switch a whole model). ``[jit]``:
``eqx.filter_jit`` with the module and the key as arguments. Gradients: ``jax.vjp``.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from .jax_layers import JAX_DTYPES, JAX_LAYOUTS, KeyedTarget, accepts

import equinox as eqx  # noqa: E402  (ImportError here -> TargetUnavailable in the registry)

from ..errors import InvalidArgument  # noqa: E402
from ._base import TargetSpec  # noqa: E402

Factory = Callable[..., Any]


def check_equinox(module: Any, what: str = "the factory's module") -> bool:
    """Whether ``module.__call__`` takes ``inference``; InvalidArgument unless ``module`` is an
    ``eqx.Module`` whose ``__call__`` takes ``key``."""
    if not isinstance(module, eqx.Module):
        raise InvalidArgument(f"{what} is a {type(module).__name__}, but should be an eqx.Module")
    if not callable(module) or accepts(type(module).__call__, "key") is None:
        raise InvalidArgument(f"{what}.__call__ takes no 'key', but should be called as m(x, key=key, inference=...)")
    return accepts(type(module).__call__, "inference") is not None


def equinox_call(module: Any) -> Callable[[Any, Tuple[Any, ...], Any, bool], Any]:
    """``call(module, xs, key, training)``: ``inference_mode(module, not training)(*xs, key=key
    [, inference=not training])``; the module is the call's operand (an argument under jit)."""
    takes_inference = check_equinox(module)

    def call(m: Any, xs: Tuple[Any, ...], key: Any, training: bool) -> Any:
        m = eqx.nn.inference_mode(m, value=not training)
        if takes_inference:
            return m(*xs, key=key, inference=not training)
        return m(*xs, key=key)
    return call


class EquinoxTarget(KeyedTarget):
    """An Equinox module called with a fresh key per call, eagerly or under ``eqx.filter_jit``."""

    def __init__(self, module: Any, jit: bool = False, dtypes: Tuple[Any, ...] = JAX_DTYPES,
                 layouts: Tuple[str, ...] = JAX_LAYOUTS) -> None:
        self.module = module
        super().__init__(equinox_call(module), jit=jit, jitter=eqx.filter_jit, dtypes=dtypes, layouts=layouts,
                         operand=module)


def equinox_spec(name: str, variant: str, factory: Factory, params: Optional[Mapping[str, Any]] = None,
                 jit: bool = False, **kw: Any) -> TargetSpec:
    """A spec for an ``eqx.Module`` built by ``factory(**canonical_params)`` and called as
    ``m(x, key=key, inference=...)``. ``dtypes`` / ``layouts`` in ``kw`` go to
    :class:`EquinoxTarget`, the rest to :class:`TargetSpec`."""
    target_kw = {k: kw.pop(k) for k in ("dtypes", "layouts") if k in kw}
    return TargetSpec(name=name, variant=variant,
                      build=lambda prm: EquinoxTarget(factory(**dict(prm)), jit=jit, **target_kw),
                      params=dict(params or {}), **kw)


# ------------------------------------------------------------------------------ built-in targets

_CONVENTIONS = (
    "canonical p -> Equinox p; eqx.nn.Dropout does not validate p: p < 0 keeps everything scaled by 1/(1 - p), "
    "p > 1 drops everything (invalid_p_rejected FAILS by the library's design).",
    "m(x, key=key, inference=not training), key split per call from jax.random.key(seed).",
    "x64 is enabled process-wide by the adapter, so bernoulli compares float64 uniforms.",
)


def _dropout(jit: bool) -> TargetSpec:
    return equinox_spec("equinox:Dropout" + ("[jit]" if jit else ""), "dropout", lambda p: eqx.nn.Dropout(p=float(p)),
                        jit=jit,
                        conventions=_CONVENTIONS
                        + (("eqx.filter_jit with the module and key as arguments: a fresh mask per key.",)
                           if jit else ()),
                        description="equinox.nn.Dropout(p): jnp.where(bernoulli(key, 1 - p), x / (1 - p), 0)"
                                    + (" under eqx.filter_jit." if jit else ", eager."))


TARGETS: Dict[str, Callable[[], Any]] = {
    "equinox:Dropout": lambda: _dropout(False),
    "equinox:Dropout[jit]": lambda: _dropout(True),
}

__all__ = ["EquinoxTarget", "TARGETS", "check_equinox", "equinox_call", "equinox_spec"]
