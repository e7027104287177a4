"""Eval mode and edge cases: p = 0, p = 1, invalid p, non-finite inputs, dtypes, empty batch."""
from __future__ import annotations

import time
from typing import List

import numpy as np

from ..contracts import value_tolerance
from ..results import CheckResult
from ._core import CheckContext
from ._sequential import error_result, exact_result, skipped_result
from ._worker import TargetError, guarded

EVAL = "eval_mode_deterministic_and_exact"
P_ZERO = "p_zero_is_exact_identity"
P_ONE = "p_one_gives_zeros_with_finite_gradients"
INVALID = "invalid_p_rejected"
NONFINITE = "nonfinite_inputs_leave_others_untouched"
DTYPES = "dtype_and_shape_preserved"
EMPTY = "empty_batch_works"


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


def eval_mode_deterministic_and_exact(ctx: CheckContext) -> List[CheckResult]:
    """Exact: two eval calls under different seeds are identical and equal the contract's
    eval output (float tolerance): catches layers still dropping at inference."""
    start = time.perf_counter()
    seeds = ctx.seeds(EVAL)
    inputs = seeds.probe()
    try:
        ctx.target.seed(seeds.seed(0))
        a = ctx.call(ctx.target, inputs, training=False)
        ctx.target.seed(seeds.seed(1))
        b = ctx.call(ctx.target, inputs, training=False)
    except TargetError as exc:
        return [error_result(ctx, EVAL, str(exc))]
    expected = np.asarray(ctx.contract.eval_output(inputs, ctx.params), np.float64)
    rtol, atol = value_tolerance(a.dtype)
    off = int(np.sum(~np.isclose(np.asarray(a, np.float64), expected, rtol=rtol, atol=atol)))
    differ = int(np.sum(a != b))
    ok = off == 0 and differ == 0
    return [exact_result(ctx, EVAL, ok, f"eval elements off the contract={off}, differing between calls={differ}",
                         "0 and 0", {"off": off, "nondeterministic": differ}, time.perf_counter() - start)]


def _dtypes(ctx: CheckContext):
    return [np.dtype(d) for d in ctx.target.dtypes]


def p_zero_is_exact_identity(ctx: CheckContext) -> List[CheckResult]:
    """Exact, bit for bit: with p = 0 a training call equals the eval output in every
    supported dtype (catches low-precision uniform draws that still drop at p = 0)."""
    start = time.perf_counter()
    bad = []
    try:
        tgt = ctx.build(p=0.0)
        for dt in _dtypes(ctx):
            inputs = ctx.seeds(P_ZERO).probe(dtype=dt.type)
            tgt.seed(ctx.seeds(P_ZERO).seed())
            for _ in range(3):
                y = ctx.call(tgt, inputs)
                ref = ctx.call(tgt, inputs, training=False)
                if not _same(y, ref):
                    bad.append(f"{dt.name}: {int(np.sum(y != ref))} elements")
                    break
    except TargetError as exc:
        return [error_result(ctx, P_ZERO, str(exc))]
    return [exact_result(ctx, P_ZERO, not bad, "p=0 outputs differing from identity: " + (", ".join(bad) or "none"),
                         "none, in " + ", ".join(d.name for d in _dtypes(ctx)), {"failures": bad},
                         time.perf_counter() - start)]


def applies_p_one(ctx: CheckContext) -> bool:
    """p = 1 is a deterministic edge only where it drops every unit (not, e.g., for a
    depth schedule whose early blocks still survive)."""
    if not ctx.contract.p_one_allowed:
        return False
    if ctx.contract.dropped_value is None:
        return True
    q = ctx.contract.drop_probability(dict(ctx.params, p=1.0), ctx.shape)
    return bool(np.all(np.asarray(q) == 1.0))


def p_one_gives_zeros_with_finite_gradients(ctx: CheckContext) -> List[CheckResult]:
    """Exact: with p = 1 every element takes the dropped value (0 for inverted dropout,
    the contract's all-dropped output otherwise) and every gradient is finite."""
    start = time.perf_counter()
    if not ctx.contract.p_one_allowed:
        return [skipped_result(ctx, P_ONE, f"p=1 is outside {ctx.contract.name}'s range")]
    inputs = ctx.seeds(P_ONE).probe()
    try:
        tgt = ctx.build(p=1.0)
        tgt.seed(ctx.seeds(P_ONE).seed())
        y = ctx.call(tgt, inputs)
        expected = _all_dropped(ctx, inputs)
        rtol, atol = value_tolerance(y.dtype)
        off = int(np.sum(~np.isclose(np.asarray(y, np.float64), expected, rtol=rtol, atol=atol)))
        nonfinite = int(np.sum(~np.isfinite(y)))
        grad_bad = 0
        if getattr(tgt, "has_gradients", False):
            g = np.ones(ctx.output_shape(inputs))
            _, grads = guarded(lambda: tgt.forward_backward(inputs, g), ctx.settings.call_timeout_s, "backward")
            grad_bad = int(sum(np.sum(~np.isfinite(np.asarray(gr, np.float64))) for gr in grads))
    except TargetError as exc:
        return [error_result(ctx, P_ONE, str(exc))]
    ok = off == 0 and nonfinite == 0 and grad_bad == 0
    return [exact_result(ctx, P_ONE, ok, f"p=1: elements not dropped={off}, non-finite outputs={nonfinite}, "
                         f"non-finite gradients={grad_bad}", "0, 0, 0", {}, time.perf_counter() - start)]


