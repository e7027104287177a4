"""Exact repeat detection: no mask is ever reused, found by hashing every call's, every
batch item's and every seed's mask.

The pair tests of :mod:`.independence` look at a few offsets and lags; a pool of five cached
masks used round-robin, or the last batch items reusing the masks of the first, pass them.
Here every mask is hashed (SHA-1, about twice blake2b's speed where the CPU has SHA
instructions and no slower elsewhere, of the packed bits, or of the raw float64 bytes for
continuous multipliers; only the equality of digests is used) and any two identical masks are found, whatever their distance.

The check is exact given the sample: it FAILs only when two masks are bit-for-bit equal.
Under the contract two independent binary masks whose units drop with probabilities q_i are
identical with probability ``prod_i (q_i^2 + (1 - q_i)^2)``; with M masks the chance of any
repeat is at most ``M (M - 1) / 2`` times that (union bound). A comparison class is examined
only when that bound is at most :data:`COLLISION_THRESHOLD`, so a correct layer FAILs this
check with probability at most 3 x 1e-9 (three classes). Classes whose masks are too short
for that (stochastic depth has one bit per sample; p near 0 or 1 makes masks nearly
constant) are skipped, with the bound, in the details. Continuous multipliers (Gaussian
noise) coincide with probability 0.
"""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..results import CheckResult
from ._core import CheckContext, mask_values, unit_view
from ._sequential import NotInformative, error_result, exact_result
from ._worker import TargetError


NAME = "masks_never_repeat_by_hash"

COLLISION_THRESHOLD = 1e-9
"""Largest chance-repeat probability (union bound over a class) at which a class is examined.
A class above it is skipped: repeats there are expected by chance and prove nothing."""

CALLS = 48
"""Calls of the main seeded stream: catches pools of up to 47 masks and stale masks at any lag."""

SEEDS = 8
"""Seeds s, s+1, ..., s+7 (s seeds the main stream)."""

CALLS_PER_SEED = 3
"""Calls drawn after each of the seeds s+1..s+7 (call k of s vs call 0 of s+j: overlapping streams)."""

_SHOWN = 6  # repeats quoted per class in the message (all counted, the first 20 kept in details)


# ------------------------------------------------------------------------------ probability

def match_log_probability(q: np.ndarray) -> float:
    """log P(two independent binary masks agree at every unit), units independent.

    ``q`` is (rows, units): unit u of either mask drops with probability q[r, u] for some row
    r (the rows are the places a mask can come from, e.g. the batch items). Agreement at a
    unit with rates a, b has probability ab + (1-a)(1-b) <= max(f(a), f(b)), f(q) = q^2 + (1-q)^2,
    so the sum over units of log max_r f(q[r, u]) bounds the log probability from above
    (equal to it when every row has the same rates).
    """
    q = np.clip(np.asarray(q, np.float64), 0.0, 1.0)
    if q.ndim < 2:
        q = q.reshape(1, -1)
    f = q * q + (1.0 - q) * (1.0 - q)
    return float(np.sum(np.log(np.max(f, axis=0))))


def log_union_bound(log_match: float, masks: int) -> float:
    """log of M (M - 1) / 2 * exp(log_match): P(any two of M independent masks coincide) is at
    most exp of this (and at most 1). -inf when there is no pair or a match is impossible."""
    pairs = masks * (masks - 1) / 2
    if pairs <= 0 or log_match == -math.inf:
        return -math.inf
    return min(0.0, math.log(pairs) + log_match)


def union_bound(log_match: float, masks: int) -> float:
    """P(any two of ``masks`` independent masks coincide) <= M (M - 1) / 2 * exp(log_match), capped at 1."""
    return math.exp(log_union_bound(log_match, masks))


def format_probability(log_p: float) -> str:
    """A probability given by its natural log, readable below the float range (``10^-11296``)."""
    if log_p == -math.inf:
        return "0"
    if log_p > math.log(1e-300):
        return f"{math.exp(log_p):.3g}"
    return f"10^{log_p / math.log(10):.0f}"


