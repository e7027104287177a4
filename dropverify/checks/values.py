"""Output values: every element is the contract's kept or dropped value at its own position,
on every memory layout the target supports."""
from __future__ import annotations

import time
from typing import List

import numpy as np

from ._core import CheckContext, CheckResult, TargetError, error_result, exact_result

NAME = "multiplier_values_exact"


def applies(ctx: CheckContext) -> bool:
    return ctx.contract.dropped_value is not None


def _expected_kept(ctx: CheckContext, inputs, dec, shape, idx):
    """The contract's kept value at ``idx`` (None where the contract has none)."""
    if ctx.contract.kept_value is None or dec.dropped is None:
        return None
    kept = np.broadcast_to(np.asarray(ctx.contract.kept_value(inputs, ctx.params, dec.dropped), np.float64), shape)
    return float(kept[idx])


def multiplier_values_exact(ctx: CheckContext, calls: int = 4) -> List[CheckResult]:
    """Exact (float tolerance of the dtype): every kept element equals the contract's kept
    value at its own position (x * scale for inverted dropout), every dropped element the
    dropped value exactly. Run on each layout the target offers (contiguous, transposed,
    strided, channels-last ...): catches wrong scales (p instead of 1/(1-p), a 2 % slip)
    and values scrambled on unusual layouts."""
    start = time.perf_counter()
    try:
        layouts = tuple(ctx.target.layouts)
    except TargetError as exc:
        return [error_result(ctx, NAME, str(exc))]
    results = []
    for layout in layouts:
        inputs = ctx.probe(11)
        expect = ctx.output_shape(inputs)
        bad = total = 0
        worst = None
        try:
            ctx.target.seed(ctx.seed + 11)
            for _ in range(calls):
                y = ctx.call(ctx.target, inputs, layout=layout, expect_shape=expect)
                dec = ctx.decode(inputs, y)
                invalid = ~dec.valid
                bad += int(invalid.sum()); total += int(invalid.size)
                if worst is None and invalid.any():
                    idx = tuple(int(i) for i in np.argwhere(invalid)[0])
                    worst = {"index": idx, "observed": float(np.asarray(y, np.float64)[idx]),
                             "input": float(np.asarray(inputs[0], np.float64)[idx])
                             if np.asarray(inputs[0]).shape == y.shape else None,
                             "expected_kept": _expected_kept(ctx, inputs, dec, y.shape, idx)}
        except TargetError as exc:
            results.append(error_result(ctx, f"{NAME}[{layout}]", str(exc)))
            continue
        obs = f"elements neither kept*scale nor dropped={bad} of {total} ({layout})"
        if worst:
            obs += f"; first at {worst['index']}: y={worst['observed']:.9g}"
            if worst["input"] is not None:
                scale = worst["observed"] / worst["input"] if worst["input"] else float("nan")
                obs += f" (y/x={scale:.9g})"
            if worst["expected_kept"] is not None:
                kept = worst["expected_kept"]
                rel = abs(worst["observed"] - kept) / abs(kept) if kept else float("inf")
                obs += f" where the kept value is {kept:.9g} (relative difference {rel:.2g})"
        results.append(exact_result(ctx, f"{NAME}[{layout}]", bad == 0, obs,
                                    "0 (" + ctx.contract.gradient_rule.split("=", 1)[-1].strip() + ")"
                                    if ctx.contract.multiplicative else "0",
                                    {"invalid": bad, "elements": total, "layout": layout, "first": worst},
                                    time.perf_counter() - start))
    return results
