"""The configuration space of one layer: axes, a covering design over them, and the
hypothesis strategy that searches (and shrinks) them.

Every axis lists its values simplest first: that is the order the shrinker moves toward
(hypothesis' ``sampled_from`` shrinks to the first element; the greedy shrinker here does the
same), so a minimal failing configuration has the fewest elements, the most common dtype,
the default layout and the roundest p that still fail.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..contracts import Contract

P_GRID = (0.1, 0.3, 0.7, 0.02, 0.9, 0.001, 0.999)
"""Drop probabilities, simplest first: round asymmetric values (1/p differs from 1/(1-p), so a
keep/drop swap or a scale by 1/p shows), then the extremes where thresholds quantise."""

DTYPE_ORDER = ("float32", "float64", "float16", "bfloat16")
"""Dtypes simplest (most common) first."""

LARGE_ELEMENTS = 2 ** 25
"""Elements of the one large-tensor configuration on the CPU (random streams that wrap)."""


@dataclass(frozen=True)
class Config:
    """One point of the space: p, dtype, layout, probe shape, the variant's other parameters,
    the device, and the role ("standard", or "large" for the large-tensor configuration)."""

    p: float
    dtype: str = "float64"
    layout: str = "contiguous"
    shape: Tuple[int, ...] = ()
    params: Tuple[Tuple[str, Any], ...] = ()
    device: str = "cpu"
    role: str = "standard"

    def all_params(self) -> Dict[str, Any]:
        return {"p": self.p, **dict(self.params)}

    def key(self) -> str:
        """Canonical JSON: equal configurations, equal keys (seeds and memo tables use it)."""
        return json.dumps({"p": self.p, "dtype": self.dtype, "layout": self.layout, "shape": list(self.shape),
                           "params": [[k, v] for k, v in self.params], "device": self.device, "role": self.role},
                          sort_keys=True, default=str)

    def seed(self, master: int) -> int:
        """The configuration's seed: keyed blake2b of its key with the master seed, so results
        do not depend on the order or the worker that runs it (63-bit, non-negative)."""
        h = hashlib.blake2b(self.key().encode(), key=str(int(master)).encode()[:64], digest_size=8)
        return int.from_bytes(h.digest(), "big") >> 34  # < 2**30: every framework's seed type takes it

    @property
    def elements(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 0

    def label(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.params)
        shape = "x".join(str(s) for s in self.shape)
        text = f"p={self.p:g} {self.dtype} {self.layout} {shape}"
        text += f" {extra}" if extra else ""
        text += f" {self.device}" if self.device != "cpu" else ""
        return text + (" [large]" if self.role == "large" else "")


@dataclass(frozen=True)
class Axis:
    name: str
    values: Tuple[Any, ...]


@dataclass
class Space:
    """The axes of one target (simplest value first) and the values fixed by the user."""

    axes: List[Axis]
    base: Config
    fixed: Mapping[str, Any] = field(default_factory=dict)

    def axis(self, name: str) -> Axis:
        return next(a for a in self.axes if a.name == name)

    def config(self, choice: Mapping[str, Any]) -> Config:
        """The configuration with ``choice`` (axis name -> value) over the base."""
        params = dict(self.base.params)
        kw: Dict[str, Any] = {}
        for name, value in choice.items():
            if name in ("p", "dtype", "layout", "shape", "device"):
                kw[name] = tuple(value) if name == "shape" else value
            else:
                params[name] = value
        return replace(self.base, params=tuple(sorted(params.items())), **kw)


def _primes_below(n: int) -> int:
    for k in range(max(n, 2), 1, -1):
        if all(k % d for d in range(2, int(math.isqrt(k)) + 1)):
            return k
    return 2


def shape_values(contract: Contract, default: Tuple[int, ...], params: Mapping[str, Any]) -> Tuple[Tuple[int, ...], ...]:
    """Probe shapes, fewest elements first: batch 1; odd and prime sizes; a non-square map;
    for DropBlock a map smaller than the block; the default. Each is checked against the
    contract (shapes it refuses are left out)."""
    rank = len(default)
    cands: List[Tuple[int, ...]] = [tuple(default)]
    cands.append((1,) + tuple(default[1:]))
    cands.append(tuple(_primes_below(s) for s in default))  # odd, prime sizes (64 -> 61, 8 -> 7)
    if rank >= 4:
        h, w = default[-2], default[-1]
        cands.append(tuple(default[:-2]) + (h, max(2, w // 2 + 1)))
    bs = params.get("block_size")
    if isinstance(bs, int) and bs > 2 and rank >= 4:
        cands.append(tuple(default[:-(rank - 2)]) + (bs - 1,) * (rank - 2))
    out: List[Tuple[int, ...]] = []
    for s in cands:
        if s in out:
            continue
        try:
            contract.check_shape(s)
        except Exception:  # noqa: BLE001 - a shape the contract refuses is simply not an axis value
            continue
        out.append(s)
    return tuple(sorted(out, key=lambda s: (int(np.prod(s)), s)))


def param_values(contract: Contract, spec_params: Mapping[str, Any], fixed: Mapping[str, Any],
                 user_owned: bool) -> List[Axis]:
    """Axes for the variant's own parameters: integer sizes (block sizes) at the default and
    with the other parity; booleans and choices where the target leaves them open (a built-in
    target's conventions are part of what it claims, so they stay)."""
    axes = []
    for ps in contract.params:
        if ps.name == "p" or ps.name in fixed:
            continue
        current = spec_params.get(ps.name, ps.default)
        if ps.kind is int and isinstance(current, int):
            other = current + 1 if current % 2 else current - 1
            vals = [current] + [v for v in (other,) if v >= (ps.low if ps.low is not None else 1)
                                and (ps.high is None or v <= ps.high)]
            if len(vals) > 1:
                axes.append(Axis(ps.name, tuple(vals)))
        elif user_owned and ps.choices is not None and ps.name not in spec_params:
            axes.append(Axis(ps.name, (current,) + tuple(c for c in ps.choices if c != current)))
        elif user_owned and ps.kind is bool and ps.name not in spec_params:
            axes.append(Axis(ps.name, (bool(current), not bool(current))))
    return axes


def p_values(contract: Contract) -> Tuple[float, ...]:
    spec = next((ps for ps in contract.params if ps.name == "p"), None)
    if spec is None:
        return ()
    out = []
    for p in P_GRID:
        try:
            spec.validate(p)
        except Exception:  # noqa: BLE001
            continue
        out.append(p)
    return tuple(out)


def covering(space: Space, strength: int = 2) -> List[Config]:
    """A covering design: every value of every axis at least once (strength 1), or every
    pair of values of every two axes (strength 2), greedy and deterministic (AETG-style: each
    new row takes, axis by axis, the value covering the most uncovered pairs; ties to the
    simpler value). The first row is the all-simplest configuration."""
    axes = [a for a in space.axes if len(a.values) > 1]
    if not axes:
        return [space.config({})]
    if strength <= 1 or len(axes) == 1:
        rows = []
        for i in range(max(len(a.values) for a in axes)):
            rows.append({a.name: a.values[i % len(a.values)] for a in axes})
        return _dedupe(space, rows)
    uncovered = {(i, vi, j, vj) for i, j in itertools.combinations(range(len(axes)), 2)
                 for vi in range(len(axes[i].values)) for vj in range(len(axes[j].values))}
    rows: List[Dict[str, Any]] = []
    first = True
    while uncovered:
        pick: List[int] = []
        if first:
            pick = [0] * len(axes)
            first = False
        else:
            # seed the row with the first uncovered pair, then fill greedily
            i0, v0, j0, w0 = min(uncovered)
            fixed = {i0: v0, j0: w0}
            for k in range(len(axes)):
                if k in fixed:
                    pick.append(fixed[k])
                    continue
                best, gain = 0, -1
                for v in range(len(axes[k].values)):
                    g = sum(1 for m, vm in enumerate(pick) if (m, vm, k, v) in uncovered)
                    g += sum(1 for m, vm in fixed.items() if m > k and (k, v, m, vm) in uncovered)
                    if g > gain:
                        best, gain = v, g
                pick.append(best)
        for i, j in itertools.combinations(range(len(axes)), 2):
            uncovered.discard((i, pick[i], j, pick[j]))
        rows.append({a.name: a.values[v] for a, v in zip(axes, pick)})
    return _dedupe(space, rows)


def _dedupe(space: Space, rows: Sequence[Mapping[str, Any]]) -> List[Config]:
    out: List[Config] = []
    for r in rows:
        c = space.config(r)
        if c not in out:
            out.append(c)
    return out


def simplifications(space: Space, cfg: Config) -> List[Config]:
    """Every configuration one step simpler than ``cfg`` on one axis (toward the first value),
    smaller shapes first: the candidates of one greedy shrinking round."""
    out = []
    for axis in space.axes:
        current = _value_of(cfg, axis.name)
        if current not in axis.values:
            continue
        idx = axis.values.index(current)
        for v in axis.values[:idx]:
            out.append(space.config({**_choice_of(space, cfg), axis.name: v}))
    return sorted(set(out), key=lambda c: (c.elements, complexity(space, c)))


def complexity(space: Space, cfg: Config) -> Tuple[int, ...]:
    """Position of each axis value in its axis (0 = simplest): the shrinker's order."""
    return tuple(axis.values.index(_value_of(cfg, axis.name)) if _value_of(cfg, axis.name) in axis.values else 0
                 for axis in space.axes)


def _value_of(cfg: Config, name: str) -> Any:
    if name in ("p", "dtype", "layout", "shape", "device"):
        return getattr(cfg, name)
    return dict(cfg.params).get(name)


def _choice_of(space: Space, cfg: Config) -> Dict[str, Any]:
    return {a.name: _value_of(cfg, a.name) for a in space.axes}


def strategy(space: Space):
    """A hypothesis strategy over the space (each axis ``sampled_from`` its values, simplest
    first, so hypothesis shrinks toward the simplest configuration)."""
    from hypothesis import strategies as st
    parts = {a.name: st.sampled_from(a.values) for a in space.axes if len(a.values) > 1}
    return st.fixed_dictionaries(parts).map(space.config)


def large_config(space: Space) -> Optional[Config]:
    """The large-tensor configuration: the base configuration with the batch axis grown until
    the tensor has at least :data:`LARGE_ELEMENTS` elements, float32, contiguous."""
    shape = space.base.shape
    if not shape:
        return None
    per_item = int(np.prod(shape[1:], dtype=np.int64)) or 1
    batch = -(-LARGE_ELEMENTS // per_item)
    dtype = "float32" if "float32" in space.axis("dtype").values else space.base.dtype
    return replace(space.base, shape=(batch,) + tuple(shape[1:]), dtype=dtype, layout="contiguous", role="large")
