"""Exact DropBlock arithmetic (Ghiasi, Lin, Le 2018), pure numpy/scipy.

Geometry
--------
Block sizes are clipped per axis: ``k_a = min(block_size, dim_a)`` (as timm does). A block
is drawn from one *seed* on a seed grid; per axis (everything is a product over axes):

``"valid"`` (paper, torchvision)
    seed grid = the top-left corners ``t in [0, dim - k]``; the block covers ``[t, t + k)``.
``"anywhere"`` (timm >= 1.0.23)
    seed grid = every position ``c in [0, dim - 1]``; the block covers
    ``[c - k//2, c - k//2 + k)`` clipped to the map, i.e. offsets ``-(k//2) .. k - 1 - k//2``
    around the seed: centred for odd k, one more cell before the seed than after for even k
    (timm's max-pool with padding k//2, then cropping the first row/column for even k).

Seeds are i.i.d. Bernoulli(gamma). If ``K`` admissible seeds cover a position, its drop
probability is exactly ``1 - (1 - gamma)^K``; ``K`` is the product of per-axis counts.

Gamma rules
-----------
``"paper"``
    ``p / prod(k) * prod(dim) / prod(dim - k + 1)`` (Ghiasi et al., each axis its own size and
    clipped block size; torchvision, timm).
``"uncorrected"``
    ``p / block_size^rank`` (2-D: ``p / bs^2``; 3-D: ``p / bs^3``), the paper's rule without the
    feature-map factor ``prod(dim / (dim - k + 1))``, as several public packages compute it
    (e.g. miguelvr/dropblock). ``block_size`` is NOT clipped here, as those packages do not clip it.
``"exact"``
    the gamma whose exact mean drop rate is ``p`` for the seed region (:func:`solve_gamma`).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence, Tuple

import numpy as np
from scipy.optimize import brentq

from ..errors import InvalidArgument

SEED_REGIONS = ("valid", "anywhere")
CACHE = True
"""Cache the coverage counts and drop maps per configuration (False: recompute every time;
the values are the same either way, tests compare both)."""
GAMMA_RULES = ("paper", "exact", "uncorrected")


def _dims(dims: Sequence[int]) -> Tuple[int, ...]:
    out = tuple(int(d) for d in dims)
    if not out or any(d < 1 for d in out):
        raise InvalidArgument(f"dims={tuple(dims)}, but should be spatial sizes >= 1")
    return out


def _region(seed_region: str) -> str:
    if seed_region not in SEED_REGIONS:
        raise InvalidArgument(f"seed_region={seed_region!r}, but should be one of 'valid', 'anywhere'")
    return seed_region


def clipped_sizes(block_size: int, dims: Sequence[int]) -> Tuple[int, ...]:
    """Per-axis block size ``min(block_size, dim)`` (timm's clipping)."""
    if int(block_size) < 1:
        raise InvalidArgument(f"block_size={block_size!r}, but should be an integer >= 1")
    return tuple(min(int(block_size), d) for d in _dims(dims))


def block_extent(block_size: int, seed_region: str = "anywhere") -> Tuple[int, int]:
    """Inclusive offsets ``(first, last)`` of a block relative to its seed, along one axis.

    ``"valid"``: the seed is the top-left corner, ``(0, k - 1)``. ``"anywhere"``: the seed is
    the centre, ``(-(k // 2), k - 1 - k // 2)`` — e.g. k=3: (-1, 1); k=4: (-2, 1).
    """
    k = int(block_size)
    if k < 1:
        raise InvalidArgument(f"block_size={block_size!r}, but should be an integer >= 1")
    if _region(seed_region) == "valid":
        return 0, k - 1
    return -(k // 2), k - 1 - k // 2


def seed_grid_shape(block_size: int, dims: Sequence[int], seed_region: str) -> Tuple[int, ...]:
    """Shape of the grid on which seeds are drawn: ``dim - k + 1`` (valid) or ``dim`` (anywhere)."""
    dims = _dims(dims)
    ks = clipped_sizes(block_size, dims)
    if _region(seed_region) == "valid":
        return tuple(d - k + 1 for d, k in zip(dims, ks))
    return dims


def seed_window(k: int, dim: int, seed_region: str) -> Tuple[np.ndarray, np.ndarray]:
    """For each position ``0..dim-1`` of one axis, the inclusive range ``[lo, hi]`` of seed-grid
    indices whose block (size ``k <= dim``) covers it. Never empty: every position is covered."""
    pos = np.arange(dim)
    if _region(seed_region) == "valid":
        return np.maximum(pos - k + 1, 0), np.minimum(pos, dim - k)
    first, last = block_extent(k, "anywhere")
    # seed c covers [c + first, c + last]  <=>  c in [pos - last, pos - first]
    return np.maximum(pos - last, 0), np.minimum(pos - first, dim - 1)


def coverage_counts(block_size: int, dims: Sequence[int], seed_region: str = "valid") -> np.ndarray:
    """Integer array of shape ``dims``: the number of admissible seeds whose block covers each
    position (product of the per-axis counts). Cached per configuration; a fresh copy each call."""
    dims = _dims(dims)
    ks = clipped_sizes(block_size, dims)
    _region(seed_region)
    if not CACHE:
        return _coverage_counts(ks, dims, seed_region)
    return _coverage_cached(ks, dims, seed_region).copy()


def _coverage_counts(ks: Tuple[int, ...], dims: Tuple[int, ...], seed_region: str) -> np.ndarray:
    out = np.ones((), dtype=np.int64)
    for axis, (k, d) in enumerate(zip(ks, dims)):
        lo, hi = seed_window(k, d, seed_region)
        shape = [1] * len(dims)
        shape[axis] = d
        out = out * (hi - lo + 1).reshape(shape)
    return np.broadcast_to(out, dims).copy()


@lru_cache(maxsize=256)
def _coverage_cached(ks: Tuple[int, ...], dims: Tuple[int, ...], seed_region: str) -> np.ndarray:
    out = _coverage_counts(ks, dims, seed_region)
    out.flags.writeable = False
    return out


def paper_gamma(p: float, block_size: int, dims: Sequence[int]) -> float:
    """The paper's seed rate ``p / prod(k) * prod(dim) / prod(dim - k + 1)`` with each axis'
    own size and clipped block size (``k = min(block_size, dim)``). Never above ``p``, since
    ``dim <= k (dim - k + 1)`` for ``1 <= k <= dim``."""
    dims = _dims(dims)
    ks = clipped_sizes(block_size, dims)
    return float(p) * float(np.prod(dims, dtype=np.float64)) / float(
        np.prod(ks, dtype=np.float64) * np.prod([d - k + 1 for d, k in zip(dims, ks)], dtype=np.float64))


def uncorrected_gamma(p: float, block_size: int, rank: int) -> float:
    """``p / block_size^rank``: the paper's gamma without the feature-map correction
    ``prod(dim) / prod(dim - k + 1)`` (block_size unclipped, as the packages using it do)."""
    if int(block_size) < 1:
        raise InvalidArgument(f"block_size={block_size!r}, but should be an integer >= 1")
    return float(p) / float(int(block_size)) ** int(rank)


def drop_probability_map(gamma: float, block_size: int, dims: Sequence[int],
                         seed_region: str = "valid") -> np.ndarray:
    """Exact per-position drop probability ``1 - (1 - gamma)^K`` (shape ``dims``, float64).
    Cached per configuration (checks ask for the same map once per call); a fresh copy each call."""
    dims = _dims(dims)
    clipped_sizes(block_size, dims)
    _region(seed_region)
    g = float(gamma)
    if not 0.0 <= g <= 1.0:
        raise InvalidArgument(f"gamma={gamma!r}, but should be in [0, 1]")
    if not CACHE:
        return _drop_map(g, int(block_size), dims, seed_region)
    return _drop_map_cached(g, int(block_size), dims, seed_region).copy()


def _drop_map(g: float, block_size: int, dims: Tuple[int, ...], seed_region: str) -> np.ndarray:
    k = coverage_counts(block_size, dims, seed_region).astype(np.float64)
    if g == 1.0:
        return np.where(k > 0, 1.0, 0.0)
    return -np.expm1(k * np.log1p(-g))


@lru_cache(maxsize=256)
def _drop_map_cached(g: float, block_size: int, dims: Tuple[int, ...], seed_region: str) -> np.ndarray:
    out = _drop_map(g, block_size, dims, seed_region)
    out.flags.writeable = False
    return out


def mean_drop_rate(gamma: float, block_size: int, dims: Sequence[int], seed_region: str = "valid") -> float:
    """Exact expected fraction of dropped positions for seed rate ``gamma``."""
    return float(drop_probability_map(gamma, block_size, dims, seed_region).mean())


@lru_cache(maxsize=256)
def _solve_cached(p: float, block_size: int, dims: Tuple[int, ...], seed_region: str) -> float:
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    k = coverage_counts(block_size, dims, seed_region).astype(np.float64).ravel()

    def excess(g: float) -> float:
        with np.errstate(divide="ignore"):  # log1p(-1) = -inf gives exactly 1 - 0 = 1
            return float(np.mean(-np.expm1(k * np.log1p(-g)))) - p

    # excess is continuous and strictly increasing on [0, 1], from -p to 1 - p.
    return float(brentq(excess, 0.0, 1.0, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500))


def solve_gamma(p: float, block_size: int, dims: Sequence[int], seed_region: str = "valid") -> float:
    """The seed rate in [0, 1] whose exact mean drop rate equals ``p`` (scipy brentq, relative
    accuracy ~1e-15; p = 0 -> 0, p = 1 -> 1)."""
    if not 0.0 <= float(p) <= 1.0:
        raise InvalidArgument(f"p={p!r}, but should be in [0, 1]")
    clipped_sizes(block_size, dims)
    return _solve_cached(float(p), int(block_size), _dims(dims), _region(seed_region))


def effective_gamma(p: float, block_size: int, dims: Sequence[int], seed_region: str = "valid",
                    gamma_rule: str = "paper") -> float:
    """The seed rate a layer actually uses, in [0, 1].

    ``"paper"``: :func:`paper_gamma` (clipped to [0, 1] defensively); ``"exact"``: :func:`solve_gamma`;
    ``"uncorrected"``: :func:`uncorrected_gamma` (``p / bs^rank``). Under every rule p = 1 gives
    gamma = 1 (every position dropped), p = 0 gives 0.
    """
    if gamma_rule not in GAMMA_RULES:
        raise InvalidArgument(f"gamma_rule={gamma_rule!r}, but should be one of 'paper', 'exact', 'uncorrected'")
    p = float(p)
    if p >= 1.0:
        return 1.0
    if gamma_rule == "exact":
        return solve_gamma(p, block_size, dims, seed_region)
    _region(seed_region)
    if gamma_rule == "uncorrected":
        clipped_sizes(block_size, dims)
        return min(1.0, max(0.0, uncorrected_gamma(p, block_size, len(_dims(dims)))))
    return min(1.0, max(0.0, paper_gamma(p, block_size, dims)))
