"""Gradient consistency: backward uses the forward mask, and matches finite differences with
the RNG frozen (re-seeded before every evaluation) -- on every memory layout the target
offers (the values check's layouts): the input and the upstream gradient are handed to
forward AND backward in that layout, so a backward that reads the saved mask in another
memory order than forward wrote it FAILs the row of that layout (``...[transposed]``)."""
from __future__ import annotations

import inspect
import time
from typing import Callable, List, Tuple

import numpy as np

from ..targets._base import layout_fits
from ..results import CheckResult
from ._core import CheckContext
from ._sequential import error_result, exact_result, skipped_result
from ._worker import TargetError, guarded

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


def takes_layout(tgt: object) -> bool:
    """True where the target's ``forward_backward`` accepts ``layout=`` (every built-in adapter
    does; a hand-written Target from before layouts reached backward may not)."""
    try:
        params = inspect.signature(tgt.forward_backward).parameters  # type: ignore[attr-defined]
    except (TypeError, ValueError, AttributeError):
        return False
    return "layout" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _layouts(ctx: CheckContext, inputs) -> Tuple[str, ...]:
    """The target's layouts that exist at every input's rank (the values check's rows)."""
    return tuple(lay for lay in ctx.target.layouts if all(layout_fits(lay, np.ndim(a)) for a in inputs))


def _backward(ctx: CheckContext, tgt, inputs, g: np.ndarray, layout: str):
    """One guarded ``forward_backward`` with inputs and ``g`` in ``layout`` (plain call for
    contiguous, so a target without the keyword still runs its contiguous row)."""
    if layout == "contiguous":
        call: Callable = lambda: tgt.forward_backward(inputs, g)  # noqa: E731
    else:
        call = lambda: tgt.forward_backward(inputs, g, layout=layout)  # noqa: E731
    return guarded(call, ctx.settings.call_timeout_s, "backward")


def _where(tgt, layout: str) -> str:
    """Words for where the layout lives: torch / numpy (and Keras on torch) hand the layer a
    real strided tensor; JAX / TF arrays have no strides, so only the host array is laid out so."""
    if layout == "contiguous" or getattr(tgt, "strided_tensors", True):
        return f"({layout} input and grad_out)"
    return f"({layout} host arrays only: the framework's arrays have no strides, its backward sees a dense one)"


def _per_layout(ctx: CheckContext, check: str, inputs, run: Callable[[str], CheckResult]) -> List[CheckResult]:
    """``run(layout)`` for every layout; a layout the target's backward cannot take is
    INCONCLUSIVE with the reason, a target failure an ERROR of that row."""
    tgt = ctx.target
    out = []
    for layout in _layouts(ctx, inputs):
        name = f"{check}[{layout}]"
        if layout != "contiguous" and not takes_layout(tgt):
            out.append(skipped_result(ctx, name, "the target's forward_backward takes no layout= argument, "
                                                 "so its backward cannot be given a non-contiguous input"))
            continue
        try:
            out.append(run(layout))
        except TargetError as exc:
            out.append(error_result(ctx, name, str(exc)))
    return out


def gradient_uses_forward_mask(ctx: CheckContext, calls: int = 3) -> List[CheckResult]:
    """Exact (float tolerance): on each layout, the target's gradient w.r.t. every input (and
    parameter) equals the contract's rule evaluated on the SAME call's output -- element by
    element, so a fresh mask drawn in backward, a wrong backward scale, a missing gradient or
    a mask read back in the wrong memory order on one layout fails (that layout's row).
    Entries the rule returns as NaN (they depend on draws the output does not show) are not
    compared; their count is in the details. No false FAIL by construction beyond float
    rounding (tolerance: 10x the dtype's few-roundings bound)."""
    tgt = ctx.target
    if not getattr(tgt, "has_gradients", False):
        return [skipped_result(ctx, FORWARD_MASK, "the target has no gradients")]
    try:
        inputs0 = _probe(ctx, FORWARD_MASK, 0)
        tol = _grad_tol(np.asarray(inputs0[0]).dtype) * 10
        seeds = ctx.seeds(FORWARD_MASK)

        def run(layout: str) -> CheckResult:
            start = time.perf_counter()
            worst, unknown = 0.0, 0
            tgt.seed(seeds.seed())
            for i in range(calls):
                inputs = _probe(ctx, FORWARD_MASK, i)
                # grad_out in the configuration's dtype, as a framework's backward receives it
                g = seeds.rng(i).normal(size=ctx.output_shape(inputs)).astype(np.asarray(inputs[0]).dtype)
                y, grads = _backward(ctx, tgt, inputs, g, layout)
                expected = ctx.contract.input_gradients(inputs, np.asarray(y), g, ctx.params)
                name = f"{FORWARD_MASK}[{layout}]"
                if len(grads) < len(expected):
                    return exact_result(ctx, name, False, f"gradients returned={len(grads)} ({layout})",
                                        f"{len(expected)} (one per input/parameter)", {"layout": layout})
                for j, (got, exp) in enumerate(zip(grads, expected)):
                    got = np.asarray(got, np.float64); exp = np.asarray(exp, np.float64)
                    if got.shape != exp.shape:
                        return exact_result(ctx, name, False, f"gradient {j} shape={got.shape} ({layout})",
                                            f"{exp.shape}", {"layout": layout})
                    known = ~np.isnan(exp)
                    unknown += int(exp.size - known.sum())
                    err = np.abs(got[known] - exp[known]) / np.maximum(np.abs(exp[known]), 1.0)
                    worst = max(worst, float(np.max(np.where(np.isnan(err), np.inf, err), initial=0.0)))
            return exact_result(ctx, f"{FORWARD_MASK}[{layout}]", worst <= tol,
                                f"max relative gradient error={worst:.3g} {_where(tgt, layout)}",
                                f"<= {tol:g} ({ctx.contract.gradient_rule})",
                                {"max_rel_error": worst, "entries_not_determined": unknown, "layout": layout},
                                time.perf_counter() - start)

        return _per_layout(ctx, FORWARD_MASK, inputs0, run)
    except TargetError as exc:
        return [error_result(ctx, FORWARD_MASK, str(exc))]


