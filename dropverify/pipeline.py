"""The one path from target names to results: :func:`dropverify.verify` and every ``dropverify``
command (``run``, ``verify``, ``verify-thirdparty``) go through it.

1. :func:`precheck_target` checks a target's name, variant, parameters, shape and layout name from
   tables alone, before any framework or user module is imported (a usage error in about a
   second, with the closest names);
2. :func:`resolve_configuration` turns the name into target specs;
3. :func:`run_configurations` checks each spec's dtype and layout against what its target takes,
   lets the caller check its outputs (``ready``), then runs every check under one family-wise
   false-alarm rate (:func:`dropverify.runner.verify`).

Promises: importing this module loads no check, runner, scipy or framework (the CLI imports it
before validating its arguments); the callers only parse arguments and present results.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, List, Mapping, Optional, Sequence, Tuple

from .errors import InvalidArgument

if TYPE_CHECKING:
    from .runner import RunResult
    from .settings import Settings




def precheck_target(target: str, variant: Optional[str], params: Mapping[str, Any],
                    shape: Optional[Tuple[int, ...]], builtin_variant: bool = True, layout: Optional[str] = None,
                    flags: bool = False) -> Tuple[str, bool]:
    """(reference, is a built-in) of the target name ``target`` after checking its name, variant,
    parameters, shape and layout name from tables alone (no framework, no user module imported);
    InvalidArgument (one line, with the closest names) for a mistake. ``flags``: name the CLI's
    options in messages (``--variant``)."""
    from .errors import did_you_mean
    from .targets.resolve import builtin_names, check_factory_name, check_layout_name, is_builtin, preflight
    ref = target[len("user:"):] if target.startswith("user:") else target
    if ":" not in ref.strip(":"):
        raise InvalidArgument(f"target {target!r}, but should look like FRAMEWORK:LAYER (a built-in, e.g. "
                              "torch:Dropout2d) or MODULE:FACTORY (your own)" + did_you_mean(ref, builtin_names()))
    builtin = is_builtin(ref)
    if not builtin:
        check_factory_name(ref)  # torc:Dropout: did you mean 'torch:Dropout'? (before asking for the variant)
    if not builtin and variant is None:
        raise InvalidArgument(f"{target} is a factory: give the variant it claims with --variant (see `dropverify "
                              "list`)" if flags else f"target={target!r} is a user factory: give its variant (the "
                              "contract it claims)")
    if variant is not None:  # a misspelt variant is a mistake whether or not the built-ins use it
        from .variants import get_contract
        get_contract(variant)
    check_layout_name(layout, "--layout" if flags else "layout")
    preflight(ref, variant, params, shape, builtin_variant=builtin_variant)
    return ref, builtin


def resolve_configuration(target: str, variant: Optional[str], params: Mapping[str, Any],
                          shape: Optional[Tuple[int, ...]], dtype: str = "float64", layout: str = "contiguous",
                          device: str = "cpu", builtin_variant: bool = True, flags: bool = False) -> List[Any]:
    """The specs of one named target configuration (built-in, ``mutant:NAME`` or ``MODULE:FACTORY``):
    :func:`precheck_target` first (tables, no import), then :func:`dropverify.naming.resolve_target`.
    ``builtin_variant`` False: ``variant`` is the one factories claim, not compared with a built-in's."""
    from .naming import resolve_target
    ref, builtin = precheck_target(target, variant, params, shape, builtin_variant, layout, flags)
    return resolve_target(ref, None if (builtin and not builtin_variant) else variant,
                          params, shape, dtype, layout, device)


def run_configurations(specs: Sequence[Any], settings: Settings, checks: Optional[Sequence[str]] = None,
                       progress: Optional[Callable[[str, int, int], None]] = None, *, flags: bool = False,
                       ready: Optional[Callable[[Sequence[Any]], None]] = None, workers: int = 1) -> RunResult:
    """Check every spec's dtype and layout against its target's (InvalidArgument now, not an ERROR
    after sampling; ``flags``: named as the CLI's options), call ``ready(specs)`` (the CLI checks its
    output paths there), then run every check under one family-wise false-alarm rate
    (:func:`dropverify.runner.verify`; ``workers``: processes sharing the targets, the same results)."""
    from .runner import verify as run_checks
    from .targets.resolve import check_capabilities
    check_capabilities(list(specs), flags=flags)
    if ready is not None:
        ready(specs)
    return run_checks(list(specs), settings, checks=checks, progress=progress, workers=workers)


__all__ = ["precheck_target", "resolve_configuration", "run_configurations"]
