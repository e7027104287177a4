"""Dropout-family module classes: how each maps to a contract (:class:`ModuleKind`), the tables for
torch.nn, timm and torchvision, :func:`register` for a user's class and :func:`classify`.

Promises: :func:`classify` returns the kind of a dropout-family module (registered classes first,
then library classes by module and class name, subclasses marked ``observe`` so their variant is
confirmed from behaviour, then parameter-free classes named like DropPath / StochasticDepth /
DropBlock / Dropout that keep a rate, marked ``guessed``), or None for any other module.
``nn.LSTM / GRU / RNN`` are kinds with ``rnn=True`` (their dropout between stacked layers).
"""
from __future__ import annotations

import re
from typing import Any, Callable, Dict, Optional

import torch.nn as nn

from .sites import ModuleKind  # noqa: F401 - defined with the shared records


def _spatial_variant(dims: int) -> Callable[[int], Optional[str]]:
    return lambda rank: f"spatial_dropout_{dims}d" if rank in (dims + 1, dims + 2) else None


def _dropblock_variant(rank: int) -> Optional[str]:
    return {4: "dropblock_2d", 5: "dropblock_3d", 3: "dropblock_2d"}.get(rank)


_TORCH_NN: Dict[str, ModuleKind] = {
    "Dropout": ModuleKind("nn.Dropout", "dropout", "p"),
    "Dropout1d": ModuleKind("nn.Dropout1d", None, "p", lambda m, r: {"channels_last": False}, _spatial_variant(1)),
    # torch treats a 3-D input to Dropout2d as batched 1-D (N, C, L) channel dropout (and warns): verified as that
    "Dropout2d": ModuleKind("nn.Dropout2d", None, "p", lambda m, r: {"channels_last": False},
                            lambda rank: {4: "spatial_dropout_2d", 3: "spatial_dropout_1d"}.get(rank)),
    "Dropout3d": ModuleKind("nn.Dropout3d", None, "p", lambda m, r: {"channels_last": False}, _spatial_variant(3)),
    "AlphaDropout": ModuleKind("nn.AlphaDropout", "alpha_dropout", "p"),
    "FeatureAlphaDropout": ModuleKind("nn.FeatureAlphaDropout", "feature_alpha_dropout", "p"),
    # the dropout torch applies between stacked layers (not after the last): element-wise on each layer's output
    "LSTM": ModuleKind("nn.LSTM (between-layer dropout)", "dropout", "dropout", rnn=True),
    "GRU": ModuleKind("nn.GRU (between-layer dropout)", "dropout", "dropout", rnn=True),
    "RNN": ModuleKind("nn.RNN (between-layer dropout)", "dropout", "dropout", rnn=True),
}
_TIMM: Dict[str, ModuleKind] = {
    "DropPath": ModuleKind("timm DropPath", "drop_path", "drop_prob",
                           lambda m, r: {"scale_by_keep": bool(getattr(m, "scale_by_keep", True))}),
    "DropBlock2d": ModuleKind("timm DropBlock2d", "dropblock_2d", "drop_prob", lambda m, r: _timm_dropblock(m)),
}


def _timm_dropblock(m: nn.Module) -> Dict[str, Any]:
    """timm DropBlock2d's contract parameters, read from the module. ``_gamma_scale``: timm multiplies
    the paper's gamma by ``gamma_scale`` (0.25 at a ResNet's layer3): the same law as the paper's rule
    at p * gamma_scale. ``_unsupported``: options no contract covers (noise, no rescaling, one mask
    per batch)."""
    unsupported = [w for w, on in (("with_noise=True", getattr(m, "with_noise", False) is True),
                                   ("scale_by_keep=False", getattr(m, "scale_by_keep", True) is False),
                                   ("batchwise=True", getattr(m, "batchwise", False) is True)) if on]
    return {"block_size": int(m.block_size), "share_channels": bool(getattr(m, "couple_channels", False)),
            "seed_region": "anywhere", "gamma_rule": "paper",
            "_gamma_scale": float(getattr(m, "gamma_scale", 1.0)), "_unsupported": tuple(unsupported)}
