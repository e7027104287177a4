"""Model-level audit of dropout: ``dropverify scan`` and ``dropverify.scan(model, example_inputs)``.

Modules: :mod:`.kinds` (dropout-family classes), :mod:`.behaviour` (a variant from what a module
does), :mod:`.discovery` (dropout-family modules and functional calls, recorded while the
model runs), :mod:`.model_checks` (exact model-level checks), :mod:`.insitu` (each site as a
TargetSpec for the runner: one Holm family per model), :mod:`.report` (site table, Markdown,
JSON), :mod:`.api` (:func:`scan`), :mod:`.cli` (the subcommand). Importing this package does
not import torch; its attributes load on first use.
"""
from __future__ import annotations

from typing import Any

_LAZY = {"scan": ("api", "scan"), "ScanReport": ("api", "ScanReport"), "register": ("discovery", "register"),
         "unregister": ("discovery", "unregister"), "QUICK_CHECKS": ("insitu", "QUICK_CHECKS")}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dropverify.modelscan' has no attribute {name!r}")
