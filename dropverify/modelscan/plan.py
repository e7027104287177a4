"""The in-situ plan of a scan, whatever the framework: which sites get a spec (one spec per distinct
replay), which are skipped and why, and the checks a scan runs at each site (:data:`QUICK_CHECKS`,
:func:`choose_checks`). The specs themselves come from the framework: :mod:`.insitu` for torch, the
Keras and NNX scans' own ``spec_for``. Importing this module imports no framework.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .site_checks import eval_active_match
from .sites import Call, Site

EDGE_CHECKS = ("p_zero_is_exact_identity", "p_one_gives_zeros_with_finite_gradients", "invalid_p_rejected",
               "nonfinite_inputs_leave_others_untouched", "dtype_and_shape_preserved", "empty_batch_works")
EDGE_REASON = ("the scan verifies the site as the model configures it (its p, shape and dtype); the layer's edge "
               "cases at other p, dtypes and shapes are `dropverify run`'s")

QUICK_CHECKS = ("drop_rate_matches_by_binomial", "expectation_matches_by_t_test", "multiplier_values_exact",
                  "mask_constant_along_shared_axes", "masks_never_repeat_by_hash",
                  "eval_mode_deterministic_and_exact", "gradient_uses_forward_mask",
                  "drop_map_matches_theory_by_binomial", "gamma_matches_by_binomial", "block_rate_matches_by_t_test",
                  "dropped_set_is_union_of_blocks", "block_mask_shared_across_channels")
"""The checks of a quick scan (``--quick``, ``checks="quick"``) at each site: the drop rate, the
scale (mean and exact kept values), the mask structure, no repeated masks, nothing dropped in
eval, the gradient through the forward mask, and DropBlock's map, gamma, block rate and
contiguity. A default scan runs every applicable check, as ``dropverify run`` does."""


@dataclass
class Plan:
    """The specs to run and, for each site (by name), the spec standing for it or why none."""

    specs: List[Any] = field(default_factory=list)
    spec_of: Dict[str, str] = field(default_factory=dict)      # site name -> spec name
    members: Dict[str, List[str]] = field(default_factory=dict)  # spec name -> site names
    skipped: Dict[str, str] = field(default_factory=dict)      # site name -> reason


def _consistent(calls: Sequence[Call]) -> Tuple[Call, str]:
    """The first call, and a note when later calls differ from it in p, shape or dtype."""
    first = calls[0]
    other = sum(1 for c in calls[1:] if (c.p, c.shapes, c.dtype, c.applied) != (first.p, first.shapes, first.dtype,
                                                                                   first.applied))
    note = (f" The site was called {len(calls)} times in training; {other} call(s) differ from the first in p, shape "
            "or dtype, and the first is verified." if other else "")
    return first, note


def not_applicable() -> Dict[str, str]:
    return {c: EDGE_REASON for c in EDGE_CHECKS}


def _torch_spec_for(site: Site) -> Callable[..., Any]:
    from .insitu import _functional_spec, _module_spec
    return _module_spec if site.is_module else _functional_spec


def plan(sites: Sequence[Site], eval_active: Sequence[str] = (),
         spec_for: Optional[Callable[..., Tuple[Optional[Any], Optional[tuple], str]]] = None) -> Plan:
    """One spec per distinct replay; every site mapped to its spec or to the reason it has none.
    Sites matching an ``eval_active`` pattern are verified as dropout in eval (MC dropout).
    ``spec_for(site, first_call, note, eval_active=...) -> (spec, key, why)`` builds a site's spec
    (default: the torch replays; the Keras and NNX scans pass their own)."""
    out = Plan()
    by_key: Dict[tuple, str] = {}
    for site in sites:
        calls = site.phase("train")
        if not calls:
            out.skipped[site.name] = "not called in training"
            continue
        first, note = _consistent(calls)
        if first.p <= 0:
            out.skipped[site.name] = "p=0 in training"
            continue
        if not first.applied:
            out.skipped[site.name] = "inactive in training"
            continue
        try:
            spec, key, why = (spec_for or _torch_spec_for(site))(
                site, first, note, eval_active=eval_active_match(site, eval_active))
        except Exception as exc:  # noqa: BLE001 - an unplannable site is reported, the scan goes on
            spec, key, why = None, None, f"could not build its replay: {type(exc).__name__}: {exc}"
        if spec is None:
            out.skipped[site.name] = why
            continue
        if key is not None and key in by_key:
            owner = by_key[key]
            out.spec_of[site.name] = owner
            out.members[owner].append(site.name)
            continue
        if key is not None:
            by_key[key] = spec.name
        out.specs.append(spec)
        out.spec_of[site.name] = spec.name
        out.members[spec.name] = [site.name]
    for spec_index, spec in enumerate(out.specs):
        others = out.members[spec.name][1:]
        if others:
            shown_others = ", ".join(others[:6]) + (f" and {len(others) - 6} more" if len(others) > 6 else "")
            out.specs[spec_index] = dataclasses.replace(
                spec, description=spec.description + f" Stands for {len(others)} identical site(s) too: {shown_others}.")
    return out


def choose_checks(checks: Optional[Sequence[str]]) -> Optional[List[str]]:
    """None or ``["all"]``: every applicable check, as ``dropverify run`` (None returned; the edge
    cases stay not applicable); ``"quick"``: :data:`QUICK_CHECKS`; otherwise the producing checks
    of the names given (InvalidArgument for an unknown name)."""
    from ..checknames import producing_checks
    if checks is None:
        return None
    names = [checks] if isinstance(checks, str) else list(checks)
    if names == ["all"]:
        return None
    if names == ["quick"]:
        return list(QUICK_CHECKS)
    return producing_checks(names)


__all__ = ["EDGE_CHECKS", "EDGE_REASON", "Plan", "QUICK_CHECKS", "choose_checks", "eval_active_match",
           "not_applicable", "plan"]
