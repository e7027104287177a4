"""Adapter for ``torchvision.ops``: DropBlock2d, DropBlock3d and StochasticDepth.

Pure translation: canonical parameters -> torchvision's own (``p``, ``block_size``, ``mode``),
numpy <-> tensors (dtype kept), seeding with ``torch.manual_seed``, ``train()``/``eval()``,
memory layouts, and gradients from autograd. Deviations are exposed, never corrected; each
spec's ``conventions`` says what torchvision documents and does. Importing this module
imports torch and torchvision (an ImportError if either is missing).

Targets are built with the generic ``torch_nn.torch_spec`` (here also ``vision_spec``).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Tuple

import numpy as np
import torch
import torch.nn as nn
import torchvision.ops as tvops

from ..contracts import Contract, Inputs
from ._base import TargetSpec
from .torch_nn import layouts_for, to_tensor, torch_spec  # noqa: F401  (re-exported for tests)

# the generic torch target serves every torch-based library
vision_spec = torch_spec


def no_option(library: str, option: str, value: Any, supported: Any) -> None:
    """Raise ValueError for a canonical parameter value the library cannot express."""
    if value != supported:
        raise ValueError(f"{option}={value!r}, but {library} has no such option (only {option}={supported!r})")


# ------------------------------------------------------------------------------ DropBlock

_EPS = 1e-6  # torchvision's documented default `eps` of DropBlock2d / DropBlock3d


def eps_contract(variant: str, eps: float = _EPS) -> Contract:
    """The canonical DropBlock contract with torchvision's documented renormalisation
    ``numel / (eps + kept)`` instead of ``numel / kept`` (a relative 1e-6/kept, visible at
    float64 tolerance)."""
    from ..variants import get_contract
    base = get_contract(variant)

    def kept_value(inputs: Inputs, params: Mapping[str, Any], dropped: np.ndarray) -> np.ndarray:
        d = np.asarray(dropped, bool)
        return np.asarray(inputs[0], np.float64) * (d.size / (eps + np.count_nonzero(~d)))

    note = (f"torchvision convention: kept values are scaled by numel / (eps + kept) over the whole batch "
            f"tensor, eps={eps:g} (the documented `eps` argument), not numel / kept.")
    return dataclasses.replace(base, kept_value=kept_value, notes=tuple(base.notes) + (note,))


def _dropblock_factory(cls: type) -> Callable[..., nn.Module]:
    def factory(p: float, block_size: int, share_channels: bool = False, seed_region: str = "valid",
                gamma_rule: str = "paper") -> nn.Module:
        # seed_region / gamma_rule describe the behaviour the spec claims; they are not options.
        no_option(f"torchvision.ops.{cls.__name__}", "share_channels", share_channels, False)
        return cls(p=p, block_size=block_size)
    return factory


_TV_DB_CONVENTIONS = (
    "Seeds Bernoulli(gamma) on the valid grid (dim - bs + 1 per axis), gamma = the paper's p * prod(dim) / "
    "(bs^d prod(dim - bs + 1)); blocks from zero-padding and max-pooling; one mask per (n, c): canonical "
    "seed_region='valid', gamma_rule='paper', share_channels=False.",
    "Kept values scaled by numel / (eps + kept) over the whole batch tensor, eps=1e-6 (documented `eps`): "
    "the contract is replaced accordingly.",
    "block_size is clipped to min(block_size, all spatial dims) for EVERY axis (square/cubic blocks), unlike "
    "the contract's per-axis clipping; probes keep block_size <= every spatial dim, where both agree.",
    "An even block size (after clipping) raises ValueError('block size should be odd') in forward; the "
    "docstring does not say so. The paper's gamma at p=1 is below 1, so p=1 does not drop everything.",
)


def _dropblock2d(block_size: int, shape: Tuple[int, ...], suffix: str = "", extra: str = "") -> TargetSpec:
    return vision_spec(
        "torchvision:DropBlock2d" + suffix, "dropblock_2d", _dropblock_factory(tvops.DropBlock2d),
        {"block_size": block_size, "share_channels": False, "seed_region": "valid", "gamma_rule": "paper"},
        shape=shape, contract=eps_contract("dropblock_2d"), conventions=_TV_DB_CONVENTIONS,
        description=f"torchvision.ops.DropBlock2d(p, block_size={block_size}) on (N, C, H, W) = {shape}." + extra)


def _dropblock2d_specs() -> list:
    return [
        _dropblock2d(3, (8, 8, 10, 10)),
        _dropblock2d(5, (8, 8, 14, 7), "[H!=W]", " A non-square map: gamma and geometry must use each axis' own size."),
        _dropblock2d(4, (8, 8, 10, 10), "[block_size=4]",
                     " An even block size, which the padding arithmetic (pad bs//2, then max-pool with padding "
                     "bs//2) only fits for odd sizes; torchvision rejects it in forward."),
    ]


def _dropblock3d() -> TargetSpec:
    shape = (8, 8, 6, 8, 10)
    return vision_spec(
        "torchvision:DropBlock3d", "dropblock_3d", _dropblock_factory(tvops.DropBlock3d),
        {"block_size": 3, "share_channels": False, "seed_region": "valid", "gamma_rule": "paper"},
        shape=shape, contract=eps_contract("dropblock_3d"), conventions=_TV_DB_CONVENTIONS,
        description=f"torchvision.ops.DropBlock3d(p, block_size=3) on (N, C, D, H, W) = {shape}.")


# ------------------------------------------------------------------------------ StochasticDepth

def _sd_factory(p: float, mode: str = "row", scaling: str = "inverted") -> nn.Module:
    no_option("torchvision.ops.StochasticDepth", "scaling", scaling, "inverted")
    return tvops.StochasticDepth(p=p, mode=mode)


def _stochastic_depth(mode: str) -> TargetSpec:
    shape = (128, 8, 4, 4) if mode == "row" else (4, 8, 4, 4)
    return vision_spec(
        f"torchvision:StochasticDepth[{mode}]", "stochastic_depth", _sd_factory,
        {"mode": mode, "scaling": "inverted"}, shape=shape,
        conventions=(
            "Inverted scaling (canonical scaling='inverted'): kept inputs divided by the survival rate 1-p in "
            "training (not when it is 0, so p=1 gives zeros); eval and p=0 return the input itself.",
            "mode='row': one Bernoulli(1-p) draw per sample, mask (N, 1, ..., 1); mode='batch': one draw per call.",
            "Applied to the residual branch only (the caller adds the shortcut); p outside [0, 1] raises ValueError.",
        ),
        description=f"torchvision.ops.StochasticDepth(p, mode={mode!r}) on {shape}.")


TARGETS = {
    "torchvision:DropBlock2d": _dropblock2d_specs,
    "torchvision:DropBlock3d": _dropblock3d,
    "torchvision:StochasticDepth[row]": lambda: _stochastic_depth("row"),
    "torchvision:StochasticDepth[batch]": lambda: _stochastic_depth("batch"),
}

__all__ = ["TARGETS", "eps_contract", "no_option", "vision_spec"]
