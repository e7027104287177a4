"""One way to name a target everywhere (CLI ``run`` / ``verify``, Python ``verify()``, the
project config, sweep workers): a built-in name (``numpy:dropout``, ``torch:Dropout2d``,
``timm:DropBlock2d``), or a user factory ``MODULE:FACTORY`` (``path/to/file.py:FACTORY``),
with canonical parameters, a probe shape, a dtype, a memory layout and a device.

A resolved target is rebuilt from this description alone (:class:`TargetRef`, picklable),
which is what lets worker processes and Dask workers run configurations.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from ..errors import InvalidArgument, did_you_mean, key_value_pairs
from ._base import TargetSpec, check_layout_rank, numpy_dtype, probe_shape_arg


NamedSpec = Callable[[str], Optional[TargetSpec]]
"""A resolver of names defined above the targets (``mutant:NAME``): the spec a name stands
for, None for a name it does not know; it raises InvalidArgument for a name it owns but lacks."""


@dataclass(frozen=True)
class TargetRef:
    """A picklable description of one target configuration (see the module docstring)."""

    target: str
    variant: Optional[str] = None
    params: Mapping[str, Any] = field(default_factory=dict)
    shape: Optional[Tuple[int, ...]] = None
    dtype: str = "float64"
    layout: str = "contiguous"
    device: str = "cpu"

    def specs(self, named: Optional[NamedSpec] = None) -> List[TargetSpec]:
        """The specs this describes (:func:`resolve_target`; ``named`` as there: a ``mutant:NAME``
        needs :func:`dropverify.naming.named_spec`)."""
        return resolve_target(self.target, self.variant, self.params, self.shape, self.dtype, self.layout,
                              self.device, named=named)


def is_builtin(target: str) -> bool:
    """True for ``FRAMEWORK:LAYER`` names of a known framework (numpy, torch, timm ...)."""
    from . import BY_NAME
    framework, sep, _ = target.partition(":")
    return bool(sep) and framework in BY_NAME


def builtin_names() -> Tuple[str, ...]:
    """Every built-in target name (numpy references and the third-party catalogue); no import."""
    from . import BY_NAME, target_names
    return tuple(n for fw in BY_NAME for n in target_names(fw))


def check_factory_name(target: str) -> None:
    """InvalidArgument for a ``MODULE:FACTORY`` whose module cannot be found and whose name is
    close to a built-in target's (``torc:Dropout`` -> did you mean 'torch:Dropout'?); imports
    nothing (only the top-level package is looked up)."""
    import importlib.machinery
    import importlib.util
    import os
    import sys
    module, sep, _ = target.rpartition(":")
    if not sep or not module or module.endswith(".py") or "/" in module or target.startswith("mutant:"):
        return
    top = module.split(".")[0]
    try:
        found = top in sys.modules or importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        found = False
    if not found:  # load_factory imports from the working directory too
        found = importlib.machinery.PathFinder.find_spec(top, [os.getcwd()]) is not None
    if found:
        return
    hint = did_you_mean(target, builtin_names())
    if hint:
        raise InvalidArgument(f"target={target!r}: no built-in of that name and no module {top!r}{hint}")


def check_layout_name(layout: Optional[str], option: str = "layout") -> None:
    """InvalidArgument (one line, the closest names) for a layout no target takes; no import."""
    from ._base import LAYOUT_NAMES
    if layout is not None and layout not in LAYOUT_NAMES:
        shown = f"--layout {layout}" if option.startswith("--") else f"{option}={layout!r}"
        raise InvalidArgument(f"{shown}, but should be one of {', '.join(LAYOUT_NAMES)}"
                              f"{did_you_mean(str(layout), LAYOUT_NAMES)}")


def preflight(target: str, variant: Optional[str], params: Mapping[str, Any],
              shape: Optional[Tuple[int, ...]] = None, builtin_variant: bool = True) -> None:
    """Validate a target's name, variant and parameters from tables alone, before any framework
    (or user module) is imported: InvalidArgument (one line, with the closest names) for an
    unknown built-in, variant or parameter, a parameter value out of range, or a shape of the
    wrong rank (a built-in's contract takes its variant's parameters and ranks: the catalogue
    test holds every adapter to that). ``builtin_variant`` False: ``variant`` is for factories
    only and not compared with a built-in's."""
    from ..variants import get_contract
    if target.startswith("mutant:"):
        return  # resolved by dropverify.naming (the corpus names its mutants)
    if is_builtin(target):
        from . import check_target_name
        from .catalogue import catalogue_variant
        check_target_name(target)
        framework, _, layer = target.partition(":")
        own = layer if framework == "numpy" else catalogue_variant(target)
        if variant is not None and builtin_variant:
            get_contract(variant)  # an unknown name: the list and the closest
            if variant != own:
                raise InvalidArgument(f"variant={variant!r}, but {target} implements {own!r}")
        contract = get_contract(own)
        specs = {s.name: s for s in contract.params}
        for key, value in params.items():
            if key not in specs:
                contract.validate_params({key: value})  # raises: unknown parameter, with the closest
            specs[key].validate(value)
        if shape:
            contract.check_shape(tuple(shape))
        return
    check_factory_name(target)
    if variant is not None:
        contract = get_contract(variant)
        contract.validate_params(dict(params))
        if shape:
            contract.check_shape(tuple(shape))


