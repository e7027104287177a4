"""A user's own layer as a target: ``MODULE:FACTORY`` -> TargetSpec.

The factory takes the variant's canonical parameters as keyword arguments (only those its
signature names, or all of them if it takes ``**kwargs``) and returns a torch
``nn.Module``, a Keras layer, a Flax NNX module (holding a ``dropout`` RngStream), a Flax
Linen module (``__call__`` taking ``deterministic``), an Equinox module (``m(x, key=...,
inference=...)``), a plain JAX function ``f(x, key, *, deterministic)`` (told apart from
other callables by its ``key`` parameter), or a numpy layer following the reference interface
(``forward(*inputs)``, ``backward(grad_out)``, ``training``/``train()``, ``rng``).
Every mistake in that contract is an InvalidArgument with one line naming it.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from ..errors import InvalidArgument, did_you_mean
from ._base import TargetSpec
from .numpy_ref import numpy_spec


def load_factory(ref: str) -> Callable[..., Any]:
    """Import ``MODULE:FACTORY`` (MODULE dotted, or a path to a .py file)."""
    module_name, sep, attr = ref.rpartition(":")
    if not sep or not module_name or not attr:
        raise InvalidArgument(f"factory={ref!r}, but should be MODULE:FACTORY, e.g. mylayers:make_dropout")
    from .tf_compat import load_triton_first
    load_triton_first()  # the module may import tensorflow: triton loaded after it segfaults (see tf_compat)
    try:
        if module_name.endswith(".py") or "/" in module_name:
            path = Path(module_name)
            if not path.is_file():
                raise InvalidArgument(f"module file {module_name!r} does not exist")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules.setdefault(path.stem, module)
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        else:
            if "" not in sys.path and "." not in sys.path:
                sys.path.insert(0, "")
            module = importlib.import_module(module_name)
    except InvalidArgument:
        raise
    except ModuleNotFoundError as exc:
        raise InvalidArgument(f"cannot import module {module_name!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - the user's module raised while importing
        raise InvalidArgument(f"importing {module_name!r} raised {type(exc).__name__}: {exc}") from None
    factory = getattr(module, attr, None)
    if factory is None:
        close = did_you_mean(attr, [n for n in vars(module) if not n.startswith("_") and callable(vars(module)[n])])
        raise InvalidArgument(f"module {module_name!r} has no attribute {attr!r}{close}")
    if not callable(factory):
        raise InvalidArgument(f"{ref} is a {type(factory).__name__}, but should be callable")
    return factory


def _accepted(factory: Callable[..., Any], params: Mapping[str, Any], given: Mapping[str, Any],
              ref: str) -> Callable[[Mapping[str, Any]], Dict[str, Any]]:
    """Which canonical parameters to pass: all with **kwargs, else those the signature names."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return lambda prm: dict(prm)
    if any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
        return lambda prm: dict(prm)
    names = {n for n, p in sig.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    missing = sorted(set(given) - names)
    if missing:
        raise InvalidArgument(f"{ref} does not accept parameter {missing[0]!r}; its signature is {sig}")
    if "p" not in names:
        raise InvalidArgument(f"{ref}{sig} must accept the drop probability as keyword argument 'p'")
    pick = lambda prm: {k: v for k, v in prm.items() if k in names}  # noqa: E731
    try:
        sig.bind(**pick(params))
    except TypeError as exc:
        raise InvalidArgument(f"{ref}{sig} cannot be called with {pick(params)}: {exc}") from None
    return pick


def layer_kind(obj: Any) -> str:
    """The framework a layer object (or factory output) belongs to: torch, keras, tf, nnx, linen,
    equinox, numpy, jax (a plain function taking ``key``) or unknown."""
    for cls in type(obj).__mro__:
        mod = cls.__module__ or ""
        if mod.startswith("torch.nn") and cls.__name__ == "Module":
            return "torch"
        if mod.startswith("keras") and cls.__name__ in ("Layer", "Operation"):
            return "keras"
        if mod.startswith("tensorflow") and cls.__name__ == "Module":  # tf.Module, tf-keras 2 layers
            return "tf"
        if cls.__name__ == "Module" and mod.startswith(("flax.nnx", "flax.linen", "equinox")):
            return {"flax.nnx": "nnx", "flax.linen": "linen"}.get(".".join(mod.split(".")[:2]), "equinox")
    if callable(getattr(obj, "forward", None)) and callable(getattr(obj, "backward", None)):
        return "numpy"
    if not isinstance(obj, type) and callable(obj) and _has_parameter(obj, "key"):
        return "jax"  # a plain JAX function f(x, key, *, deterministic)
    return "unknown"


def _has_parameter(fn: Any, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def user_spec(ref: str, variant: str, params: Optional[Mapping[str, Any]] = None,
              shape: Optional[Tuple[int, ...]] = None, device: str = "cpu") -> TargetSpec:
    """The spec of the layer built by ``MODULE:FACTORY``; InvalidArgument for any mistake."""
    return factory_spec(load_factory(ref), variant, params, shape=shape, device=device, name=f"user:{ref}")


def factory_spec(factory: Callable[..., Any], variant: str, params: Optional[Mapping[str, Any]] = None,
                 shape: Optional[Tuple[int, ...]] = None, device: str = "cpu",
                 name: Optional[str] = None) -> TargetSpec:
    """The spec of the layer ``factory(**params)`` builds (torch, Keras, Flax NNX / Linen,
    Equinox, a plain JAX function or numpy, detected from what it returns); InvalidArgument for
    any mistake in the factory."""
    from ..variants import get_contract
    contract = get_contract(variant)
    given = dict(params or {})
    canonical = contract.validate_params(given)
    if shape is not None:
        contract.check_shape(shape)
    ref = name or getattr(factory, "__qualname__", repr(factory))
    name = name or f"user:{ref}"
    pick = _accepted(factory, canonical, given, ref)
    try:
        probe = factory(**pick(canonical))
    except Exception as exc:  # noqa: BLE001
        raise InvalidArgument(f"{ref}(**{pick(canonical)}) raised {type(exc).__name__}: {exc}") from None
    kind = layer_kind(probe)
    make = lambda prm: factory(**pick(prm))  # noqa: E731
    if kind == "numpy":
        if device != "cpu":
            raise InvalidArgument(f"device={device!r}, but a numpy layer runs on the cpu only")
        return numpy_spec(name, variant, make, canonical, shape=shape)
    if kind == "torch":
        from .torch_nn import torch_spec
        return torch_spec(name, variant, lambda **prm: make(prm), canonical, device=device, shape=shape)
    if kind == "keras":
        from .keras_layers import keras_spec
        return keras_spec(name, variant, lambda **prm: make(prm), canonical, shape=shape)
    if kind == "tf":
        if device != "cpu":
            raise InvalidArgument(f"device={device!r}, but a tf.Module target runs where TF places it (cpu here)")
        from .tf_ops import module_spec
        return module_spec(name, variant, lambda **prm: make(prm), canonical, shape=shape)
    if kind in ("nnx", "linen", "equinox", "jax"):
        return _jax_spec(kind, probe, name, variant, make, canonical, shape, device, ref)
    raise InvalidArgument(
        f"{ref} returned a {type(probe).__module__}.{type(probe).__name__}, but should return a torch nn.Module, "
        "a Keras layer, a tf.Module, a Flax NNX Module, a Flax Linen Module, an Equinox Module, a plain JAX "
        "function f(x, key, *, deterministic), or a numpy layer with forward() and backward()")


def _jax_spec(kind: str, probe: Any, name: str, variant: str, make: Callable[[Mapping[str, Any]], Any],
              canonical: Mapping[str, Any], shape: Optional[Tuple[int, ...]], device: str, ref: str) -> TargetSpec:
    """The spec of a Flax NNX / Flax Linen / Equinox module or plain JAX function; the probe is
    checked for the calling convention first (InvalidArgument naming what is missing)."""
    from . import adapter_module
    if device != "cpu":
        raise InvalidArgument(f"device={device!r}, but a JAX target runs where JAX places it (cpu here)")
    what = f"{ref}(...)"
    if kind == "jax":
        mod = adapter_module("jax")
        mod.check_function(probe, what)
        return mod.function_spec(name, variant, lambda **prm: make(prm), canonical, shape=shape)
    if kind == "equinox":
        mod = adapter_module("equinox")
        mod.check_equinox(probe, what)
        return mod.equinox_spec(name, variant, lambda **prm: make(prm), canonical, shape=shape)
    mod = adapter_module("flax")
    if kind == "nnx":
        mod.check_nnx(probe, what)
        return mod.nnx_spec(name, variant, lambda **prm: make(prm), canonical, shape=shape)
    mod.linen_flag(probe, what)
    return mod.linen_spec(name, variant, lambda **prm: make(prm), canonical, shape=shape)