def _independent_units(ctx: CheckContext, q_units: np.ndarray) -> np.ndarray:
    """The drop probabilities of a set of jointly independent units of one mask.

    Element-wise and shared masks: every unit. DropBlock (structure "block"): positions on a
    grid of pitch min(block_size, dim) along each spatial axis, whose covering seed windows
    are disjoint, hence independent; agreement on the full mask implies agreement there, so
    the bound computed on this subset is valid for the full mask.
    """
    if ctx.contract.structure != "block":
        return q_units
    rank = len(ctx.shape) - 2
    bs = int(ctx.params.get("block_size", 1))
    index = [slice(None)] * q_units.ndim
    for ax in range(q_units.ndim - rank, q_units.ndim):
        index[ax] = slice(None, None, max(1, min(bs, q_units.shape[ax])))
    return q_units[tuple(index)]


# ------------------------------------------------------------------------------ hashing

def _digest(data: np.ndarray) -> bytes:
    """SHA-1 digest (20 bytes) of a C-contiguous array's bytes, read in place (no copy)."""
    return hashlib.sha1(memoryview(data).cast("B"), usedforsecurity=False).digest()


def mask_hash(mask: np.ndarray, binary: bool) -> bytes:
    """Digest of one mask (:func:`_digest`): packed bits (binary) or raw float64 bytes."""
    if binary:
        return _digest(np.packbits(np.asarray(mask, bool).ravel()))
    return _digest(np.ascontiguousarray(mask, np.float64))


def row_hashes(units: np.ndarray, binary: bool) -> List[bytes]:
    """One digest per index of axis 0 (one per batch item)."""
    rows = units.reshape(units.shape[0], -1)
    if binary:
        packed = np.packbits(rows.astype(bool), axis=1)
        return [_digest(r) for r in packed]
    rows = np.ascontiguousarray(rows, np.float64)
    return [_digest(r) for r in rows]


def find_repeats(hashes: Sequence[bytes], groups: Optional[Sequence[int]] = None) -> List[Tuple[int, int]]:
    """(later, earlier) index pairs: each mask equal to an earlier one (the earliest such).

    With ``groups``, only an earlier mask of another group counts (masks of different seeds).
    """
    out: List[Tuple[int, int]] = []
    if groups is None:
        first: Dict[bytes, int] = {}
        for i, h in enumerate(hashes):
            if h in first:
                out.append((i, first[h]))
            else:
                first[h] = i
        return out
    seen: Dict[bytes, Dict[int, int]] = {}  # hash -> group -> first index (few groups)
    for i, (h, g) in enumerate(zip(hashes, groups)):
        firsts = seen.setdefault(h, {})
        others = [j for grp, j in firsts.items() if grp != g]
        if others:
            out.append((i, min(others)))
        firsts.setdefault(g, i)
    return out


# ------------------------------------------------------------------------------ classes

@dataclass
class RepeatClass:
    """One comparison class: its masks, the chance-repeat bound and what was found."""

    name: str
    masks: int
    log_match: float
    log_bound: float
    skip_reason: str = ""
    repeats: List[Tuple[str, str]] = field(default_factory=list)
    count: int = 0

    @property
    def bound(self) -> float:
        return math.exp(self.log_bound)

    @property
    def active(self) -> bool:
        return not self.skip_reason

    def summary(self) -> dict:
        return {"masks": self.masks, "log_match_probability": self.log_match, "collision_bound": self.bound,
                "collision_bound_text": format_probability(self.log_bound),
                "status": "checked" if self.active else f"skipped: {self.skip_reason}",
                "repeats": self.count, "first_repeats": [f"{a} = {b}" for a, b in self.repeats[:20]]}


def _make_class(name: str, what: str, masks: int, log_match: float, binary: bool,
                units_each: int) -> RepeatClass:
    if not binary:
        return RepeatClass(name, masks, -math.inf, -math.inf)
    log_bound = log_union_bound(log_match, masks)
    cls = RepeatClass(name, masks, log_match, log_bound)
    if masks < 2:
        cls.skip_reason = f"fewer than two {what}"
    elif log_bound > math.log(COLLISION_THRESHOLD):
        cls.skip_reason = (f"{masks} {what} of {units_each} independent unit(s) each repeat by chance with "
                           f"probability up to {format_probability(log_bound)} > {COLLISION_THRESHOLD:g}: "
                           "repeats expected")
    return cls