def resolve_target(target: str, variant: Optional[str] = None, params: Optional[Mapping[str, Any]] = None,
                   shape: Optional[Tuple[int, ...]] = None, dtype: str = "float64", layout: str = "contiguous",
                   device: str = "cpu", *, named: Optional[NamedSpec] = None) -> List[TargetSpec]:
    """The spec(s) of ``target`` configured as asked; InvalidArgument (one line) for any mistake.

    Built-in names take canonical parameters (``p``, ``block_size`` ...; each adapter maps
    them to its library's own: ``rate``, ``drop_prob``) on top of the built-in's own; a
    ``variant`` other than the built-in's is refused. User factories need ``variant``.
    ``named`` (given by a layer above: :func:`dropverify.naming.resolve_target`) resolves
    other names first; its spec is configured as a built-in's.
    """
    params = dict(params or {})
    numpy_dtype(dtype)  # validates the name
    shape = None if isinstance(shape, (tuple, list)) and not shape else probe_shape_arg(shape)  # () = default
    preflight(target, variant, params, shape)  # names, variant, parameters: before any framework import
    spec = named(target) if named is not None else None
    if spec is not None:
        return [_configured(spec, variant, params, shape, dtype, layout)]
    if is_builtin(target):
        from . import get_target
        specs = get_target(target)
        out = []
        for spec in specs:
            if variant is not None and variant != spec.variant:
                raise InvalidArgument(f"variant={variant!r}, but {target} implements {spec.variant!r}")
            if device != "cpu" and not _has_device(spec):
                raise InvalidArgument(f"device={device!r}, but {target} runs on the cpu only here")
            out.append(_configured(spec, None, params, shape, dtype, layout))
        return out
    if variant is None:
        raise InvalidArgument(f"target={target!r} is a user factory: give its variant (the contract it claims)")
    from .user import user_spec
    spec = user_spec(target, variant, params, shape=tuple(shape) if shape else None, device=device)
    check_layout_rank(layout, spec.probe_shape(), spec.name)
    return [dataclasses.replace(spec, dtype=dtype, layout=layout)]


def check_capabilities(specs: List[TargetSpec], flags: bool = False) -> None:
    """InvalidArgument (one line) now, not an ERROR after sampling, for a spec whose dtype or
    layout its target says it does not take (read from the built target's ``dtypes`` /
    ``layouts``; a target that fails to build is left to the run, where that becomes an ERROR
    with the reason). ``flags``: name them as the CLI's options (``--layout X``)."""
    import sys

    import numpy as np
    for spec in specs:
        if spec.dtype == "float64" and spec.layout == "contiguous":
            continue
        try:
            target = spec.build(spec.resolved_params())
            layouts = tuple(getattr(target, "layouts", ()) or ())
            accepted = (*(getattr(target, "dtypes", ()) or ()), *(getattr(target, "sweep_dtypes", ()) or ()),
                        *getattr(sys.modules.get(type(target).__module__), "SWEEP_DTYPES", ()))
            dtypes = tuple(np.dtype(numpy_dtype(t) if isinstance(t, str) else t) for t in accepted)
        except Exception:  # noqa: BLE001 - reported by the run as an ERROR
            continue
        if layouts and spec.layout not in layouts:
            given = f"--layout {spec.layout}" if flags else f"layout={spec.layout!r}"
            raise InvalidArgument(f"{given}, but {spec.name} takes {', '.join(layouts)}")
        if dtypes and np.dtype(numpy_dtype(spec.dtype)) not in dtypes:
            given = f"--dtype {spec.dtype}" if flags else f"dtype={spec.dtype!r}"
            raise InvalidArgument(f"{given}, but {spec.name} takes {', '.join(str(d) for d in dtypes)}")


def _configured(spec: TargetSpec, variant: Optional[str], params: Mapping[str, Any],
                shape: Optional[Tuple[int, ...]], dtype: str, layout: str) -> TargetSpec:
    if variant is not None and variant != spec.variant:
        raise InvalidArgument(f"variant={variant!r}, but {spec.name} implements {spec.variant!r}")
    merged = {**dict(spec.params), **dict(params)}
    spec.resolved_contract().validate_params(merged)
    if shape:
        spec.resolved_contract().check_shape(tuple(shape))
    check_layout_rank(layout, tuple(shape) if shape else spec.probe_shape(), spec.name)
    return dataclasses.replace(spec, params=merged, shape=tuple(shape) if shape else spec.shape, dtype=dtype,
                               layout=layout)


def _has_device(spec: TargetSpec) -> bool:
    return False  # built-in specs are built for the cpu; cuda sweeps use user factories or device-aware specs


def parse_params(items: List[str]) -> Dict[str, Any]:
    """``KEY=VALUE`` strings (CLI ``--param``) -> dict; a repeated key is an error."""
    import ast
    out: Dict[str, Any] = {}
    for key, value in key_value_pairs(items, "--param", "KEY=VALUE", "p=0.1"):
        text = value.strip()
        if text in ("true", "false"):
            out[key] = text == "true"
            continue
        try:
            out[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[key] = text
    return out


__all__ = ["NamedSpec", "TargetRef", "builtin_names", "check_factory_name", "check_layout_name", "is_builtin",
           "parse_params", "preflight", "resolve_target"]
