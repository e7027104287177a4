"""Every target name, resolved in one place above the targets and the mutants: the built-in
and user-factory names of :mod:`dropverify.targets.resolve`, and ``mutant:NAME`` (a mutant
of the corpus, :func:`dropverify.mutants.spec_by_name`). The CLI, the Python API and the
sweep (its worker processes included: they rebuild a configuration from its name) resolve
targets here."""
from __future__ import annotations

from typing import Any, List, Mapping, Optional, Tuple

from .targets._base import TargetSpec
from .targets.resolve import resolve_target as _resolve_builtin_or_user


def named_spec(target: str) -> Optional[TargetSpec]:
    """The spec of a name defined above the targets (``mutant:NAME``); None for any other."""
    if not target.startswith("mutant:"):
        return None
    from .mutants import spec_by_name  # the corpus loads only for mutant names
    return spec_by_name(target)


def resolve_target(target: str, variant: Optional[str] = None, params: Optional[Mapping[str, Any]] = None,
                   shape: Optional[Tuple[int, ...]] = None, dtype: str = "float64", layout: str = "contiguous",
                   device: str = "cpu") -> List[TargetSpec]:
    """:func:`dropverify.targets.resolve.resolve_target`, ``mutant:NAME`` included."""
    return _resolve_builtin_or_user(target, variant, params, shape, dtype, layout, device, named=named_spec)


__all__ = ["named_spec", "resolve_target"]
