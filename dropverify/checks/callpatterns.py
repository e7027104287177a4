"""Realistic call patterns: train -> eval -> train, two instances of one factory, the caller's tensor.

The other checks read one seeded stream of training calls on fresh probe copies. Real training
loops differ: a validation pass switches the layer to eval and back every few hundred steps; a
model builds several layers from one factory and calls them in turn; the caller's activations are
the tensor the layer receives. Three checks make their own calls (tens of them, each exact-style):

* :data:`AFTER_EVAL`: training calls in blocks of irregular length separated by eval passes. Every
  mask drawn after an eval pass is compared with EVERY earlier mask: an exact repeat (a digest of the
  mask) or an agreement count above the contract's chance bound FAILs (a layer that restores its
  generator on eval -> train replays the masks of every earlier validation interval). Every eval
  output must be the contract's, exactly, and identical across passes.
* :data:`INSTANCES`: two instances built from the same factory, seeded differently, called
  interleaved: no mask of one may repeat (or agree beyond chance with) a mask of the other (a
  class-level mask cache, a fixed per-instance seed).
* :data:`INPLACE`: the caller's tensor after each call, train and eval: unchanged unless the layer
  declares in-place work (torch ``inplace=True``), and then the output must be the modified input.

Probes: the contract's signed, wide-range probe (float64: magnitudes 1e-6 .. 1e6, both signs) with
exact zeros planted (where the contract's probe law takes zeros: ``probe_inputs(zeros=True)``), or the
user's own input (``dropverify run --input``). Mask units whose
representative element is 0 show no mask (dropped and kept values coincide) and are left out.

Error bounds (exact-style, no share of the run's alpha): each of the two FAIL rules of a mask
check (exact repeat, agreement count) fires on a correct layer with probability at most
:data:`FALSE_ALARM` = 1e-9. Two chance models (named in the details, ``chance_model``):

* ``observed drop counts`` (binary masks, one drop probability for every unit: exchangeable units).
  Each pair is judged GIVEN its two masks' drop counts a and b of n units, so a layer whose RATE is
  wrong (drops almost nothing, say) is not misnamed as reusing masks: the rate checks name that.
  Under independence the overlap X of the dropped units is Hypergeometric(n, a, b) whatever the
  rate (agreement = n - a - b + 2X); a pair FAILs when P(X >= x) <= 1e-9 / C over the C compared
  pairs (union bound). An exact repeat (X = a = b) has chance 1 / binom(n, a); the repeat rule is
  used for a pair only where binom(n, a) >= C / 1e-9 (all-keep or all-drop masks never count).
* ``contract`` (units of unequal drop probability q_i, or non-binary multipliers). Exact repeat:
  union bound over the C pairs of prod_i (q_i^2 + (1 - q_i)^2) (:mod:`.repeats`), skipped where that
  exceeds 1e-9. Agreement: under the contract a sum of independent Bernoulli(a_i),
  a_i = q_i^2 + (1 - q_i)^2; a pair FAILs above the (1 - 1e-9 / C) quantile (exact binomial where
  every a_i is equal, Hoeffding's bound otherwise). A wrong rate can make this model FAIL.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import stats as sps
from scipy.special import gammaln

from ..contracts import Inputs, value_tolerance
from ..results import CheckResult
from ._core import CheckContext, mask_values, unit_view
from ._sequential import NotInformative, error_result, exact_result
from ._worker import TargetError, guarded
from .repeats import _independent_units, format_probability, log_union_bound, mask_hash, match_log_probability

AFTER_EVAL = "masks_fresh_after_eval_by_hash"
INSTANCES = "instances_draw_independent_masks_by_hash"
INPLACE = "input_unchanged_unless_inplace"

FALSE_ALARM = 1e-9
"""Largest chance of a FAIL on a correct layer, per FAIL rule (exact repeat; agreement count)."""

BLOCKS = (3, 1, 4, 2, 5, 1, 3, 2)
"""Training calls between eval passes (irregular intervals): 21 training calls, 7 eval passes."""
EVAL_CALLS = 2
"""Eval calls per eval pass (each checked against the contract's eval output)."""
ROUNDS = 12
"""Interleaved rounds of the two instances (24 training calls, 144 cross-instance pairs)."""
INPLACE_CALLS = (True, True, True, False) * 4
"""Modes of the in-place check's calls (three training calls, one eval call, four times): a layer
that writes into its input on a fraction f of training calls escapes with probability (1 - f)^12."""


def probe(ctx: CheckContext, name: str) -> Inputs:
    """The user's own input (``--input``) where given, else the contract's probe with exact zeros
    planted (signed, wide-range magnitudes)."""
    if ctx.spec.inputs is not None:
        return tuple(np.asarray(a) for a in ctx.spec.inputs)
    return ctx.seeds(name).probe(zeros=True)


# ------------------------------------------------------------------------------ mask units

class Units:
    """Reads the observable, jointly independent mask units of calls on one probe: one draw per
    mask unit (index 0 along shared axes; DropBlock: a grid of pitch block_size), units whose
    representative element shows no mask (x = 0) and units the contract never randomises left out."""

    def __init__(self, ctx: CheckContext, inputs: Inputs, y0: np.ndarray) -> None:
        self.ctx, self.inputs = ctx, inputs
        vals, self.binary = mask_values(ctx, inputs, y0)
        shape = np.shape(vals)
        if self.binary:
            amb = ctx.decode(inputs, y0).ambiguous
            unknown = np.zeros(shape, bool) if amb is None else np.broadcast_to(amb, shape)
        else:
            unknown = ~np.isfinite(np.asarray(vals, np.float64))
        q = np.broadcast_to(np.asarray(ctx.contract.drop_probability(ctx.params, ctx.shape), np.float64), shape)
        q_units = self._units(q)
        self.keep = ~self._units(unknown)
        if self.binary:
            self.keep &= (q_units > 0) & (q_units < 1)
        self.q = q_units[self.keep]

    def _units(self, arr: np.ndarray) -> np.ndarray:
        return np.asarray(_independent_units(self.ctx, np.asarray(unit_view(self.ctx, arr)))).reshape(-1)

    def read(self, y: np.ndarray) -> np.ndarray:
        """The observable units of one output (bool: dropped; float64: the multiplier)."""
        vals, _ = mask_values(self.ctx, self.inputs, y)
        out = self._units(np.asarray(vals))[self.keep]
        return out.astype(bool) if self.binary else np.asarray(out, np.float64)

    @property
    def n(self) -> int:
        return int(self.keep.sum())


# ------------------------------------------------------------------------------ the two FAIL rules

def agreement_limit(q: np.ndarray, comparisons: int, false_alarm: Optional[float] = None) -> Optional[int]:
    """Largest agreement count a pair of independent masks may show: P(any of ``comparisons``
    pairs exceeds it) <= ``false_alarm`` (exact binomial quantile where every unit agrees by chance
    with one probability a = q^2 + (1-q)^2, Hoeffding's bound sum(a) + sqrt(n ln(C / fa) / 2)
    otherwise). None where no count up to n could exceed it (the rule cannot fire)."""
    false_alarm = FALSE_ALARM if false_alarm is None else false_alarm
    a = q * q + (1.0 - q) * (1.0 - q)
    n = int(a.size)
    if n == 0 or comparisons < 1:
        return None
    level = false_alarm / comparisons
    if np.all(a == a[0]):
        k = int(sps.binom.isf(level, n, float(a[0])))
        while sps.binom.sf(k, n, float(a[0])) > level:
            k += 1
    else:
        k = int(math.ceil(float(a.sum()) + math.sqrt(n * math.log(1.0 / level) / 2.0)))
    return k if k < n else None


CONTRACT = "contract"
OBSERVED = "observed drop counts"


def overlap_limits(n: int, a: np.ndarray, b: np.ndarray, comparisons: int,
                   false_alarm: Optional[float] = None) -> np.ndarray:
    """Per pair of masks dropping a and b of n exchangeable units: the largest overlap k of dropped
    units with P(X > k) <= ``false_alarm`` / ``comparisons`` under X ~ Hypergeometric(n, a, b)
    (independent masks given their drop counts). A pair with overlap above k FAILs; the rule
    cannot fire for a pair whose k >= min(a, b)."""
    level = (FALSE_ALARM if false_alarm is None else false_alarm) / max(comparisons, 1)
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    k = np.nan_to_num(sps.hypergeom.isf(level, n, a, b), nan=0.0).astype(np.int64)
    k = np.clip(k, 0, np.minimum(a, b))
    for _ in range(4):  # settle the discrete quantile: smallest k with P(X > k) <= level
        k = np.where(sps.hypergeom.sf(k, n, a, b) > level, k + 1, k)
        k = np.where((k > 0) & (sps.hypergeom.sf(k - 1, n, a, b) <= level), k - 1, k)
    return k


def log_choose(n: int, k: np.ndarray) -> np.ndarray:
    """log binom(n, k), elementwise."""
    k = np.asarray(k, np.float64)
    return gammaln(n + 1.0) - gammaln(k + 1.0) - gammaln(n - k + 1.0)


@dataclass
class PairScan:
    """What the two FAIL rules found among the compared pairs (later, earlier) of masks. ``limit``,
    ``chance`` and ``drops`` belong to the worst pair (the most agreeing one; under the
    ``observed drop counts`` model the one with the smallest hypergeometric tail)."""

    pairs: int
    units: int
    log_repeat_bound: float
    repeats: List[Tuple[int, int]]
    limit: Optional[int]
    worst: Optional[Tuple[int, int, int]]   # (later, earlier, agreeing units) of the worst pair
    chance: float                           # expected agreeing fraction of the worst pair by chance
    model: str = CONTRACT
    repeat_pairs: int = 0                   # pairs the repeat rule is used on (observed model)
    agreement_active: bool = False          # the agreement rule can fire for some pair
    drops: Optional[Tuple[int, int]] = None  # (later, earlier) drop counts of the worst pair
    tail: Optional[float] = None            # P(overlap >= observed) of the worst pair (observed model)

    @property
    def repeat_active(self) -> bool:
        if self.model == OBSERVED:
            return self.repeat_pairs > 0
        return self.log_repeat_bound <= math.log(FALSE_ALARM)

    @property
    def agreement_fails(self) -> bool:
        return self.limit is not None and self.worst is not None and self.worst[2] > self.limit

    @property
    def informative(self) -> bool:
        return self.repeat_active or self.agreement_active

    def details(self) -> Dict[str, Any]:
        return {"pairs": self.pairs, "units": self.units, "false_alarm_per_rule": FALSE_ALARM,
                "chance_model": self.model,
                "repeat_bound": format_probability(self.log_repeat_bound), "repeat_rule": self.repeat_active,
                "repeat_rule_pairs": self.repeat_pairs if self.model == OBSERVED else
                (self.pairs if self.repeat_active else 0),
                "repeats": len(self.repeats), "agreement_limit": self.limit,
                "worst_agreement": None if self.worst is None else self.worst[2], "chance_agreement": self.chance,
                "worst_drops": None if self.drops is None else list(self.drops), "worst_tail": self.tail}


def scan_pairs(units: Units, masks: Sequence[np.ndarray], pairs: Sequence[Tuple[int, int]]) -> PairScan:
    """Both FAIL rules on the given (later, earlier) pairs of masks read by ``units``: given the
    observed drop counts where the units are exchangeable (binary, one drop probability), under the
    contract's drop probabilities otherwise (module docstring)."""
    n, binary = units.n, units.binary
    if binary and n and masks:
        # a unit read as dropped in EVERY mask shows no mask (an exact zero input hides it where
        # the decoder cannot flag it, e.g. DropConnect's weights that meet a zero input); under
        # the contract that has chance q^calls (0.3^21 = 1e-11): left out, which can only lower
        # agreement (conservative)
        hidden = np.all(np.stack(masks), axis=0)
        if hidden.any():
            masks = [m[~hidden] for m in masks]
            units = _Subset(units, ~hidden)
            n = units.n
    if binary and n and pairs and np.all(units.q == units.q[0]):
        return _scan_observed(n, masks, pairs)
    log_match = match_log_probability(units.q.reshape(1, -1)) if binary else -math.inf
    bound = log_union_bound(log_match, 2) + math.log(max(len(pairs), 1)) if pairs else -math.inf
    hashes = [mask_hash(m, binary) for m in masks]
    repeats = [(i, j) for i, j in pairs if hashes[i] == hashes[j] and (binary or np.all(np.isfinite(masks[i])))]
    limit = worst = None
    chance = float("nan")
    if binary and n and pairs:
        limit = agreement_limit(units.q, len(pairs))
        signs = np.stack([np.where(m, 1.0, -1.0) for m in masks])
        agree = (n + signs @ signs.T) / 2.0
        later, earlier = np.array(pairs).T
        counts = np.rint(agree[later, earlier]).astype(np.int64)
        k = int(np.argmax(counts))
        worst = (int(later[k]), int(earlier[k]), int(counts[k]))
        chance = float(np.mean(units.q ** 2 + (1 - units.q) ** 2))
    return PairScan(len(pairs), n, min(bound, 0.0), repeats, limit, worst, chance, CONTRACT,
                    agreement_active=limit is not None)


class _Subset:
    """The units of a :class:`Units` that remain after leaving some out (``n``, ``q``, ``binary``)."""

    def __init__(self, units: "Units", keep: np.ndarray) -> None:
        self.binary, self.q, self.n = units.binary, units.q[keep], int(keep.sum())


def _scan_observed(n: int, masks: Sequence[np.ndarray], pairs: Sequence[Tuple[int, int]]) -> PairScan:
    """The ``observed drop counts`` model (exchangeable binary units), vectorised over pairs."""
    drops = np.stack(masks).astype(np.float64)               # calls x units, 1 = dropped
    count = drops.sum(axis=1).astype(np.int64)
    later, earlier = np.array(pairs).T
    a, b = count[later], count[earlier]
    # a BLAS product of 0/1 floats: exact integer counts (< 2**53 units)
    overlap = np.rint(drops @ drops.T).astype(np.int64)[later, earlier]
    agree = n - a - b + 2 * overlap
    level = FALSE_ALARM / len(pairs)
    tail = sps.hypergeom.sf(overlap - 1, n, a, b)            # P(X >= observed overlap)
    k = overlap_limits(n, a, b, len(pairs))
    can_fire = k < np.minimum(a, b)
    # exact repeat: X = a = b, chance 1 / binom(n, a); used where that is <= FALSE_ALARM / pairs
    active = log_choose(n, a) >= math.log(1.0 / level)
    same = (overlap == a) & (a == b)  # two binary masks are equal iff they overlap in all of both's drops
    repeats = [(int(i), int(j)) for i, j in zip(later[same & active], earlier[same & active])]
    eq = active & (a == b)
    log_bound = float(np.logaddexp.reduce(-log_choose(n, a[eq]))) if eq.any() else -math.inf
    # worst: smallest tail among the pairs the rule can fire on (a failing pair is among them); ties: most agreeing
    w = int(np.lexsort((-agree, tail, ~can_fire))[0])
    limit = int(n - a[w] - b[w] + 2 * k[w]) if can_fire[w] else None
    chance = float((n - a[w] - b[w] + 2.0 * a[w] * b[w] / n) / n)
    return PairScan(len(pairs), n, min(log_bound, 0.0), repeats, limit,
                    (int(later[w]), int(earlier[w]), int(agree[w])), chance, OBSERVED, int(active.sum()),
                    bool(can_fire.any()), (int(a[w]), int(b[w])), float(tail[w]))


def _verdict(scan: PairScan) -> bool:
    return not (scan.repeat_active and scan.repeats) and not scan.agreement_fails


def _rules_text(scan: PairScan) -> str:
    if scan.model == OBSERVED:
        parts = []
        if scan.repeat_active:
            parts.append(f"no exact repeat in the {scan.repeat_pairs} pairs whose drop counts make one rarer than "
                         f"{FALSE_ALARM:g} / {scan.pairs} (chance <= {format_probability(scan.log_repeat_bound)})")
        if scan.agreement_active:
            worst = "" if scan.limit is None or scan.drops is None else (
                f"; worst pair: at most {scan.limit} of {scan.units} units agreeing given its drop counts "
                f"{scan.drops[0]} and {scan.drops[1]}, chance {100 * scan.chance:.1f} %")
            parts.append(f"no pair overlapping in dropped units beyond chance given the two masks' drop counts "
                         f"(hypergeometric tail <= {FALSE_ALARM:g} / {scan.pairs}{worst})")
        return " and ".join(parts) + f" among {scan.pairs} pairs (chance model: observed drop counts)"
    parts = []
    if scan.repeat_active:
        parts.append(f"no exact repeat (chance <= {format_probability(scan.log_repeat_bound)})")
    if scan.limit is not None:
        parts.append(f"at most {scan.limit} of {scan.units} units agreeing in any pair (chance "
                     f"{100 * scan.chance:.1f} %; exceeded by chance with probability <= {FALSE_ALARM:g})")
    return " and ".join(parts) + f" among {scan.pairs} pairs (chance model: the contract's drop probability)"


def _too_short(scan: PairScan) -> str:
    """Why no mask rule can fire, in words."""
    if scan.model == OBSERVED:
        return (f"the observed masks of {scan.units} unit(s) drop too few or too many units for reuse to be told "
                "from chance given their drop counts (the rate checks judge the rate)")
    return f"masks of {scan.units} observable unit(s) repeat by chance too often"


# ------------------------------------------------------------------------------ train -> eval -> train

def masks_fresh_after_eval(ctx: CheckContext) -> List[CheckResult]:
    """Exact-style: training calls in blocks of :data:`BLOCKS` calls separated by eval passes of
    :data:`EVAL_CALLS` calls (one seeded target, one probe with zeros). FAIL: a mask drawn after an
    eval pass repeats, or agrees beyond chance with, ANY earlier mask (each rule <= 1e-9 on a
    correct layer); or an eval output off the contract's eval output, or differing between passes."""
    start = time.perf_counter()
    seeds = ctx.seeds(AFTER_EVAL)
    inputs = probe(ctx, AFTER_EVAL)
    expected = np.asarray(ctx.contract.eval_output(inputs, ctx.params), np.float64) \
        if ctx.contract.eval_output is not None else None
    try:
        tgt = ctx.build()
        tgt.seed(seeds.seed())
        outputs: List[np.ndarray] = []
        block_of: List[int] = []
        evals: List[np.ndarray] = []
        for b, calls in enumerate(BLOCKS):
            for _ in range(calls):
                outputs.append(ctx.call(tgt, inputs))
                block_of.append(b)
            if b < len(BLOCKS) - 1:
                evals += [ctx.call(tgt, inputs, training=False) for _ in range(EVAL_CALLS)]
    except TargetError as exc:
        return [error_result(ctx, AFTER_EVAL, str(exc))]
    units = Units(ctx, inputs, outputs[0])
    masks = [units.read(y) for y in outputs]
    pairs = [(i, j) for i in range(len(masks)) if block_of[i] > 0 for j in range(i)]
    scan = scan_pairs(units, masks, pairs)
    eval_off, eval_differ = _eval_errors(evals, expected)
    if not scan.informative and expected is None:
        raise NotInformative(_too_short(scan) + " and the contract states no eval output")

    def name(i: int) -> str:
        b = block_of[i]
        k = i - block_of.index(b)
        return f"training call {k} after eval pass {b}" if b else f"training call {k} before any eval"

    problems = []
    if not _verdict(scan):
        problems.append("masks after an eval pass replay earlier masks: " + _pair_words(scan, name))
    if eval_off or eval_differ:
        problems.append(f"eval outputs between training blocks: {eval_off} element(s) off the contract, "
                        f"{eval_differ} differing between passes")
    observed = "; ".join(problems) or (f"{len(masks)} training masks in {len(BLOCKS)} blocks, {len(evals)} eval "
                                       "calls: " + ("no replayed mask" if scan.informative else "masks not judged")
                                       + ", every eval output exact")
    want = (_rules_text(scan) if scan.informative else f"no mask rule ({_too_short(scan)})") + \
        ("; eval outputs equal to the contract's" if expected is not None else "")
    details = {**scan.details(), "blocks": list(BLOCKS), "eval_calls": len(evals), "eval_off": eval_off,
               "eval_differing": eval_differ, "user_input": ctx.spec.inputs is not None}
    return [exact_result(ctx, AFTER_EVAL, not problems, observed, want, details, time.perf_counter() - start)]


def _eval_errors(evals: Sequence[np.ndarray], expected: Optional[np.ndarray]) -> Tuple[int, int]:
    """(elements off the contract's eval output summed over calls, elements differing from the first eval call)."""
    if not evals:
        return 0, 0
    off = differ = 0
    first = np.asarray(evals[0], np.float64)
    rtol, atol = value_tolerance(np.asarray(evals[0]).dtype)
    for e in evals:
        e64 = np.asarray(e, np.float64)
        if expected is not None:
            off += int(np.sum(~np.isclose(e64, expected, rtol=rtol, atol=atol, equal_nan=True)))
        differ += int(np.sum(~((e64 == first) | (np.isnan(e64) & np.isnan(first)))))
    return off, differ


def _pair_words(scan: PairScan, name) -> str:
    if scan.repeats:
        i, j = scan.repeats[0]
        more = f" [{len(scan.repeats)} repeated pairs]" if len(scan.repeats) > 1 else ""
        return f"{name(i)} repeats {name(j)}'s mask exactly{more}"
    i, j, count = scan.worst
    given = "" if scan.drops is None else \
        f" given their drop counts {scan.drops[0]} and {scan.drops[1]}, chance {scan.tail:.2g} or rarer"
    return (f"{name(i)} agrees with {name(j)} on {count} of {scan.units} units ({100 * count / scan.units:.1f} %, "
            f"chance {100 * scan.chance:.1f} %, limit {scan.limit}{given})")


# ------------------------------------------------------------------------------ two instances

def instances_draw_independent_masks(ctx: CheckContext) -> List[CheckResult]:
    """Exact-style: two instances from the same factory, seeded with two different seeds, called
    alternately for :data:`ROUNDS` rounds on one probe. FAIL: a mask of one repeats, or agrees
    beyond chance with, any mask of the other (each rule <= 1e-9 on a correct layer)."""
    start = time.perf_counter()
    seeds = ctx.seeds(INSTANCES)
    inputs = probe(ctx, INSTANCES)
    try:
        a, b = ctx.build(), ctx.build()
        a.seed(seeds.seed(0))
        b.seed(seeds.seed(1))
        outputs: List[np.ndarray] = []
        for _ in range(ROUNDS):
            outputs += [ctx.call(a, inputs), ctx.call(b, inputs)]
    except TargetError as exc:
        return [error_result(ctx, INSTANCES, str(exc))]
    units = Units(ctx, inputs, outputs[0])
    masks = [units.read(y) for y in outputs]
    pairs = [(i, j) for i in range(1, len(masks), 2) for j in range(0, len(masks), 2)]  # (instance B, instance A)
    scan = scan_pairs(units, masks, pairs)
    if not scan.informative:
        raise NotInformative(_too_short(scan))
    ok = _verdict(scan)
    name = lambda i: f"call {i // 2} of instance {'AB'[i % 2]}"  # noqa: E731
    observed = ("two instances draw the same masks: " + _pair_words(scan, name)) if not ok else \
        f"{ROUNDS} interleaved calls of each of two instances: no shared mask"
    return [exact_result(ctx, INSTANCES, ok, observed, _rules_text(scan),
                         {**scan.details(), "rounds": ROUNDS, "user_input": ctx.spec.inputs is not None},
                         time.perf_counter() - start)]


# ------------------------------------------------------------------------------ the caller's tensor

NOT_OBSERVED = ("the adapter cannot watch the caller's tensor: JAX and TensorFlow arrays are immutable, and "
                "Keras / Flax / Equinox layers receive a fresh framework tensor converted from the probe")


def input_unchanged_unless_inplace(ctx: CheckContext) -> List[CheckResult]:
    """Exact: after each of the calls :data:`INPLACE_CALLS` (train and eval, probe with zeros,
    negatives and wide magnitudes, or the user's input) the tensor the adapter passed holds its old
    values — unless the layer declares in-place work, and then it holds the output's values."""
    start = time.perf_counter()
    try:
        tgt = ctx.build()
    except TargetError as exc:
        return [error_result(ctx, INPLACE, str(exc))]
    watched = getattr(tgt, "forward_watched", None)
    if not callable(watched):
        raise NotInformative(NOT_OBSERVED)
    inputs = probe(ctx, INPLACE)
    tgt.seed(ctx.seeds(INPLACE).seed())
    changed: List[str] = []
    not_output: List[str] = []
    declared = False
    for k, training in enumerate(INPLACE_CALLS):
        mode = "train" if training else "eval"
        try:
            _, watch = guarded(lambda: watched(inputs, training=training, layout=ctx.layout),
                               ctx.settings.call_timeout_s, "forward")
        except TargetError as exc:
            return [error_result(ctx, INPLACE, str(exc))]
        declared = watch.declared_inplace
        if declared and not watch.output_is_input:
            not_output.append(f"call {k} ({mode})")
        if not declared and any(watch.changed):
            which = [i for i, c in enumerate(watch.changed) if c]
            changed.append(f"call {k} ({mode}): input {', '.join(map(str, which))}")
    if declared:
        ok = not not_output
        observed = ("the layer declares inplace but its output is not the modified input after "
                    + ", ".join(not_output)) if not ok else \
            f"declared in place: the output is the modified input after all {len(INPLACE_CALLS)} calls"
        want = "the output equal to the caller's tensor after every call (inplace=True)"
    else:
        ok = not changed
        observed = ("the layer modifies its input in place although it does not declare inplace: "
                    + "; ".join(changed)) if not ok else \
            f"the caller's tensor unchanged after all {len(INPLACE_CALLS)} calls (train and eval)"
        want = "the caller's tensor unchanged (the layer does not declare inplace)"
    details = {"declared_inplace": declared, "calls": len(INPLACE_CALLS), "changed": changed,
               "output_not_input": not_output, "user_input": ctx.spec.inputs is not None}
    return [exact_result(ctx, INPLACE, ok, observed, want, details, time.perf_counter() - start)]


__all__ = ["AFTER_EVAL", "BLOCKS", "CONTRACT", "EVAL_CALLS", "FALSE_ALARM", "INPLACE", "INSTANCES", "NOT_OBSERVED",
           "OBSERVED", "PairScan", "ROUNDS", "Units", "agreement_limit", "log_choose", "overlap_limits", "input_unchanged_unless_inplace",
           "instances_draw_independent_masks", "masks_fresh_after_eval", "probe", "scan_pairs"]