def _item_axis_name(ctx: CheckContext) -> str:
    shared = set(ctx.contract.shared_axes(ctx.params, ctx.shape))
    first = next((a for a in range(len(ctx.shape)) if a not in shared), 0)
    return "batch item" if first == 0 else f"axis-{first} index"


def plan_classes(ctx: CheckContext, mask: np.ndarray, binary: bool) -> Dict[str, RepeatClass]:
    """The three classes and their chance-repeat bounds, from the contract's drop probability
    and the shape of one decoded mask ``mask`` (full shape, before ``unit_view``)."""
    q = np.broadcast_to(np.asarray(ctx.contract.drop_probability(ctx.params, ctx.shape), np.float64),
                        np.shape(mask))
    q_units = _independent_units(ctx, np.asarray(unit_view(ctx, q)))
    whole = match_log_probability(q_units.reshape(1, -1))
    n_seed_masks = CALLS + (SEEDS - 1) * CALLS_PER_SEED
    classes = {
        "calls": _make_class("calls", "call masks", CALLS, whole, binary, int(q_units.size)),
        "items": RepeatClass("items", 0, 0.0, 0.0, "one unit per call: no per-item masks"),
        "seeds": _make_class("seeds", "call masks across seeds", n_seed_masks, whole, binary, int(q_units.size)),
    }
    if q_units.ndim > 0:
        rows = q_units.reshape(q_units.shape[0], -1)
        classes["items"] = _make_class("items", f"{_item_axis_name(ctx)} masks", CALLS * rows.shape[0],
                                       match_log_probability(rows), binary, int(rows.shape[1]))
    return classes


# ------------------------------------------------------------------------------ scanning

def _scan_calls(cls: RepeatClass, hashes: Sequence[bytes]) -> None:
    if cls.active:
        found = find_repeats(hashes)
        cls.count = len(found)
        cls.repeats = [(f"call {a}", f"call {b}") for a, b in found]


def _scan_items(cls: RepeatClass, calls: Sequence[np.ndarray], call_hashes: Sequence[bytes], binary: bool,
                word: str) -> None:
    """Per-item masks of the DISTINCT calls only (a repeated call is reported by the calls class)."""
    if not cls.active:
        return
    firsts = {}
    for i, h in enumerate(call_hashes):
        firsts.setdefault(h, i)
    hashes: List[bytes] = []
    labels: List[Tuple[int, int]] = []
    for c in sorted(firsts.values()):
        rows = row_hashes(calls[c], binary)
        hashes += rows
        labels += [(c, i) for i in range(len(rows))]
    found = find_repeats(hashes)
    cls.count = len(found)

    def name(lab: Tuple[int, int], ref: Optional[Tuple[int, int]] = None) -> str:
        c, i = lab
        if ref is None:
            return f"{word} {i} of call {c}"
        return f"item {i}" + ("" if c == ref[0] else f" of call {c}")

    cls.repeats = [(name(labels[a]), name(labels[b], labels[a])) for a, b in found]


def _scan_seeds(cls: RepeatClass, call_hashes: Sequence[bytes], seed_units: Sequence[Tuple[int, int, np.ndarray]],
                binary: bool) -> None:
    """Masks after different seeds: calls of the main stream (seed s) and the first calls
    after s+1 .. s+7; only pairs from different seeds count."""
    if not cls.active:
        return
    hashes = list(call_hashes) + [mask_hash(u, binary) for _, _, u in seed_units]
    labels = [(0, k) for k in range(len(call_hashes))] + [(j, k) for j, k, _ in seed_units]
    found = find_repeats(hashes, groups=[j for j, _ in labels])
    cls.count = len(found)
    word = lambda lab: f"call {lab[1]} after seed s+{lab[0]}"  # noqa: E731
    cls.repeats = [(word(labels[a]), word(labels[b])) for a, b in found]


# ------------------------------------------------------------------------------ the check

_WORDS = {"calls": "calls", "items": "item masks", "seeds": "masks across seeds"}


