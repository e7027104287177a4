"""Adapter for ``torchvision.ops``: DropBlock2d, DropBlock3d and StochasticDepth.

Pure translation: canonical parameters -> torchvision's own (``p``, ``block_size``, ``mode``),
numpy <-> tensors (dtype kept), seeding with ``torch.manual_seed``, ``train()``/``eval()``,
memory layouts, and gradients from autograd. Deviations are exposed, never corrected; each
spec's ``conventions`` says what torchvision documents and does. Importing this module
imports torch and torchvision (an ImportError if either is missing).

The small torch target here (:class:`VisionTorchTarget`, :func:`vision_spec`) is private to
the vision adapters (timm reuses it); it mirrors ``torch_nn.TorchTarget`` / ``torch_spec``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torchvision.ops as tvops

from ..contracts import Contract, Inputs, get_contract
from ._base import TargetSpec

FLOAT_DTYPES = (np.float16, np.float32, np.float64)
_MEMORY_FORMATS = {4: torch.channels_last, 5: torch.channels_last_3d}


# ------------------------------------------------------------------------------ private torch target

def layouts_for(rank: int) -> Tuple[str, ...]:
    """contiguous, transposed (a permuted view), and channels_last for 4-D / 5-D probes."""
    return ("contiguous", "transposed") + (("channels_last",) if rank in _MEMORY_FORMATS else ())


def to_tensor(a: np.ndarray, layout: str = "contiguous", device: str = "cpu",
              requires_grad: bool = False) -> torch.Tensor:
    """A fresh tensor with ``a``'s values and dtype in the given memory layout.

    ``transposed``: a permuted view of memory stored in reversed axis order (non-contiguous
    for rank >= 2); ``channels_last``: torch's channels-last (4-D) / channels-last-3d (5-D)."""
    a = np.asarray(a)
    if layout == "contiguous" or (layout == "transposed" and a.ndim < 2):
        t = torch.from_numpy(np.array(a, copy=True, order="C")).to(device)
    elif layout == "transposed":
        perm = tuple(reversed(range(a.ndim)))
        t = torch.from_numpy(np.array(a.transpose(perm), copy=True, order="C")).to(device).permute(perm)
    elif layout == "channels_last" and a.ndim in _MEMORY_FORMATS:
        t = torch.from_numpy(np.array(a, copy=True)).to(device).contiguous(memory_format=_MEMORY_FORMATS[a.ndim])
    else:
        raise ValueError(f"layout={layout!r} for a rank-{a.ndim} input, but should be one of "
                         f"{', '.join(layouts_for(a.ndim))}")
    return t.requires_grad_(True) if requires_grad else t


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """The tensor's values as numpy in its own dtype."""
    return t.detach().to("cpu").numpy()


class VisionTorchTarget:
    """One configured ``nn.Module`` behind the Target protocol (float16/32/64 on ``device``).

    ``forward`` runs under ``torch.no_grad``; ``forward_backward`` returns autograd's gradient
    of ``sum(grad_out * y)`` w.r.t. each input (zeros where autograd reports no dependence, so
    a missing gradient shows as a wrong one)."""

    has_gradients = True

    def __init__(self, module: nn.Module, device: str = "cpu", dtypes: Sequence[Any] = FLOAT_DTYPES,
                 layouts: Sequence[str] = ("contiguous", "transposed")) -> None:
        self.module = module.to(device)
        self.device = device
        self.dtypes = tuple(dtypes)
        self.layouts = tuple(layouts)

    def seed(self, seed: int) -> None:
        torch.manual_seed(seed)  # seeds the CPU generator and every CUDA device's

    def forward(self, inputs: Inputs, *, training: bool = True, layout: str = "contiguous") -> np.ndarray:
        tensors = tuple(to_tensor(a, layout, self.device) for a in inputs)
        self.module.train(training)
        with torch.no_grad():
            return to_numpy(self.module(*tensors))

    def forward_backward(self, inputs: Inputs, grad_out: np.ndarray) -> Tuple[np.ndarray, Tuple[np.ndarray, ...]]:
        tensors = tuple(to_tensor(a, "contiguous", self.device, requires_grad=True) for a in inputs)
        self.module.train(True)
        with torch.enable_grad():
            y = self.module(*tensors)
            if y.requires_grad:
                g = torch.as_tensor(np.asarray(grad_out), device=y.device).to(y.dtype)
                grads = torch.autograd.grad(y, tensors, grad_outputs=g, allow_unused=True)
            else:
                grads = (None,) * len(tensors)
        return to_numpy(y), tuple(to_numpy(gr) if gr is not None else np.zeros(t.shape, to_numpy(t).dtype)
                                  for gr, t in zip(grads, tensors))


def vision_spec(name: str, variant: str, factory: Callable[..., nn.Module],
                params: Optional[Mapping[str, Any]] = None, device: str = "cpu", **kw: Any) -> TargetSpec:
    """A spec whose ``build(params)`` wraps ``factory(**canonical_params)`` in a
    :class:`VisionTorchTarget`; ``layouts`` defaults to :func:`layouts_for` the probe rank, the
    other keywords (``shape``, ``contract``, ``conventions``, ``description``) go to TargetSpec."""
    contract = kw.get("contract") or get_contract(variant)
    layouts = kw.pop("layouts", None) or layouts_for(len(kw.get("shape") or contract.default_shape))

    def build(prm: Mapping[str, Any]) -> VisionTorchTarget:
        return VisionTorchTarget(factory(**dict(prm)), device=device, layouts=layouts)

    return TargetSpec(name=name, variant=variant, build=build, params=dict(params or {}), **kw)


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

__all__ = ["FLOAT_DTYPES", "TARGETS", "VisionTorchTarget", "eps_contract", "layouts_for", "no_option",
           "to_numpy", "to_tensor", "vision_spec"]
