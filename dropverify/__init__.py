"""dropverify: certify dropout-family layers against their contracts, with stated error rates.

The Python way in::

    import dropverify
    report = dropverify.verify("torch:Dropout", p=0.2)   # or a factory / layer object + variant
    report.assert_ok()                                   # AssertionError listing every FAIL, seed, reproduction

``verify``, ``Report``, ``Settings``, ``DEFAULT_SEED`` and the contract lookups are imported on first use, so
``import dropverify`` (and the pytest plugin) stay light.
"""
from __future__ import annotations

from typing import Any

from .contracts import Contract, ParamSpec
from .errors import CheckFailed, DropverifyError, InvalidArgument, TargetUnavailable

__version__ = "0.1.0"

CheckFailed.__module__ = __name__  # reported as dropverify.CheckFailed (its public name) in pytest summaries

_LAZY = {"verify": ("api", "verify"), "Report": ("api", "Report"), "DEFAULT_SEED": ("settings", "DEFAULT_SEED"),
         "Settings": ("settings", "Settings"), "scan": ("modelscan.api", "scan"),
         "get_contract": ("variants", "get_contract"), "all_contracts": ("variants", "all_contracts"),
         "CheckResult": ("results", "CheckResult"), "Verdict": ("results", "Verdict"), "worst": ("results", "worst")}

__all__ = [
    "CheckFailed", "CheckResult", "Contract", "DEFAULT_SEED", "DropverifyError", "InvalidArgument", "ParamSpec",
    "Report", "Settings", "TargetUnavailable", "Verdict", "all_contracts", "get_contract", "scan", "verify", "worst",
    "__version__",
]


def __getattr__(name: str) -> Any:
    """Lazy attributes of the public API (PEP 562)."""
    if name in _LAZY:
        import importlib
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dropverify' has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY))
