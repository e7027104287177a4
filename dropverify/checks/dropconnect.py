"""DropConnect mask structure: one weight mask per batch or one per sample, as declared.

On the packed probe (every sample's whole mask row in its output, see
``dropverify.variants.dropconnect.packed_probe``) the samples that see the same columns
are compared mask for mask. One mask per batch makes them identical in every call; one
per sample makes them differ unless every one of their weights happens to draw alike,
whose probability the check drives below MISS by drawing enough calls.
"""
from __future__ import annotations

import math
import time
from typing import List, Tuple

import numpy as np

from ..results import CheckResult
from ._core import CheckContext
from ._sequential import error_result, exact_result, skipped_result
from ._worker import TargetError

NAME = "weight_mask_convention_exact"
MISS = 1e-9
"""Bound on the probability that one-mask-per-sample draws look like one mask per batch
in every call the check makes: the error rate of both verdicts."""
MAX_CALLS = 64


def applies(ctx: CheckContext) -> bool:
    """DropConnect-style contracts (a ``mask_per`` parameter and a per-sample decoder) at
    0 < p < 1; at p = 0 and p = 1 the two conventions give the same output."""
    return ("mask_per" in ctx.params and "sample_masks" in ctx.contract.extra
            and "gradient_probe" in ctx.contract.extra and 0.0 < ctx.params.get("p", 0.5) < 1.0)


def _groups(observed: np.ndarray) -> List[np.ndarray]:
    """Row indices of the samples that see the same columns (one group per window)."""
    _, inverse = np.unique(observed, axis=0, return_inverse=True)
    inverse = np.asarray(inverse).reshape(-1)
    return [np.flatnonzero(inverse == g) for g in range(int(inverse.max(initial=-1)) + 1)]


def log_p_alike(p: float, groups: List[np.ndarray], observed: np.ndarray, n_out: int) -> float:
    """log P(every group's samples draw identical masks on their columns | one mask per
    sample): per weight, all G independent draws agree with probability p^G + (1-p)^G."""
    total = 0.0
    for rows in groups:
        g = len(rows)
        if g > 1:
            bits = n_out * int(observed[rows[0]].sum())
            total += bits * math.log(p ** g + (1.0 - p) ** g)
    return total


def _differing(keep: np.ndarray, groups: List[np.ndarray], observed: np.ndarray) -> Tuple[int, int]:
    """(samples whose mask differs from their group's first sample, samples compared)."""
    differ = compared = 0
    for rows in groups:
        if len(rows) > 1:
            cols = observed[rows[0]]
            ref = keep[rows[0]][:, cols]
            differ += int(np.any(keep[rows[1:]][:, :, cols] != ref[None], axis=(1, 2)).sum())
            compared += len(rows) - 1
    return differ, compared


def _probability(log_p: float) -> str:
    """exp(log_p) in words that survive underflow (e.g. "1e-9339")."""
    return f"{math.exp(log_p):.2g}" if log_p > -700 else f"1e{log_p / math.log(10):.0f}"


def weight_mask_convention_exact(ctx: CheckContext) -> List[CheckResult]:
    """Exact up to MISS = 1e-9: the samples' weight masks are all identical in every call
    (declared ``mask_per='batch'``) or not identical across the batch in at least one call
    (declared ``mask_per='sample'``). Calls are drawn until identical masks under one mask per
    sample have probability <= MISS (at most MAX_CALLS; INCONCLUSIVE where p is too close to
    0 or 1 for that). A layer that cannot be decoded is left to the value check."""
    start = time.perf_counter()
    declared, p = ctx.params["mask_per"], ctx.params["p"]
    inputs = ctx.contract.extra["gradient_probe"](tuple(ctx.shape), ctx.seeds(NAME).probe_rng(), np.float64)
    decode = ctx.contract.extra["sample_masks"]
    observed = inputs[0] != 0
    groups = _groups(observed)
    n_out = int(np.shape(inputs[1])[0])
    per_call = log_p_alike(p, groups, observed, n_out)
    if per_call >= 0.0:
        return [skipped_result(ctx, NAME, "no two samples see the same weights on this probe shape")]
    calls = int(math.ceil(math.log(MISS) / per_call))
    if calls > MAX_CALLS:
        return [skipped_result(ctx, NAME, f"at p={p:g} one mask per sample looks like one per batch with "
                                          f"probability {math.exp(per_call):.3g} per call; {calls} calls needed")]
    differ = compared = 0
    try:
        stream = ctx.stream(inputs, ctx.seeds(NAME).seed())
        for _ in range(calls):
            y = next(stream)
            masks = decode(inputs, y, ctx.params)
            if not masks.valid.all():
                return [skipped_result(ctx, NAME, "the output is not a masked weight times x "
                                                  "(see multiplier_values_exact)")]
            d, c = _differing(masks.keep, groups, observed)
            differ, compared = differ + d, compared + c
    except TargetError as exc:
        return [error_result(ctx, NAME, str(exc))]
    found = "sample" if differ else "batch"
    details = {"declared": declared, "observed": found, "calls": calls, "samples_differing": differ,
               "samples_compared": compared, "log_p_identical_if_per_sample": calls * per_call}
    in_calls = f"{calls} call" + ("s" if calls > 1 else "")
    seen = (f"one weight mask per sample ({differ} of {compared} samples' masks differ from the first of "
            f"their batch, {in_calls})" if differ else
            f"one weight mask per batch (every sample's mask identical, {in_calls}; one mask per sample "
            f"would look so with probability {_probability(calls * per_call)})")
    return [exact_result(ctx, NAME, found == declared, seen,
                         f"one weight mask per {declared}, as the contract declares (mask_per={declared!r})", details,
                         time.perf_counter() - start)]
