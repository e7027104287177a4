"""Check names as users see them, and the check that produces each.

A check in the registry may report several results: one per axis
(``masks_independent_along_axis1_by_fisher``), per memory layout
(``multiplier_values_exact[transposed]``), or a t-test twin for continuous multipliers
(``..._by_cross_product_t_test``). ``--check``, config waivers and ``dropverify list`` accept
and show all of these names; :func:`producing_check` maps each to the registry entry to run.
"""
from __future__ import annotations

import re
from typing import Dict, List, Sequence, Tuple

from .errors import InvalidArgument

_AXIS = re.compile(r"^masks_independent_along_axis\d+_by_(fisher|cross_product_t_test)$")
_LAYOUT = re.compile(r"^multiplier_values_exact\[[A-Za-z_]+\]$")
_T_TWIN = "_by_cross_product_t_test"


def check_names() -> Tuple[str, ...]:
    """The registry's check names, in run order."""
    from .checks import CHECKS
    return tuple(c.name for c in CHECKS)


def result_names(check: str) -> Tuple[str, ...]:
    """The name patterns a registry check reports its results under (for ``dropverify list``)."""
    from .checks import independence, values
    if check == "masks_independent_along_axes_by_fisher":
        return ("masks_independent_along_axisK_by_fisher", "masks_independent_along_axisK_by_cross_product_t_test")
    if check == values.NAME:
        return tuple(f"{values.NAME}[{layout}]" for layout in ("contiguous", "transposed", "strided", "channels_last"))
    if check in (independence.FRESH, independence.SEEDS, independence.OVERLAP, independence.FLAT):
        return (check, check.replace("_by_fisher", _T_TWIN))
    return (check,)


def producing_check(name: str) -> str:
    """The registry check that reports results named ``name``; InvalidArgument (one line,
    naming the choices) if no check does."""
    known = check_names()
    if name in known:
        return name
    candidate = name
    if _LAYOUT.match(candidate):
        candidate = candidate.split("[", 1)[0]
    elif _AXIS.match(candidate):
        candidate = "masks_independent_along_axes_by_fisher"
    elif candidate.endswith(_T_TWIN):
        candidate = candidate[: -len(_T_TWIN)] + "_by_fisher"
    if candidate in known:
        return candidate
    raise InvalidArgument(f"check={name!r}, but should be one of: {', '.join(known)} "
                          "(or a per-axis / per-layout result name shown by `dropverify list`)")


def producing_checks(names: Sequence[str]) -> List[str]:
    """:func:`producing_check` of each name, duplicates removed, order kept."""
    out: Dict[str, None] = {}
    for name in names:
        out[producing_check(name)] = None
    return list(out)


__all__ = ["check_names", "producing_check", "producing_checks", "result_names"]
