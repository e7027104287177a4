"""Targets: adapters that let the same checks run on any implementation.

Built-in targets have short names ``<framework>:<Layer>`` (``numpy:dropout``,
``torch:Dropout2d``, ``timm:DropBlock2d`` ...). Framework adapters are imported only when
one of their targets is asked for; the core never imports torch or keras.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Callable, Dict, List, Tuple

from ..errors import InvalidArgument, TargetUnavailable
from ._base import Target, TargetSpec, relayout
from .numpy_ref import NumpyTarget, numpy_spec, reference_spec

# framework prefix -> (adapter module, pip extra that provides the framework)
ADAPTERS: Dict[str, Tuple[str, str]] = {
    "torch": ("dropverify.targets.torch_nn", "torch"),
    "torchvision": ("dropverify.targets.torchvision_ops", "vision"),
    "timm": ("dropverify.targets.timm_layers", "vision"),
    "keras": ("dropverify.targets.keras_layers", "keras"),
    # Keras on another backend: the names are listed in any process; their specs carry the
    # environment (KERAS_BACKEND=...) a worker needs to run them
    "keras[jax]": ("dropverify.targets.keras_layers", "keras,jax"),
    "keras[tensorflow]": ("dropverify.targets.keras_layers", "keras,tf"),
    "tf": ("dropverify.targets.tf_ops", "tf"),
    # JAX adapters (each enables jax_enable_x64 when imported)
    "flax": ("dropverify.targets.flax_layers", "jax"),
    "equinox": ("dropverify.targets.equinox_layers", "jax"),
    "jax": ("dropverify.targets.jax_layers", "jax"),
}


def reference_targets() -> List[TargetSpec]:
    """One spec per reference variant, default parameters."""
    from ..variants import variant_names
    return [reference_spec(name) for name in variant_names()]


def adapter_module(framework: str):
    """Import the adapter of ``framework``; TargetUnavailable names the extra to install."""
    if framework not in ADAPTERS:
        raise InvalidArgument(f"framework={framework!r}, but should be one of: numpy, {', '.join(ADAPTERS)}")
    module_name, extra = ADAPTERS[framework]
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise TargetUnavailable(f"{framework} targets need `pip install dropverify[{extra}]` ({exc})") from None


def target_names(framework: str) -> Tuple[str, ...]:
    """Names of the built-in targets of ``framework`` (imports its adapter)."""
    if framework == "numpy":
        return tuple(s.name for s in reference_targets())
    return tuple(n for n in adapter_module(framework).TARGETS if n.partition(":")[0] == framework)


def get_target(name: str) -> List[TargetSpec]:
    """The spec(s) behind a built-in target name (one name may expand to several
    configurations, e.g. timm:DropBlock2d with couple_channels both ways)."""
    framework, _, layer = name.partition(":")
    if not layer:
        raise InvalidArgument(f"target={name!r}, but should look like FRAMEWORK:LAYER, e.g. torch:Dropout2d")
    if framework == "numpy":
        return [reference_spec(layer)]
    module = adapter_module(framework)
    if name not in module.TARGETS or framework != name.partition(":")[0]:
        raise InvalidArgument(f"target={name!r}, but should be one of: {', '.join(target_names(framework))}")
    made = module.TARGETS[name]()
    made = list(made) if isinstance(made, (list, tuple)) else [made]
    return [dataclasses.replace(s, ref=(name, k)) for k, s in enumerate(made)]


__all__ = ["ADAPTERS", "NumpyTarget", "Target", "TargetSpec", "adapter_module", "get_target",
           "numpy_spec", "reference_spec", "reference_targets", "relayout", "target_names"]
