"""DropBlock mutants: wrong gamma (incl. the uncorrected p/bs^2), wrong seed region, wrong
geometry, wrong mask values, channel sharing mismatched in both directions, a cached mask.

Every mutant draws through :func:`draw_blocks`, a second, independent implementation of the
sampling: seeds are Bernoulli(gamma) on the map where ``allowed`` is True, and a seed at
position s drops offsets ``first..last`` around it per spatial axis (clipped to the map).
:class:`BlocksControl` runs it with the correct settings, and the meta-tests require that
control to PASS every check, so a kill is due to the slip, not to this sampler.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import numpy as np

from ..variants import _dropblock_theory as theory
from ..variants.dropblock import DropBlock2d, DropBlock3d, DropBlockNd
from ._core import Mutant, mutant

Extents = Tuple[Tuple[int, int], ...]


def box_or(seeds: np.ndarray, extents: Extents) -> np.ndarray:
    """Position i (per trailing spatial axis) is dropped when a seed lies in [i - last, i - first]."""
    dropped = seeds
    rank = len(extents)
    for a, (first, last) in enumerate(extents):
        axis = dropped.ndim - rank + a
        d = dropped.shape[axis]
        pad = [(0, 0)] * dropped.ndim
        pad[axis] = (1, 0)
        csum = np.pad(np.cumsum(dropped, axis=axis, dtype=np.intp), pad)
        pos = np.arange(d)
        lo = np.clip(pos - last, 0, d)
        hi = np.clip(pos - first + 1, 0, d)
        dropped = (np.take(csum, hi, axis=axis) - np.take(csum, lo, axis=axis)) > 0
    return dropped


def box_count(seeds: np.ndarray, extents: Extents) -> np.ndarray:
    """Like :func:`box_or` but counts the seeds whose block covers each position."""
    count = seeds.astype(np.intp)
    rank = len(extents)
    for a, (first, last) in enumerate(extents):
        axis = count.ndim - rank + a
        d = count.shape[axis]
        pad = [(0, 0)] * count.ndim
        pad[axis] = (1, 0)
        csum = np.pad(np.cumsum(count, axis=axis), pad)
        pos = np.arange(d)
        count = np.take(csum, np.clip(pos - first + 1, 0, d), axis=axis) - \
            np.take(csum, np.clip(pos - last, 0, d), axis=axis)
    return count


def valid_allowed(dims: Sequence[int], ks: Sequence[int]) -> np.ndarray:
    """Top-left corners t in [0, dim - k] per axis (the paper's valid seed region)."""
    out = np.ones((), bool)
    for d, k in zip(dims, ks):
        out = np.multiply.outer(out, np.arange(d) <= d - k)
    return out


def draw_blocks(layer: DropBlockNd, shape: Tuple[int, ...], gamma: float, allowed: Optional[np.ndarray],
                extents: Extents, share_channels: Optional[bool] = None) -> np.ndarray:
    """Seeds (N, 1 or C, *dims) from ``layer.rng``; returns the DROPPED indicator."""
    dims = tuple(shape[2:])
    share = layer.params["share_channels"] if share_channels is None else share_channels
    lead = (shape[0], 1 if share else shape[1])
    seeds = layer.rng.random(lead + dims) < gamma
    if allowed is not None:
        seeds &= allowed
    return box_or(seeds, extents)


def _apply(layer: DropBlockNd, x: np.ndarray, dropped: np.ndarray) -> np.ndarray:
    keep = ~dropped
    kept = int(np.count_nonzero(keep))
    scale = keep.size / kept if kept else 0.0
    layer._saved = ("mask", keep, scale)
    return np.where(keep, x * x.dtype.type(scale), x.dtype.type(0))


class _Blocks:
    """Mixin: forward through :func:`draw_blocks`; subclasses override the pieces."""

    def block_gamma(self, shape: Tuple[int, ...]) -> float:
        return self.gamma(tuple(shape[2:]))

    def block_sizes(self, dims: Tuple[int, ...]) -> Tuple[int, ...]:
        return theory.clipped_sizes(self.params["block_size"], dims)

    def block_allowed(self, dims: Tuple[int, ...]) -> Optional[np.ndarray]:
        if self.params["seed_region"] == "anywhere":
            return None
        return valid_allowed(dims, self.block_sizes(dims))

    def block_extents(self, dims: Tuple[int, ...]) -> Extents:
        return tuple(theory.block_extent(k, self.params["seed_region"]) for k in self.block_sizes(dims))

    def dropped_mask(self, shape: Tuple[int, ...]) -> np.ndarray:
        dims = tuple(shape[2:])
        return draw_blocks(self, shape, self.block_gamma(shape), self.block_allowed(dims), self.block_extents(dims))

    def _forward(self, x: np.ndarray) -> np.ndarray:
        if not self.training or self.p == 0.0 or x.size == 0:
            self._saved = ("identity", x.shape)
            return x
        return _apply(self, x, self.dropped_mask(x.shape))


class BlocksControl(_Blocks, DropBlock2d):
    """No slip: the independent sampler with the correct gamma, region and geometry."""


class GammaHeightOnly(_Blocks, DropBlock2d):
    """gamma computed from the height alone, as if the map were H x H."""

    def block_gamma(self, shape: Tuple[int, ...]) -> float:
        h = shape[2]
        return theory.effective_gamma(self.p, self.params["block_size"], (h, h), self.params["seed_region"],
                                      self.params["gamma_rule"])


class GammaFromChannels(_Blocks, DropBlock2d):
    """gamma's feature size taken from the channel count C (as if the map were C x C)."""

    def block_gamma(self, shape: Tuple[int, ...]) -> float:
        c = shape[1]
        return theory.effective_gamma(self.p, self.params["block_size"], (c, c), self.params["seed_region"],
                                      self.params["gamma_rule"])


class SeedsAnywhereClaimsValid(_Blocks, DropBlock2d):
    """Seeds (top-left corners) drawn over the whole map, blocks clipped at the bottom/right
    edge, while claiming the paper's valid region and using its gamma."""

    def block_allowed(self, dims: Tuple[int, ...]) -> Optional[np.ndarray]:
        return None


class TransposedSeedGrid(_Blocks, DropBlock2d):
    """Centred blocks whose valid-centre grid is built (W, H) and reshaped to (H, W): the
    admissible centres are scrambled when H != W, so blocks spill over the edges."""

    def block_allowed(self, dims: Tuple[int, ...]) -> Optional[np.ndarray]:
        h, w = dims
        kh, kw = self.block_sizes(dims)
        rows = (np.arange(w) >= kw // 2) & (np.arange(w) <= w - 1 - (kw - 1 - kw // 2))
        cols = (np.arange(h) >= kh // 2) & (np.arange(h) <= h - 1 - (kh - 1 - kh // 2))
        return np.multiply.outer(rows, cols).reshape(h, w)

    def block_extents(self, dims: Tuple[int, ...]) -> Extents:
        return tuple(theory.block_extent(k, "anywhere") for k in self.block_sizes(dims))


class EvenBlockOffByOne(_Blocks, DropBlock2d):
    """Blocks one cell short per axis (k - 1 cells from the seed), as an off-by-one in the
    padding arithmetic that only fits odd sizes gives for even block sizes."""

    def block_extents(self, dims: Tuple[int, ...]) -> Extents:
        return tuple((0, k - 2) if k % 2 == 0 else (0, k - 1) for k in self.block_sizes(dims))


class OverlapCountMask(_Blocks, DropBlock2d):
    """Block mask built as 1 - (number of covering seeds) instead of 1 - OR: overlapping
    blocks give mask values -1, -2 ..., and the scale numel / sum(mask) is off too."""

    def _forward(self, x: np.ndarray) -> np.ndarray:
        if not self.training or self.p == 0.0 or x.size == 0:
            self._saved = ("identity", x.shape)
            return x
        dims = tuple(x.shape[2:])
        lead = (x.shape[0], 1 if self.params["share_channels"] else x.shape[1])
        seeds = (self.rng.random(lead + dims) < self.block_gamma(x.shape)) & self.block_allowed(dims)
        m = 1.0 - box_count(seeds, self.block_extents(dims))
        m = np.broadcast_to(m, x.shape)
        total = float(m.sum())
        scale = m.size / total if total > 0 else 0.0
        mult = (m * scale).astype(x.dtype)
        self._saved = ("mult", mult)
        with np.errstate(invalid="ignore"):
            return x * mult

    def _backward(self, grad_out: np.ndarray) -> np.ndarray:
        if self._saved[0] == "identity":
            return grad_out
        return grad_out * self._saved[1].astype(grad_out.dtype)


class ChannelsCoupled(_Blocks, DropBlock2d):
    """One block mask per sample broadcast over channels (timm's couple_channels=True default)
    while claiming share_channels=False (one mask per channel)."""

    def dropped_mask(self, shape: Tuple[int, ...]) -> np.ndarray:
        dims = tuple(shape[2:])
        return draw_blocks(self, shape, self.block_gamma(shape), self.block_allowed(dims),
                           self.block_extents(dims), share_channels=True)


class ChannelsDecoupled(_Blocks, DropBlock2d):
    """One block mask per (n, c) while claiming share_channels=True (one mask per sample
    broadcast over channels): timm's couple_channels=False under a coupled contract."""

    def dropped_mask(self, shape: Tuple[int, ...]) -> np.ndarray:
        dims = tuple(shape[2:])
        return draw_blocks(self, shape, self.block_gamma(shape), self.block_allowed(dims),
                           self.block_extents(dims), share_channels=False)


class GammaUncorrected(_Blocks, DropBlock2d):
    """gamma = p / block_size^2, without the paper's feature-map factor
    H W / ((H - bs + 1)(W - bs + 1)), while claiming gamma_rule='paper'."""

    def block_gamma(self, shape: Tuple[int, ...]) -> float:
        return theory.uncorrected_gamma(self.p, self.params["block_size"], 2)


class AnywhereUncorrected(GammaUncorrected):
    """Seeds anywhere (blocks centred on the seed, clipped at the border) with gamma = p / bs^2,
    as several public DropBlock packages do, while claiming the paper's valid region and gamma."""

    def block_allowed(self, dims: Tuple[int, ...]) -> Optional[np.ndarray]:
        return None

    def block_extents(self, dims: Tuple[int, ...]) -> Extents:
        return tuple(theory.block_extent(k, "anywhere") for k in self.block_sizes(dims))


class CachedBlockMask(_Blocks, DropBlock2d):
    """Draws the block mask on the first call for a shape and reuses it on every later call."""

    def dropped_mask(self, shape: Tuple[int, ...]) -> np.ndarray:
        cache = self.__dict__.setdefault("_masks", {})
        if tuple(shape) not in cache:
            cache[tuple(shape)] = super().dropped_mask(shape)
        return cache[tuple(shape)]


class Gamma3dSquaredBlock(_Blocks, DropBlock3d):
    """3-D gamma copied from the 2-D code: divides by block_size^2 instead of block_size^3."""

    def block_gamma(self, shape: Tuple[int, ...]) -> float:
        dims = tuple(shape[2:])
        k = theory.clipped_sizes(self.params["block_size"], dims)[0]
        return min(1.0, theory.paper_gamma(self.p, self.params["block_size"], dims) * k)


_MAP = "drop_map_matches_theory_by_binomial"
_UNION = "dropped_set_is_union_of_blocks"
_GAMMA = "gamma_matches_by_binomial"
_RATE = "block_rate_matches_by_t_test"
_CHANNELS = "block_mask_shared_across_channels"
_GEOM = "DropBlock gamma or geometry wrong"
NON_SQUARE = (16, 8, 16, 6)   # H != W by a wide margin: gamma from one side is far off

MUTANTS: Tuple[Mutant, ...] = (
    mutant("dropblock_gamma_height_only", "dropblock_2d", GammaHeightOnly, params={"p": 0.2}, shape=NON_SQUARE,
           kills=(_GAMMA, _MAP), bug_class=_GEOM,
           source="dropblock gamma from one spatial size (non-square maps; cf. timm PR 2569)"),
    mutant("dropblock_gamma_from_channels", "dropblock_2d", GammaFromChannels, params={"p": 0.2},
           kills=(_GAMMA, _MAP), bug_class=_GEOM,
           source="miguelvr/dropblock 10 + PR 12 (feature size taken from the channel count)"),
    mutant("dropblock_seeds_outside_valid_region", "dropblock_2d", SeedsAnywhereClaimsValid, params={"p": 0.2},
           kills=(_MAP, _UNION), bug_class=_GEOM,
           source="seeds outside the valid region while claiming the paper's scheme (TF reference vs timm fast path)"),
    mutant("dropblock_transposed_seed_grid", "dropblock_2d", TransposedSeedGrid, params={"p": 0.2},
           kills=(_MAP, _UNION), bug_class=_GEOM,
           source="timm PR 2569 (valid-seed grid built (W,H) then reshaped (H,W))"),
    mutant("dropblock_even_block_off_by_one", "dropblock_2d", EvenBlockOffByOne,
           params={"p": 0.2, "block_size": 4}, kills=(_MAP, _UNION), bug_class=_GEOM,
           source="torchvision drop_block2d padding arithmetic fits odd block sizes only"),
    mutant("dropblock_overlap_mask_minus_one", "dropblock_2d", OverlapCountMask, params={"p": 0.2},
           kills=("multiplier_values_exact",), bug_class=_GEOM,
           source="miguelvr/dropblock 8 (overlapping seeds gave mask value -1)"),
    mutant("dropblock_channels_coupled", "dropblock_2d", ChannelsCoupled, params={"p": 0.2},
           kills=("masks_independent_along_axis1_by_cross_product_t_test",), bug_class="mask shared along the wrong axis",
           source="timm drop_block_2d couple_channels=True default vs a per-channel contract"),
    mutant("dropblock_channels_decoupled", "dropblock_2d", ChannelsDecoupled,
           params={"p": 0.2, "share_channels": True}, kills=(_CHANNELS,), bug_class="mask shared along the wrong axis",
           source="timm drop_block_2d couple_channels=False vs a channel-shared contract"),
    mutant("dropblock_gamma_uncorrected", "dropblock_2d", GammaUncorrected, params={"p": 0.2},
           kills=(_GAMMA, _MAP), bug_class=_GEOM,
           source="gamma = drop_prob / block_size**2 without the feature-map factor (e.g. miguelvr/dropblock)"),
    mutant("dropblock_anywhere_uncorrected_claims_paper", "dropblock_2d", AnywhereUncorrected,
           params={"p": 0.1, "block_size": 7}, kills=(_GAMMA, _MAP, _UNION), bug_class=_GEOM,
           source="seeds anywhere with gamma = p / bs^2 (several public DropBlock packages) vs the paper's scheme"),
    mutant("dropblock_mask_cached", "dropblock_2d", CachedBlockMask, params={"p": 0.2},
           kills=("masks_fresh_across_calls_by_cross_product_t_test",),
           bug_class="same mask every call (RNG never advances)",
           source="keras 18426 (random state fixed at trace time); tensorflow 29391"),
    mutant("dropblock3d_gamma_2d_formula", "dropblock_3d", Gamma3dSquaredBlock, params={"p": 0.1},
           kills=(_GAMMA, _MAP, _RATE), bug_class=_GEOM,
           source="obvious slip (3-D gamma copied from 2-D: block_size^2 instead of ^3)"),
)

CONTROLS: Tuple[Mutant, ...] = (
    mutant("dropblock_sampler_control", "dropblock_2d", BlocksControl, params={"p": 0.2}, kills=(),
           bug_class="obvious slip", source="control: no slip"),
    mutant("dropblock_sampler_control_even_anywhere", "dropblock_2d", BlocksControl,
           params={"p": 0.2, "block_size": 4, "seed_region": "anywhere"}, shape=NON_SQUARE, kills=(),
           bug_class="obvious slip", source="control: no slip"),
)
"""Zero-slip runs of the mutants' own sampler: must PASS every check."""
