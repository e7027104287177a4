"""A site's variant from its observed behaviour, not only its class name.

Promises: :func:`identify` runs a copy of a module in training mode on a positive probe of the
site's input shape (at most :data:`CALLS` calls, under its own seeds, the caller's torch RNG state
restored) and reads the multiplier ``y / x``:

* which axes share one draw within a call: an axis (of length > 1) is *shared* when the
  dropped set is constant along it in every informative call (one with at least one dropped
  and one kept element); an independent axis looks shared only if every drop along it covers
  the whole line, probability at most p^(n-1) per line and call;
* what values the multiplier takes: {0, 1 / (1 - p)} (inverted scaling) or {0, 1} (unscaled),
  within 1e-3 relative (float16 / bfloat16 rounding).

The shared axes are matched to a contract (``dropout``: none; ``variational_dropout``: time of
(T, N, H) or (N, T, H); ``spatial_dropout_Kd``: the spatial axes of (N, C, *S); ``drop_path``:
every axis but the batch). It returns None, and the name-based classification stands, when no
call was informative (p tiny, or a batch of one) or the pattern or the values fit no contract:
the in-situ checks then judge the name's variant.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Dict, FrozenSet, Optional, Tuple

import torch
import torch.nn as nn

CALLS = 8
"""Calls of the module at most; identification stops at the first two informative calls that agree."""
VALUE_RTOL = 1e-3


@dataclass(frozen=True)
class Identified:
    """The variant a module's behaviour shows, its contract parameters and the evidence in words."""

    variant: str
    params: Dict[str, Any] = field(default_factory=dict)
    words: str = ""


def _shared_axes(dropped: torch.Tensor) -> FrozenSet[int]:
    """Axes (length > 1) along which the dropped set is constant in this call."""
    return frozenset(a for a in range(dropped.dim()) if dropped.shape[a] > 1
                     and bool((dropped == dropped.narrow(a, 0, 1)).all()))


def _candidates(shape: Tuple[int, ...]) -> Dict[FrozenSet[int], Tuple[str, Dict[str, Any], str]]:
    """Shared-axis sets (restricted to axes of length > 1) -> (variant, params, what it means)."""
    rank = len(shape)
    raw = [((), "dropout", {}, "no axis shares a draw")]
    if rank == 3:
        raw += [((0,), "variational_dropout", {"batch_first": False},
                 "one mask per sequence shared over time (axis 0 of (T, N, H))"),
                ((1,), "variational_dropout", {"batch_first": True},
                 "one mask per sequence shared over time (axis 1 of (N, T, H))"),
                ((2,), "spatial_dropout_1d", {"channels_last": False},
                 "one draw per (sample, channel) shared along axis 2 of (N, C, L)")]
    if rank == 4:
        raw.append(((2, 3), "spatial_dropout_2d", {"channels_last": False},
                    "one draw per (sample, channel) shared over (H, W)"))
    if rank == 5:
        raw.append(((2, 3, 4), "spatial_dropout_3d", {"channels_last": False},
                    "one draw per (sample, channel) shared over (D, H, W)"))
    if rank >= 2:
        raw.append((tuple(range(1, rank)), "drop_path", {}, "one draw per sample shared by every other axis"))
    out: Dict[FrozenSet[int], Tuple[str, Dict[str, Any], str]] = {}
    for axes, variant, params, words in raw:
        key = frozenset(a for a in axes if shape[a] > 1)
        out.setdefault(key, (variant, params, words))
    return out


def identify(module: nn.Module, shape: Tuple[int, ...], dtype: torch.dtype, device: str, p: float,
             seed: int = 0) -> Optional[Identified]:
    """The variant ``module`` behaves as on inputs of ``shape`` at drop rate ``p``, or None (see the
    module docstring). The module itself is not called (a copy is)."""
    if not shape or not 0.0 < p < 1.0:
        return None
    try:
        work = copy.deepcopy(module).train()
    except Exception:  # noqa: BLE001 - an uncopyable module: nothing observed
        return None
    g = torch.Generator().manual_seed(seed)
    x = (0.5 + torch.rand(shape, generator=g, dtype=torch.float64)).to(dtype=dtype, device=device)
    seen = []
    scaled = unscaled = False
    with torch.random.fork_rng(devices=[] if device == "cpu" else None), torch.no_grad():
        for i in range(CALLS):
            torch.manual_seed(seed + 1 + i)
            try:
                y = work(x.clone())
            except Exception:  # noqa: BLE001 - the module cannot run on its own: nothing observed
                return None
            if not isinstance(y, torch.Tensor) or y.shape != x.shape:
                return None
            m = (y.double() / x.double())
            dropped = m == 0
            if bool(dropped.all()) or not bool(dropped.any()):
                continue
            kept = m[~dropped]
            if bool(((kept - 1 / (1 - p)).abs() <= VALUE_RTOL / (1 - p)).all()):
                scaled = True
            elif bool(((kept - 1).abs() <= VALUE_RTOL).all()):
                unscaled = True
            else:
                return None  # values outside {0, 1/(1-p)} and {0, 1}: not a Bernoulli mask this knows
            seen.append(_shared_axes(dropped))
            if len(seen) >= 2:
                break
    if not seen or (scaled and unscaled):
        return None
    shared = frozenset.intersection(*seen)
    found = _candidates(tuple(shape)).get(shared)
    if found is None:
        return None
    variant, params, words = found
    if unscaled and variant != "drop_path":
        return None  # an unscaled Bernoulli mask is a contract only for DropPath (scale_by_keep=False)
    if variant == "drop_path":
        params = {"scale_by_keep": not unscaled}
    value_words = "{0, 1/(1-p)}" if scaled else "{0, 1}"
    return Identified(variant, dict(params),
                      f"observed over {len(seen)} call(s) on {tuple(shape)}: {words}; multiplier values "
                      f"{value_words}")


__all__ = ["CALLS", "Identified", "identify"]
