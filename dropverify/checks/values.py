"""Output values: every element is the contract's kept or dropped value at its own position,
on every memory layout the target supports."""
from __future__ import annotations

import time
from typing import List

import numpy as np

from ..targets._base import layout_fits
from ..results import CheckResult
from ._core import CheckContext
from ._sequential import error_result, exact_result
from ._worker import TargetError

NAME = "multiplier_values_exact"


def applies(ctx: CheckContext) -> bool:
    return ctx.contract.dropped_value is not None


def _expected_kept(ctx: CheckContext, inputs, dec, shape, idx):
    """The contract's kept value at ``idx`` (None where the contract has none)."""
    if ctx.contract.kept_value is None or dec.dropped is None:
        return None
    kept = np.broadcast_to(np.asarray(ctx.contract.kept_value(inputs, ctx.params, dec.dropped), np.float64), shape)
    return float(kept[idx])


def _kept_depends_on_mask(ctx: CheckContext, inputs) -> bool:
    """True where the contract's kept value depends on the decoded mask (DropBlock's and
    attention's renormalisation): there a zero input, whose mask cannot be read back, would
    make every kept value unknowable, so the values probe carries no zeros."""
    c = ctx.contract
    if c.kept_value is None:
        return False
    shape = ctx.output_shape(inputs)
    none = np.zeros(shape, bool)
    some = none.copy()
    some.reshape(-1)[::2] = True
    try:
        with np.errstate(divide="ignore", invalid="ignore"):
            a = np.broadcast_to(np.asarray(c.kept_value(inputs, ctx.params, none), np.float64), shape)
            b = np.broadcast_to(np.asarray(c.kept_value(inputs, ctx.params, some), np.float64), shape)
    except Exception:  # noqa: BLE001 - a kept rule that needs a realistic mask: assume it depends on it
        return True
    return not np.array_equal(a, b, equal_nan=True)


def _values_probe(ctx: CheckContext):
    """(inputs, zeros planted?): the contract's probe with exact zeros planted (signed,
    wide-range values otherwise), unless the contract cannot take zeros or its kept value
    depends on the mask."""
    seeds = ctx.seeds(NAME)
    plain = seeds.probe()
    if _kept_depends_on_mask(ctx, plain):
        return plain, False
    inputs = seeds.probe(zeros=True)
    planted = not all(np.array_equal(a, b) for a, b in zip(inputs, plain))
    return inputs, planted


def _by_sign(x: np.ndarray, invalid: np.ndarray) -> np.ndarray:
    """Counts of invalid elements at x < 0, x == 0, x > 0 (x aligned with the output)."""
    s = np.sign(x).astype(np.int64) + 1
    return np.bincount(s[invalid], minlength=3)[:3]


def _sign_words(by_sign: np.ndarray, seen: np.ndarray) -> str:
    """One phrase naming a sign pattern in the invalid elements (empty when none stands out)."""
    neg, zero, pos = (int(v) for v in by_sign)
    n_neg, n_zero, n_pos = (int(v) for v in seen)
    words = f"; by input sign: x<0 {neg} of {n_neg}, x=0 {zero} of {n_zero}, x>0 {pos} of {n_pos}"
    if neg and not pos:
        words += " -- only negative inputs are wrong: the layer loses or flips the sign (|x|, ReLU?)"
    elif pos and not neg and not zero:
        words += " -- only positive inputs are wrong"
    if zero:
        words += " -- x = 0 does not map to the dropped/kept value (0 for inverted dropout)"
    return words


def multiplier_values_exact(ctx: CheckContext, calls: int = 4) -> List[CheckResult]:
    """Exact (float tolerance of the dtype): every kept element equals the contract's kept
    value at its own position (x * scale for inverted dropout), every dropped element the
    dropped value exactly. Run on each layout the target offers (contiguous, transposed,
    strided, channels-last ...) with signed, wide-range probe inputs that include exact
    zeros (unless the kept value depends on the mask): catches wrong scales (p instead of
    1/(1-p), a 2 % slip), values scrambled on unusual layouts, a lost sign (|x|) and x = 0
    not mapping to 0."""
    start = time.perf_counter()
    try:
        layouts = tuple(ctx.target.layouts)
    except TargetError as exc:
        return [error_result(ctx, NAME, str(exc))]
    results = []
    for layout in layouts:
        inputs, zeros = _values_probe(ctx)
        if not all(layout_fits(layout, np.ndim(a)) for a in inputs):
            continue  # e.g. channels_last on a 2-D probe: no such layout at this rank
        expect = ctx.output_shape(inputs)
        x = np.asarray(inputs[0], np.float64)
        aligned = x.shape == tuple(expect)
        # the sign breakdown reads inputs[0] as the input aligned with y (not so for a custom
        # decoder such as DropConnect's, whose inputs[0] is the identity)
        signs = aligned and ctx.contract.decode is None
        bad = total = 0
        by_sign = np.zeros(3, np.int64)
        seen = np.zeros(3, np.int64)
        worst = None
        try:
            ctx.target.seed(ctx.seeds(NAME).seed())
            for _ in range(calls):
                y = ctx.call(ctx.target, inputs, layout=layout, expect_shape=expect)
                dec = ctx.decode(inputs, y)
                invalid = ~dec.valid
                bad += int(invalid.sum()); total += int(invalid.size)
                if signs:
                    by_sign += _by_sign(x, invalid)
                    seen += _by_sign(x, np.ones(x.shape, bool))
                if worst is None and invalid.any():
                    idx = tuple(int(i) for i in np.argwhere(invalid)[0])
                    worst = {"index": idx, "observed": float(np.asarray(y, np.float64)[idx]),
                             "input": float(x[idx]) if aligned else None,
                             "expected_kept": _expected_kept(ctx, inputs, dec, y.shape, idx),
                             "expected_dropped": float(np.broadcast_to(np.asarray(
                                 ctx.contract.dropped_value(inputs, ctx.params), np.float64), y.shape)[idx])}
        except TargetError as exc:
            results.append(error_result(ctx, f"{NAME}[{layout}]", str(exc)))
            continue
        obs = f"elements neither kept*scale nor dropped={bad} of {total} ({layout})"
        if worst:
            obs += f"; first at {worst['index']}: y={worst['observed']:.9g}"
            if worst["input"] is not None:
                scale = worst["observed"] / worst["input"] if worst["input"] else float("nan")
                obs += f" for x={worst['input']:.9g} (y/x={scale:.9g})"
            if worst["expected_kept"] is not None:
                kept = worst["expected_kept"]
                diff = abs(worst["observed"] - kept)
                obs += (f" where the kept value is {kept:.9g} and the dropped value {worst['expected_dropped']:.9g}"
                        + (f" (relative difference from kept {diff / abs(kept):.2g})" if kept
                           else f" (absolute difference {diff:.2g})"))
                if kept and np.isclose(worst["observed"], -kept, rtol=1e-6, atol=0.0):
                    obs += "; y = -(kept value): sign flipped"
            if signs:
                obs += _sign_words(by_sign, seen)
        details = {"invalid": bad, "elements": total, "layout": layout, "first": worst, "zeros_in_probe": zeros}
        if signs:
            details["invalid_by_input_sign"] = {"negative": int(by_sign[0]), "zero": int(by_sign[1]),
                                                "positive": int(by_sign[2])}
        results.append(exact_result(ctx, f"{NAME}[{layout}]", bad == 0, obs,
                                    "0 (" + ctx.contract.gradient_rule.split("=", 1)[-1].strip() + ")"
                                    if ctx.contract.multiplicative else "0",
                                    details, time.perf_counter() - start))
    return results
