"""Reference implementations, one module per family; importing this package registers
every module's contract. Adding a variant = adding one module here (with its contract)."""
from __future__ import annotations

import importlib
import pkgutil

from ._base import BernoulliMaskVariant, Variant

_CLASSES: dict = {}


def _load() -> None:
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for cls in getattr(module, "VARIANTS", ()):
            _CLASSES[cls.contract.name] = cls


def variant_class(name: str) -> type:
    """The reference class of a canonical variant name."""
    from ..contracts import get_contract
    get_contract(name)  # raises InvalidArgument with the list of names
    return _CLASSES[name]


def variant_names() -> tuple:
    return tuple(sorted(_CLASSES))


_load()

__all__ = ["Variant", "BernoulliMaskVariant", "variant_class", "variant_names"]
