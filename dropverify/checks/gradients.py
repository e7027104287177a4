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


def _grad_tol(dtype) -> float:
    return {np.dtype(np.float16): 2e-2, np.dtype(np.float32): 1e-5}.get(np.dtype(dtype), 1e-10)


def gradient_uses_forward_mask(ctx: CheckContext, calls: int = 3) -> List[CheckResult]:
    """Exact (float tolerance): the target's gradient w.r.t. every input (and parameter)
    equals the contract's rule evaluated on the SAME call's output — element by element,
    so a fresh mask drawn in backward, a wrong backward scale or a missing gradient fails."""
    start = time.perf_counter()
    tgt = ctx.target
    if not getattr(tgt, "has_gradients", False):
        return [skipped_result(ctx, FORWARD_MASK, "the target has no gradients")]
    worst = 0.0
    names: List[str] = []
    try:
        tgt.seed(ctx.seed + 21)
        for i in range(calls):
            inputs = ctx.probe(21 + i)
            g = ctx.rng(21 + i).normal(size=ctx.output_shape(inputs))
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
                denom = np.maximum(np.abs(exp), 1.0)
                worst = max(worst, float(np.max(np.abs(got - exp) / denom, initial=0.0)))
    except TargetError as exc:
        return [error_result(ctx, FORWARD_MASK, str(exc))]
    tol = _grad_tol(np.asarray(ctx.probe(21)[0]).dtype) * 10
    return [exact_result(ctx, FORWARD_MASK, worst <= tol, f"max relative gradient error={worst:.3g}",
                         f"<= {tol:g} ({ctx.contract.gradient_rule})", {"max_rel_error": worst},
                         time.perf_counter() - start)]


def gradient_matches_finite_differences(ctx: CheckContext, directions: int = 3, eps: float = 1e-6) -> List[CheckResult]:
    """Central differences in float64 along random directions, the target re-seeded before
    every evaluation so all evaluations see one mask: d/de sum(g * f(x + e v)) must equal
    <grad, v> (gradcheck's tolerances: atol 1e-5, rtol 1e-3)."""
    start = time.perf_counter()
    tgt = ctx.target
    if not getattr(tgt, "has_gradients", False):
        return [skipped_result(ctx, FINITE_DIFF, "the target has no gradients")]
    if np.float64 not in [np.dtype(d).type for d in tgt.dtypes]:
        return [skipped_result(ctx, FINITE_DIFF, "the target has no float64 support")]
    worst = 0.0
    try:
        for k in range(directions):
            seed = ctx.seed + 31 + k
            inputs = ctx.probe(31 + k)
            rng = ctx.rng(31 + k)
            g = rng.normal(size=ctx.output_shape(inputs))
            vs = tuple(rng.normal(size=np.shape(a)) for a in inputs)

            def objective(step: float) -> float:
                moved = tuple(a + step * v for a, v in zip(inputs, vs))
                tgt.seed(seed)
                return float(np.sum(g * ctx.call(tgt, moved)))

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