def _describe(cls: RepeatClass) -> str:
    first = cls.repeats[0]
    also = ", ".join(f"{a} = {b}" for a, b in cls.repeats[1:_SHOWN])
    more = "" if cls.count <= _SHOWN else ", ..."
    text = f"{first[0]} repeats {first[1]}'s mask exactly"
    if also:
        text += f" (also {also}{more})"
    return f"{text} [{cls.count} repeated {_WORDS[cls.name]}]"


def _result(ctx: CheckContext, classes: Dict[str, RepeatClass], binary: bool, seconds: float,
            constant_calls: int = 0) -> CheckResult:
    active = [c for c in classes.values() if c.active]
    failing = [c for c in active if c.count]
    checked = ", ".join(f"{c.masks} {_WORDS[c.name]}" for c in active)
    skipped = [c.name for c in classes.values() if not c.active]
    log_total = max((c.log_bound for c in active), default=-math.inf) + math.log(max(len(active), 1))
    details = {"threshold": COLLISION_THRESHOLD, "binary": binary,
               "collision_probability": "0 (continuous multipliers)" if not binary else
               "prod_i (q_i^2 + (1-q_i)^2) per pair, union bound M(M-1)/2 per class",
               "classes": {k: c.summary() for k, c in classes.items()},
               # calls whose whole mask is one value (nothing dropped, or everything): their
               # repeats show a layer without visible randomness, not a stale random stream
               "constant_calls": constant_calls}
    expected = (f"no exact repeat among {checked} (a chance repeat has probability <= {format_probability(log_total)} "
                f"under the contract; classes above {COLLISION_THRESHOLD:g} skipped: "
                f"{', '.join(skipped) or 'none'})")
    if failing:
        observed = "; ".join(_describe(c) for c in failing)
    else:
        observed = f"no two identical masks among {checked}"
    return exact_result(ctx, NAME, not failing, observed, expected, details, seconds)


def masks_never_repeat_by_hash(ctx: CheckContext) -> List[CheckResult]:
    """Exact: no two masks are identical among (a) the 48 calls of one seeded stream, (b) all
    per-item masks (axis 0 of the mask units) of its distinct calls, within and across calls,
    (c) the calls of that stream (seed s) and the first 3 calls after seeds s+1 .. s+7 (seed
    ignored; call k of s replaying call 0 of s+j). False alarm on a correct layer <= 1e-9 per
    examined class (the union bound on a chance repeat, stated per class in the details);
    classes above it are skipped, and the check is not run when all three are."""
    start = time.perf_counter()
    seeds = ctx.seeds(NAME)
    inputs = seeds.probe()
    base = seeds.seed()  # the "seed ignored" class reads seeds base + 1 .. base + 7

    def draw(stream) -> np.ndarray:
        return np.asarray(unit_view(ctx, mask_values(ctx, inputs, next(stream))[0]))

    try:
        stream = ctx.stream(inputs, base)
        first, binary = mask_values(ctx, inputs, next(stream))
        classes = plan_classes(ctx, first, binary)
        if not any(c.active for c in classes.values()):
            reasons = "; ".join(f"{k}: {c.skip_reason}" for k, c in classes.items())
            raise NotInformative(f"masks too short for exact repeat detection ({reasons})")
        call_units = [np.asarray(unit_view(ctx, first))] + [draw(stream) for _ in range(CALLS - 1)]
        seed_units: List[Tuple[int, int, np.ndarray]] = []
        if classes["seeds"].active:
            for j in range(1, SEEDS):
                s = ctx.stream(inputs, base + j)
                seed_units += [(j, k, draw(s)) for k in range(CALLS_PER_SEED)]
    except TargetError as exc:
        return [error_result(ctx, NAME, str(exc))]
    call_hashes = [mask_hash(u, binary) for u in call_units]
    _scan_calls(classes["calls"], call_hashes)
    _scan_items(classes["items"], call_units, call_hashes, binary, _item_axis_name(ctx))
    _scan_seeds(classes["seeds"], call_hashes, seed_units, binary)
    constant = sum(1 for u in call_units if u.size and bool(np.all(u == u.flat[0])))
    return [_result(ctx, classes, binary, time.perf_counter() - start, constant)]