_TORCHVISION: Dict[str, ModuleKind] = {
    "StochasticDepth": ModuleKind("torchvision StochasticDepth", "stochastic_depth", "p",
                                  lambda m, r: {"mode": str(m.mode), "scaling": "inverted"}),
    "DropBlock2d": ModuleKind("torchvision DropBlock2d", "dropblock_2d", "p",
                              lambda m, r: {"block_size": int(m.block_size), "share_channels": False,
                                            "seed_region": "valid", "gamma_rule": "paper"}),
    "DropBlock3d": ModuleKind("torchvision DropBlock3d", "dropblock_3d", "p",
                              lambda m, r: {"block_size": int(m.block_size), "share_channels": False,
                                            "seed_region": "valid", "gamma_rule": "paper"}),
}

_REGISTERED: Dict[type, ModuleKind] = {}

P_ATTRS = ("p", "drop_prob", "drop_rate", "rate", "dropout_p", "dropout", "prob")
"""Where a dropout-family module keeps its rate (first numeric one wins)."""

_NAME_RULES = ((re.compile(r"drop_?path", re.I), "drop_path"),
               (re.compile(r"stochastic_?depth", re.I), "stochastic_depth"),
               (re.compile(r"drop_?block", re.I), None),
               (re.compile(r"dropout", re.I), "dropout"))


def register(cls: type, variant: str, p: str = "p", **params: Any) -> None:
    """Declare a module class a dropout-family site of ``variant`` for :func:`dropverify.scan`:
    its rate is the attribute ``p`` names; ``params`` are the contract's other parameters
    (e.g. ``scale_by_keep=True``). Raises InvalidArgument for an unknown variant."""
    from ..variants import get_contract
    from ..errors import InvalidArgument
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        raise InvalidArgument(f"register({cls!r}, ...), but should be an nn.Module subclass")
    get_contract(variant)
    fixed = dict(params)
    _REGISTERED[cls] = ModuleKind(f"{cls.__module__}.{cls.__qualname__} (registered)", variant, p,
                                  lambda m, r: dict(fixed), library=False)


def unregister(cls: type) -> None:
    """Forget a class :func:`register` declared (tests)."""
    _REGISTERED.pop(cls, None)


def _number(v: Any) -> Optional[float]:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def module_rate(module: nn.Module, attr: str) -> Optional[float]:
    try:
        return _number(getattr(module, attr, None))
    except Exception:  # noqa: BLE001 - a property that raises: no rate
        return None


def classify(module: nn.Module) -> Optional[ModuleKind]:
    """The kind of a dropout-family module, or None for any other module."""
    for cls in type(module).__mro__:
        if cls in _REGISTERED:
            return _REGISTERED[cls]
    for cls in type(module).__mro__:
        mod = cls.__module__ or ""
        table = (_TORCH_NN if mod.startswith("torch.nn") else _TIMM if mod.startswith("timm.")
                 else _TORCHVISION if mod.startswith("torchvision.") else None)
        if table is not None and cls.__name__ in table:
            kind = table[cls.__name__]
            if cls is not type(module):
                kind = ModuleKind(f"{type(module).__qualname__} (subclass of {kind.name})", kind.variant, kind.p_attr,
                                  kind.params, kind.variant_for, library=False, observe=not kind.rnn, rnn=kind.rnn)
            return kind
    if any(True for _ in module.parameters()):
        return None
    name = type(module).__name__
    for rule, variant in _NAME_RULES:
        if rule.search(name):
            attr = next((a for a in P_ATTRS if module_rate(module, a) is not None), None)
            if attr is None:
                return None
            params = (lambda m, r: {"scale_by_keep": bool(getattr(m, "scale_by_keep", True))}) \
                if variant == "drop_path" else (lambda m, r: {})
            if variant is None:  # a DropBlock by name: its block size is needed
                if module_rate(module, "block_size") is None:
                    return None
                params = lambda m, r: {"block_size": int(m.block_size), "share_channels": False,  # noqa: E731
                                       "seed_region": "valid", "gamma_rule": "paper"}
            return ModuleKind(f"{type(module).__module__}.{type(module).__qualname__} (by its name)", variant, attr,
                              params, _dropblock_variant if variant is None else None, library=False, guessed=True,
                              observe=True)
    return None


__all__ = ["P_ATTRS", "ModuleKind", "classify", "module_rate", "register", "unregister"]