def _all_dropped(ctx: CheckContext, inputs) -> np.ndarray:
    params = dict(ctx.params, p=1.0)
    if "all_dropped" in ctx.contract.extra:
        return np.asarray(ctx.contract.extra["all_dropped"](inputs, params), np.float64)
    shape = ctx.output_shape(inputs)
    return np.broadcast_to(np.asarray(ctx.contract.dropped_value(inputs, params), np.float64), shape)


def invalid_p_rejected(ctx: CheckContext) -> List[CheckResult]:
    """Exact: building (or calling) the target with p outside its range raises."""
    start = time.perf_counter()
    bad_values = [-0.1, 1.5] + ([] if ctx.contract.p_one_allowed else [1.0])
    accepted = []
    inputs = ctx.seeds(INVALID).probe()
    for value in bad_values:
        try:
            params = dict(ctx.params, p=value)
            tgt = guarded(lambda: ctx.spec.build(params), ctx.settings.call_timeout_s, "build")
            tgt.seed(ctx.seeds(INVALID).seed())
            ctx.call(tgt, inputs)
            accepted.append(value)
        except TargetError:
            pass
    return [exact_result(ctx, INVALID, not accepted, f"invalid p accepted={accepted or 'none'}",
                         f"none of {bad_values} accepted", {"accepted": accepted}, time.perf_counter() - start)]


def nonfinite_inputs_leave_others_untouched(ctx: CheckContext) -> List[CheckResult]:
    """Exact: NaN/inf planted in a few elements (same seed) change no other element of an
    element-wise or unit-wise variant; what the poisoned elements become is reported."""
    start = time.perf_counter()
    seeds = ctx.seeds(NONFINITE)
    inputs = seeds.probe()
    x = np.array(inputs[0])  # the configuration's dtype: the poisoned call must differ only where planted
    flat = x.reshape(-1)
    idx = seeds.rng().choice(flat.size, size=min(8, flat.size), replace=False)
    poison = x.copy().reshape(-1)
    poison[idx[::2]] = np.nan
    poison[idx[1::2]] = np.inf
    poisoned = (poison.reshape(x.shape),) + tuple(inputs[1:])
    try:
        ctx.target.seed(seeds.seed())
        clean = ctx.call(ctx.target, inputs)
        ctx.target.seed(seeds.seed())
        dirty = ctx.call(ctx.target, poisoned)
    except TargetError as exc:
        return [error_result(ctx, NONFINITE, str(exc))]
    mask = np.ones(x.shape, bool)
    mask.reshape(-1)[idx] = False
    if clean.shape != x.shape:
        return [skipped_result(ctx, NONFINITE, "output is not element-aligned with the input")]
    changed = int(np.sum(~_same_elementwise(clean, dirty)[mask]))
    planted = dirty.reshape(-1)[idx]
    outcome = {"planted": int(len(idx)), "became_nan": int(np.sum(np.isnan(planted))),
               "became_inf": int(np.sum(np.isinf(planted))), "became_zero": int(np.sum(planted == 0))}
    return [exact_result(ctx, NONFINITE, changed == 0, f"finite elements changed by planted NaN/inf={changed} "
                         f"(planted elements became: {outcome['became_nan']} NaN, {outcome['became_inf']} inf, "
                         f"{outcome['became_zero']} zero)", "0", outcome, time.perf_counter() - start)]


def _same_elementwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a == b) | (np.isnan(a) & np.isnan(b))


def dtype_and_shape_preserved(ctx: CheckContext) -> List[CheckResult]:
    """Exact: output dtype equals input dtype and the shape is the contract's, per dtype."""
    start = time.perf_counter()
    bad = []
    try:
        for dt in _dtypes(ctx):
            inputs = ctx.seeds(DTYPES).probe(dtype=dt.type)
            ctx.target.seed(ctx.seeds(DTYPES).seed())
            y = ctx.call(ctx.target, inputs)
            if y.dtype != dt or y.shape != ctx.output_shape(inputs):
                bad.append(f"{dt.name}->{y.dtype.name}{y.shape}")
    except TargetError as exc:
        return [error_result(ctx, DTYPES, str(exc))]
    return [exact_result(ctx, DTYPES, not bad, "mismatches: " + (", ".join(bad) or "none"), "none", {},
                         time.perf_counter() - start)]


def empty_batch_works(ctx: CheckContext) -> List[CheckResult]:
    """Exact: a batch of size 0 gives an empty output of the right shape, train and eval."""
    start = time.perf_counter()
    shape = (0,) + tuple(ctx.shape[1:])
    if "empty_shape" in ctx.contract.extra:
        shape = ctx.contract.extra["empty_shape"](ctx.shape)
    try:
        inputs = ctx.seeds(EMPTY).probe(shape=shape)
    except Exception as exc:  # the contract cannot probe an empty batch
        return [skipped_result(ctx, EMPTY, f"no empty probe: {exc}")]
    try:
        ctx.target.seed(ctx.seeds(EMPTY).seed())
        y = ctx.call(ctx.target, inputs)
        z = ctx.call(ctx.target, inputs, training=False)
    except TargetError as exc:
        return [exact_result(ctx, EMPTY, False, f"empty batch {shape}: {exc}", "an empty output")]
    want = ctx.output_shape(inputs)
    ok = y.shape == want and z.shape == want
    return [exact_result(ctx, EMPTY, ok, f"empty batch output shapes={y.shape}, {z.shape}", f"{want}", {},
                         time.perf_counter() - start)]
