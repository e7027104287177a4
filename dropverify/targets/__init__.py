"""Targets: adapters that let the same checks run on any implementation.

Built-in targets have short names ``<framework>:<Layer>`` (``numpy:dropout``,
``torch:Dropout2d``, ``timm:DropBlock2d`` ...). Framework adapters are imported only when
one of their targets is asked for; the core never imports torch or keras.
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from ..errors import InvalidArgument, TargetUnavailable, unknown_choice
from ._base import Target, TargetSpec, numpy_dtype, relayout
from .catalogue import catalogue_names
from .numpy_ref import NumpyTarget, numpy_spec, reference_spec



@dataclass(frozen=True)
class Framework:
    """One framework whose built-in targets are named ``<name>:<Layer>``."""

    name: str
    """The name prefix: ``torch`` in ``torch:Dropout2d``."""
    module: str
    """The module that defines its targets (an adapter's ``TARGETS``; numpy's come from the variants)."""
    extra: Optional[str]
    """The pip extra(s) that install it: ``pip install -e ".[<extra>]"`` (None: always installed)."""
    packages: Tuple[str, ...]
    """The Python packages it imports (their versions go in a run's environment)."""


FRAMEWORKS: Tuple[Framework, ...] = (
    Framework("numpy", "dropverify.targets.numpy_ref", None, ("numpy",)),
    Framework("torch", "dropverify.targets.torch_nn", "torch", ("torch",)),
    Framework("torchvision", "dropverify.targets.torchvision_ops", "vision", ("torchvision",)),
    Framework("timm", "dropverify.targets.timm_layers", "vision", ("timm",)),
    Framework("keras", "dropverify.targets.keras_layers", "keras", ("keras",)),
    # Keras on another backend: the names are listed in any process; their specs carry the
    # environment (KERAS_BACKEND=...) a worker needs to run them
    Framework("keras[jax]", "dropverify.targets.keras_layers", "keras,jax", ("keras", "jax", "jaxlib")),
    Framework("keras[tensorflow]", "dropverify.targets.keras_layers", "keras,tf", ("keras", "tensorflow")),
    Framework("tf", "dropverify.targets.tf_ops", "tf", ("tensorflow",)),
    # JAX adapters (each enables jax_enable_x64 when imported)
    Framework("flax", "dropverify.targets.flax_layers", "jax", ("flax",)),
    Framework("equinox", "dropverify.targets.equinox_layers", "jax", ("equinox",)),
    Framework("jax", "dropverify.targets.jax_layers", "jax", ("jax", "jaxlib")),
)
"""THE registry of frameworks with built-in targets; every list of them is derived from it."""

BY_NAME: Dict[str, Framework] = {f.name: f for f in FRAMEWORKS}

ADAPTERS: Dict[str, Tuple[str, str]] = {f.name: (f.module, f.extra) for f in FRAMEWORKS if f.extra is not None}
"""The third-party frameworks (all but numpy): name prefix -> (adapter module, pip extra)."""

THIRDPARTY: Tuple[str, ...] = tuple(ADAPTERS)
"""The third-party framework names, in registry order (``dropverify verify-thirdparty``)."""


def framework_packages(frameworks: Tuple[str, ...] = THIRDPARTY) -> Tuple[str, ...]:
    """The Python packages ``frameworks`` import, each once, in registry order (unknown names: none)."""
    out: List[str] = []
    for name in frameworks:
        for package in BY_NAME[name].packages if name in BY_NAME else ():
            if package not in out:
                out.append(package)
    return tuple(out)


def reference_targets() -> List[TargetSpec]:
    """One spec per reference variant, default parameters."""
    from ..variants import variant_names
    return [reference_spec(name) for name in variant_names()]


def adapter_module(framework: str):
    """Import the adapter of ``framework``; TargetUnavailable names the extra to install."""
    if framework not in ADAPTERS:
        raise unknown_choice("framework", framework, list(BY_NAME))
    module_name, extra = ADAPTERS[framework]
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise TargetUnavailable(f"{framework} targets need the [{extra}] extra: "
                                f"`pip install -e \".[{extra}]\"` in a dropverify checkout ({exc})") from None


def target_names(framework: str) -> Tuple[str, ...]:
    """Names of the built-in targets of ``framework``, read from :mod:`.catalogue` (no framework
    is imported); InvalidArgument for an unknown framework."""
    if framework == "numpy":
        from ..variants import variant_names
        return tuple(f"numpy:{v}" for v in variant_names())
    if framework not in ADAPTERS:
        raise unknown_choice("framework", framework, list(BY_NAME))
    return catalogue_names(framework)


def check_target_name(name: str) -> None:
    """InvalidArgument (with the closest names) unless ``name`` is a built-in target name of a
    known framework; imports no framework."""
    framework, _, layer = name.partition(":")
    if not layer:
        raise InvalidArgument(f"target={name!r}, but should look like FRAMEWORK:LAYER, e.g. torch:Dropout2d")
    if framework not in BY_NAME:
        raise unknown_choice("framework", framework, list(BY_NAME), f" (in target {name!r})")
    if framework == "numpy":
        from ..variants import get_contract
        get_contract(layer)  # InvalidArgument naming the variants, with the closest
        return
    names = target_names(framework)
    if name not in names:
        raise unknown_choice("target", name, names)


def get_target(name: str) -> List[TargetSpec]:
    """The spec(s) behind a built-in target name (one name may expand to several
    configurations, e.g. timm:DropBlock2d with couple_channels both ways)."""
    framework, _, layer = name.partition(":")
    if not layer:
        raise InvalidArgument(f"target={name!r}, but should look like FRAMEWORK:LAYER, e.g. torch:Dropout2d")
    if framework == "numpy":
        return [reference_spec(layer)]
    check_target_name(name)  # before the import: a misspelt name is answered at once
    module = adapter_module(framework)
    if name not in module.TARGETS or framework != name.partition(":")[0]:
        names = tuple(n for n in module.TARGETS if n.partition(":")[0] == framework)
        raise unknown_choice("target", name, names)
    made = module.TARGETS[name]()
    made = list(made) if isinstance(made, (list, tuple)) else [made]
    return [dataclasses.replace(s, ref=(name, k)) for k, s in enumerate(made)]


__all__ = ["ADAPTERS", "BY_NAME", "FRAMEWORKS", "Framework", "NumpyTarget", "THIRDPARTY", "Target", "TargetSpec",
           "adapter_module", "check_target_name", "framework_packages", "get_target", "numpy_dtype", "numpy_spec", "reference_spec", "reference_targets",
           "relayout", "target_names"]