def _step_scale(a: np.ndarray) -> np.ndarray:
    """|a| elementwise, 1 where a == 0: the per-element scale of a relative finite-difference step."""
    a = np.abs(np.asarray(a, np.float64))
    return np.where(a != 0, a, 1.0)


def gradient_matches_finite_differences(ctx: CheckContext, directions: int = 3, eps: float = 1e-6) -> List[CheckResult]:
    """Central differences in float64 along random directions, on each layout, the target
    re-seeded before every evaluation so all evaluations of one layout see one mask (every
    forward and the backward get the inputs in that layout): d/de sum(g * f(x + e v)) must
    equal <grad, v> (gradcheck's tolerances: atol 1e-5, rtol 1e-3). v is normal noise scaled
    by |x| elementwise (1 where x == 0): a relative step, valid on wide-range inputs."""
    tgt = ctx.target
    if not getattr(tgt, "has_gradients", False):
        return [skipped_result(ctx, FINITE_DIFF, "the target has no gradients")]
    if np.float64 not in [np.dtype(d).type for d in tgt.dtypes]:
        return [skipped_result(ctx, FINITE_DIFF, "the target has no float64 support")]
    seeds = ctx.seeds(FINITE_DIFF)

    def run(layout: str) -> CheckResult:
        start = time.perf_counter()
        worst = 0.0
        for k in range(directions):
            seed = seeds.seed(k)
            inputs = _probe(ctx, FINITE_DIFF, k, np.float64)  # finite differences need float64
            rng = seeds.rng(k)
            g = rng.normal(size=ctx.output_shape(inputs))
            # relative steps: each element moves by about eps * |a| (eps where a == 0), so the
            # signed, wide-range probe (|x| from 1e-6 to 1e6) is differenced at one relative
            # precision instead of losing the step in the rounding of its large elements
            vs = tuple(rng.normal(size=np.shape(a)) * _step_scale(a) for a in inputs)

            def objective(step: float) -> float:
                moved = tuple(a + step * v for a, v in zip(inputs, vs))
                tgt.seed(seed)
                # the same layout as the backward below: a layout may permute the mask a seed gives
                return float(np.sum(g * ctx.call(tgt, moved, layout=layout)))

            numeric = (objective(eps) - objective(-eps)) / (2 * eps)
            tgt.seed(seed)
            _, grads = _backward(ctx, tgt, inputs, g, layout)
            analytic = float(sum(np.sum(np.asarray(gr, np.float64) * v) for gr, v in zip(grads, vs)))
            err = abs(numeric - analytic) - 1e-3 * abs(numeric)
            worst = max(worst, err / 1e-5 if err > 0 else 0.0)
        return exact_result(ctx, f"{FINITE_DIFF}[{layout}]", worst <= 1.0,
                            f"worst |numeric - analytic| excess over rtol 1e-3 = {worst * 1e-5:.3g} "
                            f"{_where(tgt, layout)}", "<= atol 1e-5",
                            {"directions": directions, "eps": eps, "layout": layout}, time.perf_counter() - start)

    try:
        return _per_layout(ctx, FINITE_DIFF, _probe(ctx, FINITE_DIFF, 0, np.float64), run)
    except TargetError as exc:
        return [error_result(ctx, FINITE_DIFF, str(exc))]
