"""Check names as users see them, and the check that produces each.

A check in the registry may report several results: one per axis
(``masks_independent_along_axis1_by_fisher``), per memory layout
(``multiplier_values_exact[transposed]``), or a t-test twin for continuous multipliers
(``..._by_cross_product_t_test``). Each registry entry declares those names
(:attr:`~dropverify.checks.CheckSpec.results`); ``--check``, config waivers and
``dropverify list`` accept and show all of them, and :func:`producing_check` maps each to the
registry entry to run.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

from .checks import CHECKS, check_names, spec_for_result
from .errors import InvalidArgument, did_you_mean

LAYOUTS = ("contiguous", "transposed", "strided", "channels_last")
"""The memory layouts a ``[LAYOUT]`` result name stands for."""


def result_names(check: str) -> Tuple[str, ...]:
    """The names a registry check reports its results under (``K``: an axis index)."""
    spec = next(c for c in CHECKS if c.name == check)
    out: List[str] = []
    for pattern in spec.results:
        if "[LAYOUT]" in pattern:
            out += [pattern.replace("[LAYOUT]", f"[{layout}]") for layout in LAYOUTS]
        else:
            out.append(pattern)
    return tuple(out)


def producing_check(name: str) -> str:
    """The registry check that reports results named ``name``; InvalidArgument (one line,
    naming the choices) if no check does."""
    spec = spec_for_result(name)
    if spec is None:
        known = [*check_names(), *(r for c in check_names() for r in result_names(c) if r != c)]
        close = did_you_mean(name, known)
        raise InvalidArgument(f"check={name!r}, but should be one of: {', '.join(check_names())} "
                              f"(or a per-axis / per-layout result name shown by `dropverify list`){close}")
    return spec.name


def producing_checks(names: Sequence[str]) -> List[str]:
    """:func:`producing_check` of each name, duplicates removed, order kept."""
    out: Dict[str, None] = {}
    for name in names:
        out[producing_check(name)] = None
    return list(out)


__all__ = ["check_names", "producing_check", "producing_checks", "result_names"]
