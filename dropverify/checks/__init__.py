"""The checks, one module per property, and the registry the runner reads.

Each entry says which contracts it applies to and how many statistical results it will
produce, so the runner can split the run's family-wise false-alarm rate before sampling.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

from . import (depth, dispersion, edges, gradients, independence, inputs, longhorizon, moments, positions, rates,
               repeats, values)
from ._core import (ERROR, FAIL, INCONCLUSIVE, PASS, CheckContext, CheckResult, Settings,
                    TargetError)


@dataclass(frozen=True)
class CheckSpec:
    name: str
    property: str
    run: Callable[[CheckContext], List[CheckResult]]
    applies: Callable[[CheckContext], bool]
    statistical: Callable[[CheckContext], int]
    doc: str = ""
    shares_stream: bool = False  # reads the configuration's one shared stream (and no other target calls)
    parts: Optional[Callable[[CheckContext], List[Callable[[], List[CheckResult]]]]] = None
    """Independent sub-checks that each read the shared stream from its first call (one per axis)."""


def _always(ctx: CheckContext) -> bool:
    return True


def _zero(ctx: CheckContext) -> int:
    return 0


def _one(ctx: CheckContext) -> int:
    return 1


def _random(ctx: CheckContext) -> bool:
    return independence.randomness_is_observable(ctx)


def _registry() -> Tuple[CheckSpec, ...]:
    from . import dropblock, dropconnect, lookup
    specs = [
        CheckSpec(rates.NAME, "effective drop rate", rates.drop_rate_matches_by_binomial,
                  lambda c: rates.applies(c) and _random(c), _one, shares_stream=True),
        CheckSpec(inputs.NAME, "drop rate independent of the input", inputs.drop_rate_independent_of_input_by_stratum,
                  inputs.applies, _one),
        CheckSpec(positions.PER_POSITION, "per-position drop rate", positions.drop_rate_per_position_by_binomial,
                  positions.applies_per_position, _one, shares_stream=True),
        CheckSpec(moments.MEAN, "expectation preservation", moments.expectation_matches_by_t_test,
                  lambda c: moments.applies_mean(c) and c.params.get("p", 0.5) < 1, _one, shares_stream=True),
        CheckSpec(moments.VARIANCE, "variance", moments.variance_matches_by_t_test, moments.applies_variance, _one,
                  shares_stream=True),
        CheckSpec(values.NAME, "multiplier values", values.multiplier_values_exact, values.applies, _zero),
        CheckSpec(independence.CONSTANT, "mask structure", independence.mask_constant_along_shared_axes,
                  lambda c: bool(c.contract.shared_axes(c.params, c.shape)) and c.contract.structure != "block",
                  _zero, shares_stream=True),
        CheckSpec("masks_independent_along_axes_by_fisher", "mask independence", independence.independence_checks,
                  _random, lambda c: len(independence.independent_axes(c)), shares_stream=True,
                  parts=independence.independence_parts),
        CheckSpec(independence.FLAT, "mask independence", independence.masks_independent_at_flat_offsets,
                  independence.applies_flat, _one, shares_stream=True),
        CheckSpec(independence.FRESH, "fresh mask every call", independence.masks_fresh_across_calls,
                  _random, _one, shares_stream=True),
        CheckSpec(independence.SEEDS, "independent seeded streams", independence.masks_independent_across_seeds,
                  _random, _one),
        CheckSpec(independence.OVERLAP, "independent seeded streams", independence.seed_streams_do_not_overlap,
                  _random, _one),
        CheckSpec(independence.REPRO, "same seed reproduces", independence.same_seed_reproduces, _always, _zero),
        CheckSpec(repeats.NAME, "mask structure", repeats.masks_never_repeat_by_hash, _random, _zero),
        CheckSpec(longhorizon.REPEAT, "long-horizon repeats", longhorizon.masks_never_repeat_over_stream_by_hash,
                  longhorizon.applies_repeat, _zero, shares_stream=True),
        CheckSpec(longhorizon.SHIFT, "shifted reuse across calls", longhorizon.draws_not_reused_shifted_across_calls,
                  longhorizon.applies_exchangeable, _zero, shares_stream=True),
        CheckSpec(longhorizon.LAG, "shared draws at any flat lag", longhorizon.draws_not_shared_at_any_flat_lag,
                  longhorizon.applies_exchangeable, _zero, shares_stream=True),
        CheckSpec(dispersion.NAME, "per-call rate dispersion", dispersion.per_call_rate_dispersion_by_chi_square,
                  lambda c: dispersion.applies(c) and _random(c), _one, shares_stream=True),
        *dropblock._specs(),
        CheckSpec(depth.NAME, "expected depth", depth.expected_depth_matches_by_t_test, depth.applies, _one,
                  shares_stream=True),
        CheckSpec(gradients.FORWARD_MASK, "gradient consistency", gradients.gradient_uses_forward_mask,
                  gradients.applies, _zero),
        CheckSpec(gradients.FINITE_DIFF, "gradient consistency", gradients.gradient_matches_finite_differences,
                  gradients.applies, _zero),
        CheckSpec(dropconnect.NAME, "mask structure", dropconnect.weight_mask_convention_exact, dropconnect.applies,
                  _zero),
        CheckSpec(lookup.NAME, "mask structure", lookup.lookup_reuses_forward_mask_exact, lookup.applies, _zero),
        CheckSpec(edges.EVAL, "eval mode", edges.eval_mode_deterministic_and_exact,
                  lambda c: c.contract.eval_output is not None, _zero),
        CheckSpec(edges.P_ZERO, "edge cases", edges.p_zero_is_exact_identity, _always, _zero),
        CheckSpec(edges.P_ONE, "edge cases", edges.p_one_gives_zeros_with_finite_gradients,
                  edges.applies_p_one, _zero),
        CheckSpec(edges.INVALID, "edge cases", edges.invalid_p_rejected, _always, _zero),
        CheckSpec(edges.NONFINITE, "edge cases", edges.nonfinite_inputs_leave_others_untouched,
                  lambda c: c.contract.multiplicative, _zero),
        CheckSpec(edges.DTYPES, "edge cases", edges.dtype_and_shape_preserved, _always, _zero),
        CheckSpec(edges.EMPTY, "edge cases", edges.empty_batch_works, _always, _zero),
    ]
    return tuple(specs)


CHECKS: Tuple[CheckSpec, ...] = _registry()


def check_names() -> Tuple[str, ...]:
    return tuple(c.name for c in CHECKS)


__all__ = ["CHECKS", "CheckSpec", "CheckContext", "CheckResult", "Settings", "TargetError",
           "PASS", "FAIL", "INCONCLUSIVE", "ERROR", "check_names"]
