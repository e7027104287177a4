"""Which framework a model belongs to, read from the object itself, and the scan that audits it.

Promises: :func:`detect` names the framework of an object from the modules of the classes in its
MRO (``torch.nn`` Module, Keras 3 ``Layer`` / ``Model``, Flax ``nnx.Module``) without importing
any framework; :func:`scanner` returns the scan function for a framework, importing it then, and
turns a missing package into an InvalidArgument (exit 2) naming the package and the extra to
install, never an internal error. An object of no supported framework is an InvalidArgument
naming the frameworks supported (:func:`require_framework`).
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

from ..errors import InvalidArgument

SUPPORTED = ("a torch nn.Module", "a Keras 3 keras.Model / keras.Layer", "a Flax NNX nnx.Module")
"""How errors name the frameworks a scan supports."""

# framework -> (base class module prefix, base class names), checked over the object's MRO
_BASES = (("torch", ("torch.nn.modules.module",), ("Module",)),
          ("keras", ("keras.src.layers.layer", "keras.src.models.model", "keras.layers", "keras"), ("Layer", "Model")),
          ("nnx", ("flax.nnx",), ("Module",)))
# framework -> (the modules it imports, pip package, dropverify extra)
_NEEDS = {"torch": (("torch",), "torch", "torch"),
          "keras": (("keras",), "keras", "keras"),
          "nnx": (("flax.nnx",), "flax", "jax")}


def detect(obj: Any) -> Optional[str]:
    """``"torch"``, ``"keras"`` or ``"nnx"`` from the classes in ``type(obj).__mro__`` (by module
    and name: no framework is imported), else None."""
    for cls in type(obj).__mro__:
        mod = getattr(cls, "__module__", "") or ""
        for name, prefixes, bases in _BASES:
            if cls.__name__ in bases and any(mod == p or mod.startswith(p + ".") for p in prefixes):
                return name
    return None


def require_framework(obj: Any, what: str = "model") -> str:
    """The framework of ``obj``; InvalidArgument naming the supported ones when it has none."""
    found = detect(obj)
    if found is None:
        raise InvalidArgument(f"{what} is a {type(obj).__name__}, but should be "
                              + ", ".join(SUPPORTED[:-1]) + f" or {SUPPORTED[-1]}")
    return found


def _imported(framework: str) -> None:
    import importlib
    modules, package, extra = _NEEDS[framework]
    for mod in modules:
        try:
            importlib.import_module(mod)
        except ImportError as exc:
            missing = getattr(exc, "name", None) or mod
            top = missing.split(".")[0]
            why = "" if top == package else (f" ({package!r} imports it: install it"
                                             + (", or choose another KERAS_BACKEND)" if framework == "keras" else ")"))
            raise InvalidArgument(f"scanning {dict(torch='a torch', keras='a Keras', nnx='a Flax NNX')[framework]} "
                                  f"model needs the package {top!r} ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0][:120]}): pip install 'dropverify[{extra}]'{why}") from None


def scanner(framework: str) -> Callable[..., Any]:
    """The scan function of ``framework`` (``scan(model, inputs, **options) -> ScanReport``)."""
    _imported(framework)
    if framework == "keras":
        from .keras_scan import scan_keras
        return scan_keras
    if framework == "nnx":
        from .nnx_scan import scan_nnx
        return scan_nnx
    from .api import scan_torch
    return scan_torch


def framework_of(obj: Any, what: str = "model") -> Tuple[str, Callable[..., Any]]:
    """(framework, its scan function) for ``obj``: InvalidArgument for no supported framework or a
    missing package."""
    found = require_framework(obj, what)
    return found, scanner(found)


__all__ = ["SUPPORTED", "detect", "framework_of", "require_framework", "scanner"]
