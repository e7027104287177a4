"""Adapter for timm (``timm.layers``): DropBlock2d and DropPath.

Pure translation: canonical parameters -> timm's own (``drop_prob``, ``block_size``,
``couple_channels``, ``scale_by_keep``), numpy <-> tensors, ``torch.manual_seed`` seeding,
``train()``/``eval()``, memory layouts and autograd gradients, through the private torch
target of :mod:`.torchvision_ops` (importing timm imports torchvision anyway). Deviations are
exposed, never corrected. Importing this module imports torch, torchvision and timm.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple

import timm
import torch.nn as nn
from timm.layers import DropBlock2d, DropPath

from ._base import TargetSpec
from .torchvision_ops import no_option, vision_spec

_SHAPE = (8, 8, 12, 10)           # one mask per (n, c): 64 units per call
_SHAPE_COUPLED = (64, 2, 12, 10)  # one mask per sample: 64 units per call


def _dropblock_factory(p: float, block_size: int, share_channels: bool = False, seed_region: str = "anywhere",
                       gamma_rule: str = "paper") -> nn.Module:
    """timm.layers.DropBlock2d(drop_prob=p, block_size, couple_channels=share_channels); scale_by_keep,
    gamma_scale=1 and with_noise=False at timm's defaults. ``seed_region`` and ``gamma_rule`` are the
    behaviour a spec claims (the checks test the claim), not options, so they are not passed on."""
    return DropBlock2d(drop_prob=p, block_size=block_size, couple_channels=share_channels)


def _conventions(block_size: int, shape: Tuple[int, ...], declared: str) -> Tuple[str, ...]:
    kh, kw = min(block_size, shape[2]), min(block_size, shape[3])
    out = [
        f"Since timm 1.0.23 block centres are Bernoulli(gamma) over the WHOLE (B, 1 or C, H, W) map and "
        f"max-pooled with kernel (kh, kw) = (min(bs, H), min(bs, W)) = ({kh}, {kw}), padding k//2, the first "
        f"row/column cropped for even k: block offsets -(k//2) .. k-1-k//2 around the seed, clipped at the "
        f"border (canonical seed_region='anywhere').",
        "gamma = drop_prob * H * W / (kh kw (H - kh + 1)(W - kw + 1)), the paper's valid-region formula "
        "(gamma_rule='paper'), applied to seeds anywhere, so the effective rate differs from drop_prob.",
        "couple_channels=True shares one mask across channels (share_channels=True), False draws one per "
        "(n, c). scale_by_keep=True: kept values times numel / (kept + 1e-7), computed in float32 whatever "
        "the input dtype (for float64 inputs the scale carries float32 rounding, ~6e-8 relative).",
        "drop_prob is not validated: a value whose gamma lies in [0, 1] is accepted (e.g. 1.5), and "
        "drop_prob=1 gives gamma < 1, so it does not drop everything.",
        "batchwise / fast arguments are accepted and ignored since 1.0.23.",
    ]
    if declared == "valid":
        out.insert(0, "This spec DECLARES the paper's scheme (seed_region='valid': seeds only where the whole "
                      "block fits) to measure how far timm's seeds-anywhere sampling is from it; the drop-map, "
                      "gamma and contiguity checks are expected to FAIL, and the drop-map details identify "
                      "the scheme timm actually uses.")
    return tuple(out)


def dropblock_spec(share_channels: bool, block_size: int = 3, shape: Optional[Tuple[int, ...]] = None,
                   seed_region: str = "anywhere", suffix: Optional[str] = None,
                   p: Optional[float] = None) -> TargetSpec:
    """A timm DropBlock2d spec named ``timm:DropBlock2d<suffix>`` (default suffix
    ``[couple_channels=...]``); ``seed_region`` is the scheme the spec declares (timm's is 'anywhere')."""
    shape = shape or (_SHAPE_COUPLED if share_channels else _SHAPE)
    params = {"block_size": block_size, "share_channels": share_channels, "seed_region": seed_region,
              "gamma_rule": "paper"}
    if p is not None:
        params["p"] = p
    name = "timm:DropBlock2d" + (f"[couple_channels={share_channels}]" if suffix is None else suffix)
    return vision_spec(
        name, "dropblock_2d", _dropblock_factory, params, shape=shape,
        conventions=_conventions(block_size, shape, seed_region),
        description=f"timm.layers.DropBlock2d(drop_prob=p, block_size={block_size}, "
                    f"couple_channels={share_channels}) (timm {timm.__version__}) on (N, C, H, W) = {shape}.")


def _droppath_factory(p: float, scale_by_keep: bool = True) -> nn.Module:
    return DropPath(drop_prob=p, scale_by_keep=scale_by_keep)


def droppath_spec(scale_by_keep: bool = True) -> TargetSpec:
    shape = (128, 8, 4, 4)
    return vision_spec(
        "timm:DropPath" + ("" if scale_by_keep else "[scale_by_keep=False]"), "drop_path", _droppath_factory,
        {"scale_by_keep": scale_by_keep}, shape=shape,
        conventions=(
            "One Bernoulli(1 - drop_prob) draw per sample, mask (N, 1, ..., 1); kept samples divided by "
            "keep_prob when scale_by_keep (not when keep_prob is 0, so drop_prob=1 gives zeros); eval and "
            "drop_prob=0 return the input itself. Per-sample scaling by 1/keep is by design.",
            "drop_prob is not validated by timm; torch's bernoulli_ rejects keep probabilities outside [0, 1].",
        ),
        description=f"timm.layers.DropPath(drop_prob=p, scale_by_keep={scale_by_keep}) (timm {timm.__version__}) "
                    f"on {shape}.")


def _dropblock_specs() -> List[TargetSpec]:
    return [dropblock_spec(True), dropblock_spec(False)]


TARGETS: dict[str, Callable[[], Any]] = {
    "timm:DropBlock2d": _dropblock_specs,
    # even kernel: timm crops the first row/column of the max-pool output (block offsets -2..1)
    "timm:DropBlock2d[block_size=4]": lambda: dropblock_spec(False, 4, suffix="[block_size=4]"),
    # block_size above a dim: clipped per axis to (min(bs, H), min(bs, W)) = (7, 5)
    "timm:DropBlock2d[block_size=7,W=5]": lambda: dropblock_spec(False, 7, (8, 8, 12, 5),
                                                                 suffix="[block_size=7,W=5]"),
    # declares the paper's valid-region seeds: shows the scheme timm really uses and the gap
    "timm:DropBlock2d[seed_region=valid]": lambda: dropblock_spec(False, seed_region="valid",
                                                                  suffix="[seed_region=valid]"),
    "timm:DropPath": droppath_spec,
    "timm:DropPath[scale_by_keep=False]": lambda: droppath_spec(False),
}

__all__ = ["TARGETS", "dropblock_spec", "droppath_spec"]
