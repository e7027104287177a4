"""Gradient consistency: backward uses the forward mask, and matches finite differences with
the RNG frozen (re-seeded before every evaluation)."""
from __future__ import annotations

import time
from typing import List

import numpy as np

from ._core import CheckContext, CheckResult, TargetError, error_result, exact_result, guarded, skipped_result

FORWARD_MASK = "gradient_uses_forward_mask"
FINITE_DIFF = "gradient_matches_finite_differences"


def applies(ctx: CheckContext) -> bool:
    return ctx.contract.input_gradients is not None


def _probe(ctx: CheckContext, check: str, i: int, dtype=None):
    """The contract's ``extra['gradient_probe']`` (float64) where it has one -- a probe whose
    output shows every random draw the backward uses (DropConnect's packed probe) -- else its
    usual probe."""
    make = ctx.contract.extra.get("gradient_probe")
    if make is None:
        return ctx.seeds(check).probe(i, dtype=dtype)
    return make(tuple(ctx.shape), ctx.seeds(check).probe_rng(i), np.float64)


def _grad_tol(dtype) -> float:
    """Relative tolerance of a gradient element in ``dtype`` (a few roundings of grad_out x
    scale; a wrong mask or scale errs by order 1)."""
    name = np.dtype(dtype).name
    return {"float16": 2e-2, "bfloat16": 1.6e-2, "float32": 1e-5}.get(name, 1e-10)


def gradient_uses_forward_mask(ctx: CheckContext, calls: int = 3) -> List[CheckResult]:
    """Exact (float tolerance): the target's gradient w.r.t. every input (and parameter)
    equals the contract's rule evaluated on the SAME call's output — element by element,
    so a fresh mask drawn in backward, a wrong backward scale or a missing gradient fails.
    Entries the rule returns as NaN (they depend on draws the output does not show) are not
    compared; their count is in the details."""
    start = time.perf_counter()
    tgt = ctx.target
    if not getattr(tgt, "has_gradients", False):
        return [skipped_result(ctx, FORWARD_MASK, "the target has no gradients")]
    worst = 0.0
    unknown = 0
    try:
        seeds = ctx.seeds(FORWARD_MASK)
        tgt.seed(seeds.seed())
        for i in range(calls):
            inputs = _probe(ctx, FORWARD_MASK, i)
            # grad_out in the configuration's dtype, as a framework's backward receives it
            g = seeds.rng(i).normal(size=ctx.output_shape(inputs)).astype(np.asarray(inputs[0]).dtype)
            y, grads = guarded(lambda: tgt.forward_backward(inputs, g), ctx.settings.call_timeout_s, "backward")
            expected = ctx.contract.input_gradients(inputs, np.asarray(y), g, ctx.params)
            if len(grads) < len(expected):
                return [exact_result(ctx, FORWARD_MASK, False, f"gradients returned={len(grads)}",
                                     f"{len(expected)} (one per input/parameter)")]
            for j, (got, exp) in enumerate(zip(grads, expected)):
                got = np.asarray(got, np.float64); exp = np.asarray(exp, np.float64)
                if got.shape != exp.shape:
                    return [exact_result(ctx, FORWARD_MASK, False, f"gradient {j} shape={got.shape}",
                                         f"{exp.shape}")]
                known = ~np.isnan(exp)
                unknown += int(exp.size - known.sum())
                err = np.abs(got[known] - exp[known]) / np.maximum(np.abs(exp[known]), 1.0)
                worst = max(worst, float(np.max(np.where(np.isnan(err), np.inf, err), initial=0.0)))
    except TargetError as exc:
        return [error_result(ctx, FORWARD_MASK, str(exc))]
    tol = _grad_tol(np.asarray(_probe(ctx, FORWARD_MASK, 0)[0]).dtype) * 10
    return [exact_result(ctx, FORWARD_MASK, worst <= tol, f"max relative gradient error={worst:.3g}",
                         f"<= {tol:g} ({ctx.contract.gradient_rule})",
                         {"max_rel_error": worst, "entries_not_determined": unknown},
                         time.perf_counter() - start)]


def _step_scale(a: np.ndarray) -> np.ndarray:
    """|a| elementwise, 1 where a == 0: the per-element scale of a relative finite-difference step."""
    a = np.abs(np.asarray(a, np.float64))
    return np.where(a != 0, a, 1.0)


def gradient_matches_finite_differences(ctx: CheckContext, directions: int = 3, eps: float = 1e-6) -> List[CheckResult]:
    """Central differences in float64 along random directions, the target re-seeded before
    every evaluation so all evaluations see one mask: d/de sum(g * f(x + e v)) must equal
    <grad, v> (gradcheck's tolerances: atol 1e-5, rtol 1e-3). v is normal noise scaled by
    |x| elementwise (1 where x == 0): a relative step, valid on wide-range inputs."""
    start = time.perf_counter()
    tgt = ctx.target
    if not getattr(tgt, "has_gradients", False):
        return [skipped_result(ctx, FINITE_DIFF, "the target has no gradients")]
    if np.float64 not in [np.dtype(d).type for d in tgt.dtypes]:
        return [skipped_result(ctx, FINITE_DIFF, "the target has no float64 support")]
    worst = 0.0
    try:
        for k in range(directions):
            seed = ctx.seeds(FINITE_DIFF).seed(k)
            inputs = _probe(ctx, FINITE_DIFF, k, np.float64)  # finite differences need float64
            rng = ctx.seeds(FINITE_DIFF).rng(k)
            g = rng.normal(size=ctx.output_shape(inputs))
            # relative steps: each element moves by about eps * |a| (eps where a == 0), so the
            # signed, wide-range probe (|x| from 1e-6 to 1e6) is differenced at one relative
            # precision instead of losing the step in the rounding of its large elements
            vs = tuple(rng.normal(size=np.shape(a)) * _step_scale(a) for a in inputs)

            def objective(step: float) -> float:
                moved = tuple(a + step * v for a, v in zip(inputs, vs))
                tgt.seed(seed)
                # contiguous, like forward_backward: a layout may permute the mask a seed gives
                return float(np.sum(g * ctx.call(tgt, moved, layout="contiguous")))

            numeric = (objective(eps) - objective(-eps)) / (2 * eps)
            tgt.seed(seed)
            _, grads = guarded(lambda: tgt.forward_backward(inputs, g), ctx.settings.call_timeout_s, "backward")
            analytic = float(sum(np.sum(np.asarray(gr, np.float64) * v) for gr, v in zip(grads, vs)))
            err = abs(numeric - analytic) - 1e-3 * abs(numeric)
            worst = max(worst, err / 1e-5 if err > 0 else 0.0)
    except TargetError as exc:
        return [error_result(ctx, FINITE_DIFF, str(exc))]
    return [exact_result(ctx, FINITE_DIFF, worst <= 1.0,
                         f"worst |numeric - analytic| excess over rtol 1e-3 = {worst * 1e-5:.3g}",
                         "<= atol 1e-5", {"directions": directions, "eps": eps}, time.perf_counter() - start)]
