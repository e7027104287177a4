"""DropBlock (Ghiasi, Lin, Le 2018): drop contiguous square/cubic blocks of a feature map.

``dropblock_2d`` takes (N, C, H, W), ``dropblock_3d`` takes (N, C, D, H, W). Seeds are
Bernoulli(gamma) on a seed grid (``seed_region``), each seed drops one block of side
``min(block_size, dim)`` per axis, and kept values are scaled by ``numel / kept`` over the
whole tensor. The exact per-position drop map, the coverage counts and the gamma rules
("paper", "exact", "uncorrected" = p / bs^rank) live in :mod:`._dropblock_theory`; the
contracts hand them to the harness.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar, Dict, Tuple

import numpy as np

from ..contracts import (zero_value, Contract, Params, ParamSpec, Shape, identity_eval, multiplier_gradients,
                         register)
from . import _dropblock_theory as theory
from ._base import Variant

_REFERENCE = ("Ghiasi, Lin, Le 2018, 'DropBlock: A regularization method for convolutional "
              "networks', NeurIPS (arXiv:1810.12890)")


def _param_specs() -> Tuple[ParamSpec, ...]:
    return (
        ParamSpec("p", float, 0.1, 0.0, 1.0,
                  doc="target drop rate (1 - keep_prob); p = 1 drops everything"),
        ParamSpec("block_size", int, 3, 1, None,
                  doc="block side; clipped per axis to min(block_size, dim)"),
        ParamSpec("share_channels", bool, False,
                  doc="True: one mask per sample shared by all channels; False: one per (n, c)"),
        ParamSpec("seed_region", str, "valid", choices=theory.SEED_REGIONS,
                  doc="'valid': blocks fit inside the map (paper, torchvision); "
                      "'anywhere': seeds everywhere, blocks clipped (timm)"),
        ParamSpec("gamma_rule", str, "paper", choices=theory.GAMMA_RULES,
                  doc="'paper': the paper's first-order gamma p / bs^r * prod(dim / (dim - bs + 1)); "
                      "'exact': gamma whose exact mean rate is p; 'uncorrected': p / bs^r "
                      "(no feature-map correction, as several public packages)"),
    )


# ------------------------------------------------------------------------------
# contract functions: all take the OUTPUT shape (N, C, *spatial)

def _spatial(shape: Shape, rank: int) -> Tuple[int, ...]:
    return tuple(int(d) for d in shape[-rank:])


def _gamma(params: Params, dims: Tuple[int, ...]) -> float:
    return theory.effective_gamma(params["p"], params["block_size"], dims,
                                  params["seed_region"], params["gamma_rule"])


def _make_fns(rank: int) -> Dict[str, Callable[..., Any]]:
    lead = (1, 1)

    def gamma(params: Params, shape: Shape) -> float:
        """Seed rate in [0, 1] the layer uses for this shape."""
        return _gamma(params, _spatial(shape, rank))

    def coverage(params: Params, shape: Shape) -> np.ndarray:
        """Admissible seeds covering each position, shape (1, 1, *spatial), for
        ``params['seed_region']`` (pass another seed_region to get the other scheme's map)."""
        dims = _spatial(shape, rank)
        return theory.coverage_counts(params["block_size"], dims, params["seed_region"]).reshape(lead + dims)

    def drop_probability(params: Params, shape: Shape) -> np.ndarray:
        """Exact per-position drop probability 1 - (1 - gamma)^K, shape (1, 1, *spatial)."""
        dims = _spatial(shape, rank)
        m = theory.drop_probability_map(_gamma(params, dims), params["block_size"], dims,
                                        params["seed_region"])
        return m.reshape(lead + dims)

    def mean_drop_rate(params: Params, shape: Shape) -> float:
        """Exact expected fraction of dropped elements (below p under the paper rule)."""
        return float(np.mean(drop_probability(params, shape)))

    def block_extent(params: Params, shape: Shape) -> Tuple[Tuple[int, int], ...]:
        """Per spatial axis, inclusive offsets (first, last) of a block around its seed."""
        dims = _spatial(shape, rank)
        ks = theory.clipped_sizes(params["block_size"], dims)
        return tuple(theory.block_extent(k, params["seed_region"]) for k in ks)

    def shared_axes(params: Params, shape: Shape) -> Tuple[int, ...]:
        return (1,) if params["share_channels"] else ()

    return {"gamma": gamma, "coverage": coverage, "drop_probability": drop_probability,
            "mean_drop_rate": mean_drop_rate, "block_extent": block_extent, "shared_axes": shared_axes}


def _renormalised_kept(inputs: Tuple[np.ndarray, ...], params: Params, dropped: np.ndarray) -> np.ndarray:
    """x * numel / kept over the whole tensor; 0 where nothing is kept."""
    x = np.asarray(inputs[0], np.float64)
    kept = int(np.count_nonzero(~np.asarray(dropped, bool)))
    return x * (dropped.size / kept) if kept else np.zeros_like(x)


def _gap_note(rank: int, default_shape: Shape) -> str:
    dims = default_shape[2:]
    p, bs = 0.1, 3
    g = theory.paper_gamma(p, bs, dims)
    rates = {r: theory.mean_drop_rate(g, bs, dims, r) for r in theory.SEED_REGIONS}
    exact = {r: theory.solve_gamma(p, bs, dims, r) for r in theory.SEED_REGIONS}
    return (f"The paper's gamma = p / bs^{rank} * prod(dim) / prod(dim - bs + 1) is a first-order "
            f"approximation: it makes mean(K * gamma) = p, but blocks overlap, so with seeds in the valid "
            f"region the exact mean rate mean(1 - (1 - gamma)^K) is strictly below p. For the default "
            f"spatial shape {dims}, bs={bs}, p={p}: gamma={g:.6f} gives a mean rate of "
            f"{rates['valid']:.4f} with valid seeds and {rates['anywhere']:.4f} with seeds anywhere "
            f"(same gamma, as timm does). gamma_rule='exact' solves for gamma instead "
            f"({exact['valid']:.6f} valid, {exact['anywhere']:.6f} anywhere).")


def _make_contract(rank: int, name: str, layout: str, default_shape: Shape) -> Contract:
    fns = _make_fns(rank)
    return register(Contract(
        name=name,
        summary=(f"DropBlock {rank}-D: Bernoulli(gamma) seeds each drop a block of side block_size; "
                 "kept values scaled by numel / kept over the whole tensor."),
        reference=_REFERENCE,
        params=_param_specs(),
        layout=layout,
        default_shape=default_shape,
        ranks=(rank + 2,),
        structure="block",
        shared_axes=fns["shared_axes"],
        drop_probability=fns["drop_probability"],
        dropped_value=zero_value,
        kept_value=_renormalised_kept,
        mean_scope="aggregate",
        output_mean=None,
        output_variance=None,
        eval_output=identity_eval,
        gradient_rule="dx = grad_out * m, m in {0, numel/kept} the forward block mask and scale",
        input_gradients=multiplier_gradients,
        p_one_allowed=True,
        multiplicative=True,
        notes=(
            _gap_note(rank, default_shape),
            "The drop map is not uniform: a position covered by K admissible seeds is dropped with "
            "probability exactly 1 - (1 - gamma)^K, so corners (few covering seeds) are rarely dropped. "
            "drop_probability returns this exact map, shape (1, 1, *spatial).",
            "Per-position means of y/x are not 1; the per-call aggregate mean of y/x is exactly 1 "
            "whenever anything is kept (kept values are x * numel / kept over the whole tensor, as in the "
            "paper, torchvision and timm). If nothing is kept the output is all zeros (no NaN).",
            "One mask per (n, c) by default; share_channels=True draws one mask per sample and broadcasts "
            "it over channels (shared_axes = (1,)).",
            "block_size larger than a spatial dim is clipped per axis to min(block_size, dim), as timm "
            "does; gamma uses the clipped sizes and each axis' own dim (taking one dim for all axes is a "
            "known bug for non-square maps).",
            "seed_region='valid': seeds are top-left corners t in [0, dim - bs], block [t, t + bs) "
            "(paper, torchvision; torchvision's padding arithmetic only fits odd bs). seed_region="
            "'anywhere': seeds at every position, block at offsets -(bs//2) .. bs-1-bs//2 around the seed, "
            "clipped to the map (timm >= 1.0.23: max-pool, padding bs//2, even kernels cropped at the "
            "start): bs=3 -> -1..1, bs=4 -> -2..1.",
            "gamma_rule='uncorrected' is p / block_size^rank (2-D: p / bs^2, 3-D: p / bs^3) without the "
            "paper's feature-map factor prod(dim / (dim - bs + 1)), as several public DropBlock packages "
            "compute it (block_size unclipped there); its mean rate is further below p than the paper's.",
            "p = 1 uses gamma = 1 under every gamma rule: every position is dropped, output all zeros, "
            "gradients zero. (The paper gamma never exceeds p: dim <= bs (dim - bs + 1) per axis.)",
        ),
        extra={
            "gamma": fns["gamma"],
            "coverage": fns["coverage"],
            "nominal_rate": lambda params: float(params["p"]),
            "block_extent": fns["block_extent"],
            "mean_drop_rate": fns["mean_drop_rate"],
        },
    ))


DROPBLOCK_2D = _make_contract(2, "dropblock_2d", "(N, C, H, W)", (16, 8, 12, 10))
DROPBLOCK_3D = _make_contract(3, "dropblock_3d", "(N, C, D, H, W)", (8, 4, 6, 8, 10))


# ------------------------------------------------------------------------------
# layers

class DropBlockNd(Variant):
    """DropBlock over the trailing ``spatial_rank`` axes of (N, C, *spatial)."""

    spatial_rank: ClassVar[int]

    def gamma(self, dims: Tuple[int, ...]) -> float:
        """Seed rate in [0, 1] for spatial shape ``dims`` (see the contract's gamma)."""
        return _gamma(self.params, dims)

    def draw_keep(self, shape: Tuple[int, ...]) -> np.ndarray:
        """Bool keep mask of shape (N, 1 or C, *spatial): Bernoulli(gamma) seeds on the seed grid,
        each expanded to its block by a separable box-OR: per axis, the OR of the k shifted
        copies of the padded seed grid (a loop over the k block offsets, never over seeds or
        pixels; 16x faster than prefix sums, see `make bench`)."""
        bs, region = self.params["block_size"], self.params["seed_region"]
        dims = tuple(shape[2:])
        lead = (shape[0], 1 if self.params["share_channels"] else shape[1])
        grid = theory.seed_grid_shape(bs, dims, region)
        dropped = self.rng.random(lead + grid) < self.gamma(dims)
        for a, (k, d) in enumerate(zip(theory.clipped_sizes(bs, dims), dims)):
            axis = 2 + a
            _, last = theory.block_extent(k, region)  # seed c covers [c + first, c + last]
            left = last
            right = d + k - 1 - dropped.shape[axis] - left
            pad = [(0, 0)] * dropped.ndim
            pad[axis] = (left, right)
            padded = np.pad(dropped, pad)
            out = np.zeros(dropped.shape[:axis] + (d,) + dropped.shape[axis + 1:], dtype=bool)
            for t in range(k):  # position i is covered by seeds i - last .. i - first
                out |= padded[(slice(None),) * axis + (slice(t, t + d),)]
            dropped = out
        return ~dropped

    def _forward(self, x: np.ndarray) -> np.ndarray:
        if not self.training or self.p == 0.0 or x.size == 0:
            self._saved = ("identity", x.shape)
            return x
        keep = self.draw_keep(x.shape)
        kept = int(np.count_nonzero(keep))
        scale = keep.size / kept if kept else 0.0   # == numel / kept over the broadcast tensor
        self._saved = ("mask", keep, scale)
        return np.where(keep, x * x.dtype.type(scale), x.dtype.type(0))

    def _backward(self, grad_out: np.ndarray) -> np.ndarray:
        if self._saved[0] == "identity":
            return grad_out
        _, keep, scale = self._saved
        return np.where(keep, grad_out * grad_out.dtype.type(scale), grad_out.dtype.type(0))


class DropBlock2d(DropBlockNd):
    """DropBlock on (N, C, H, W); see the ``dropblock_2d`` contract."""

    contract = DROPBLOCK_2D
    spatial_rank = 2


class DropBlock3d(DropBlockNd):
    """DropBlock on (N, C, D, H, W); see the ``dropblock_3d`` contract."""

    contract = DROPBLOCK_3D
    spatial_rank = 3


VARIANTS = (DropBlock2d, DropBlock3d)
