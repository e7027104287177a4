"""Reference implementations, one module per family; importing this package registers
every module's contract (:func:`dropverify.contracts.register`), so the lookups of contracts by
name live here. Adding a variant = adding one module here (with its contract)."""
from __future__ import annotations

import importlib
import pkgutil
from typing import Tuple

from ..contracts import Contract, registered
from ..errors import unknown_choice
from ._base import BernoulliMaskVariant, Variant

_CLASSES: dict = {}


def _load() -> None:
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for cls in getattr(module, "VARIANTS", ()):
            _CLASSES[cls.contract.name] = cls


def get_contract(name: str) -> Contract:
    """The contract of a canonical variant name; InvalidArgument lists the known names."""
    contracts = registered()
    try:
        return contracts[name]
    except KeyError:
        raise unknown_choice("variant", name, sorted(contracts)) from None


def all_contracts() -> Tuple[Contract, ...]:
    """Every registered contract, sorted by name."""
    contracts = registered()
    return tuple(contracts[k] for k in sorted(contracts))


def variant_class(name: str) -> type:
    """The reference class of a canonical variant name."""
    get_contract(name)  # raises InvalidArgument with the list of names
    return _CLASSES[name]


def variant_names() -> tuple:
    return tuple(sorted(_CLASSES))


_load()

__all__ = ["Variant", "BernoulliMaskVariant", "all_contracts", "get_contract", "variant_class", "variant_names"]
