"""The checks, one module per property, and the registry the runner reads.

Each entry declares, as data, what the rest of the harness needs to know about a check:
which contracts it applies to, how many statistical results it will produce (the runner
splits the run's family-wise false-alarm rate before sampling), the names its results carry,
its ``role`` for the diagnosis, the words its FAIL is read as (``explain``), the FAILs of other
checks it explains (``consequences``), and whether it reads the configuration's shared
stream. Its random draws come from a stream derived from its name (:meth:`CheckContext.seeds`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from ..settings import Settings
from . import (_words, depth, dispersion, drift, edges, gradients, independence, inputs, longhorizon, marginals,
               moments, positions, rates, repeats, values)
from . import callpatterns
from ..results import ERROR, FAIL, INCONCLUSIVE, PASS, CheckResult
from ._core import CheckContext
from ._worker import TargetError

WITHIN_CALL = "structural-within-call"
"""A FAIL means units inside one call share or couple their draws: the pooled checks then count
copies of one draw as independent units, and their FAILs are withdrawn unless per-call evidence
alone rejects."""
STRUCTURAL = "structural"
"""A FAIL is a structural cause across calls or seeds (repeats, shifted reuse, dispersion)."""
POOLED = "pooled"
"""The FAIL side pools mask units within a call, counted as independent (withdrawn under a
within-call structural cause)."""
CALL_LEVEL = "call-level"
"""The evidence is one call (or one step of calls) at a time, or exact: valid whatever happens
inside a call."""
ROLES = (WITHIN_CALL, STRUCTURAL, POOLED, CALL_LEVEL)

Explain = Callable[[CheckResult, str], Optional[str]]


@dataclass(frozen=True)
class CheckSpec:
    """One registry entry (see the module docstring). ``results``: the names its results carry,
    ``K`` standing for an axis index and ``[LAYOUT]`` for a memory layout."""

    name: str
    property: str
    run: Callable[[CheckContext], List[CheckResult]]
    applies: Callable[[CheckContext], bool]
    statistical: Callable[[CheckContext], int]
    role: str  # one of ROLES: required, so that no entry leaves the diagnosis to guess
    results: Tuple[str, ...] = ()
    explain: Optional[Explain] = None
    consequences: Tuple[str, ...] = ()
    doc: str = ""
    shares_stream: bool = False  # reads the configuration's one shared stream (and no other target calls)
    parts: Optional[Callable[[CheckContext], List[Callable[[], List[CheckResult]]]]] = None
    """Independent sub-checks that each read the shared stream from its first call (one per axis)."""
    marginal: bool = False
    """A FAIL is a MARGINAL cause: the drop rate itself is wrong or uneven (by position, sample,
    input, time). The diagnosis names marginal causes first; the dependence statistics condition
    on marginal rates, so a marginal fault alone does not make them FAIL. Set it on any check of
    a rate (one registry attribute); see :func:`is_marginal`."""

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"{self.name}: role {self.role!r}, but should be one of {ROLES}")
        if not self.results:
            object.__setattr__(self, "results", (self.name,))

    def produces(self, result: str) -> bool:
        """True when a result named ``result`` comes from this check."""
        return result == self.name or any(_pattern(r).match(result) for r in self.results)


def _pattern(result: str) -> "re.Pattern[str]":
    text = re.escape(result).replace("axisK", r"axis\d+").replace(r"\[LAYOUT\]", r"\[[A-Za-z_]+\]")
    return re.compile(f"^{text}$")


def _twin(name: str) -> Tuple[str, str]:
    """A Fisher pair test and its cross-product t-test twin (continuous multipliers)."""
    return (name, name.replace("_by_fisher", "_by_cross_product_t_test"))


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
                  lambda c: rates.applies(c) and _random(c), _one, role=POOLED, shares_stream=True, marginal=True),
        CheckSpec(inputs.NAME, "drop rate independent of the input", inputs.drop_rate_independent_of_input_by_stratum,
                  inputs.applies, _one, role=POOLED, marginal=True),
        CheckSpec(positions.PER_POSITION, "per-position drop rate", positions.drop_rate_per_position_by_binomial,
                  positions.applies_per_position, _one, role=POOLED, shares_stream=True, marginal=True),
        CheckSpec(marginals.NAME, "marginal drop rates (every axis, flat index)", marginals.drop_rate_marginals,
                  marginals.applies, _one, role=POOLED, shares_stream=True, marginal=True,
                  explain=_words.marginal_rates),
        CheckSpec(moments.MEAN, "expectation preservation", moments.expectation_matches_by_t_test,
                  lambda c: moments.applies_mean(c) and c.params.get("p", 0.5) < 1, _one, role=CALL_LEVEL,
                  shares_stream=True),
        CheckSpec(moments.VARIANCE, "variance", moments.variance_matches_by_t_test, moments.applies_variance, _one,
                  shares_stream=True, role=CALL_LEVEL),
        CheckSpec(values.NAME, "multiplier values", values.multiplier_values_exact, values.applies, _zero,
                  results=(f"{values.NAME}[LAYOUT]",), role=CALL_LEVEL),
        CheckSpec(independence.CONSTANT, "mask structure", independence.mask_constant_along_shared_axes,
                  lambda c: bool(c.contract.shared_axes(c.params, c.shape)) and c.contract.structure != "block",
                  _zero, role=WITHIN_CALL, explain=_words.stated, shares_stream=True),
        CheckSpec("masks_independent_along_axes_by_fisher", "mask independence", independence.independence_checks,
                  _random, lambda c: len(independence.independent_axes(c)), role=WITHIN_CALL,
                  results=("masks_independent_along_axisK_by_fisher",
                           "masks_independent_along_axisK_by_cross_product_t_test"),
                  explain=_words.axis_dependence, shares_stream=True, parts=independence.independence_parts),
        CheckSpec(independence.FLAT, "mask independence", independence.masks_independent_at_flat_offsets,
                  independence.applies_flat, _one, role=POOLED, results=_twin(independence.FLAT),
                  explain=_words.flat_offsets, shares_stream=True),
        CheckSpec(independence.FRESH, "fresh mask every call", independence.masks_fresh_across_calls,
                  _random, _one, role=POOLED, results=_twin(independence.FRESH), explain=_words.stale_calls,
                  shares_stream=True),
        CheckSpec(independence.SEEDS, "independent seeded streams", independence.masks_independent_across_seeds,
                  _random, _one, role=POOLED, results=_twin(independence.SEEDS), explain=_words.seed_ignored),
        CheckSpec(independence.OVERLAP, "independent seeded streams", independence.seed_streams_do_not_overlap,
                  _random, _one, role=POOLED, results=_twin(independence.OVERLAP), explain=_words.seeds_overlap),
        CheckSpec(independence.REPRO, "same seed reproduces", independence.same_seed_reproduces, _always, _zero,
                  role=CALL_LEVEL),
        CheckSpec(repeats.NAME, "mask structure", repeats.masks_never_repeat_by_hash, _random, _zero,
                  role=STRUCTURAL, explain=_words.stated),
        CheckSpec(longhorizon.REPEAT, "long-horizon repeats", longhorizon.masks_never_repeat_over_stream_by_hash,
                  longhorizon.applies_repeat, _zero, role=STRUCTURAL, explain=_words.stream_repeat,
                  consequences=(independence.FRESH, repeats.NAME, drift.NAME), shares_stream=True),
        CheckSpec(longhorizon.SHIFT, "shifted reuse across calls", longhorizon.draws_not_reused_shifted_across_calls,
                  longhorizon.applies_exchangeable, _zero, role=STRUCTURAL, explain=_words.shifted_reuse,
                  consequences=(independence.FRESH, dispersion.NAME), shares_stream=True),
        CheckSpec(longhorizon.LAG, "shared draws at any flat lag", longhorizon.draws_not_shared_at_any_flat_lag,
                  longhorizon.applies_exchangeable, _zero, role=WITHIN_CALL, explain=_words.shared_lag,
                  consequences=(dispersion.NAME, independence.FLAT), shares_stream=True),
        CheckSpec(dispersion.NAME, "per-call rate dispersion", dispersion.per_call_rate_dispersion_by_chi_square,
                  lambda c: dispersion.applies(c) and _random(c), _one, role=STRUCTURAL, explain=_words.dispersion,
                  shares_stream=True),
        CheckSpec(drift.NAME, "drop rate steady over the stream", drift.drop_rate_steady_over_stream_by_windows,
                  drift.applies, _one, role=STRUCTURAL, explain=_words.drift, shares_stream=True,
                  marginal=True),  # drift.CONSEQUENCES
        *dropblock._specs(),
        CheckSpec(depth.NAME, "expected depth", depth.expected_depth_matches_by_t_test, depth.applies, _one,
                  shares_stream=True, role=CALL_LEVEL),
        CheckSpec(gradients.FORWARD_MASK, "gradient consistency", gradients.gradient_uses_forward_mask,
                  gradients.applies, _zero, role=CALL_LEVEL, results=(f"{gradients.FORWARD_MASK}[LAYOUT]",)),
        CheckSpec(gradients.FINITE_DIFF, "gradient consistency", gradients.gradient_matches_finite_differences,
                  gradients.applies, _zero, role=CALL_LEVEL, results=(f"{gradients.FINITE_DIFF}[LAYOUT]",)),
        CheckSpec(dropconnect.NAME, "mask structure", dropconnect.weight_mask_convention_exact, dropconnect.applies,
                  _zero, role=STRUCTURAL, explain=_words.stated),  # a convention stated exactly; withdraws nothing
        CheckSpec(lookup.NAME, "mask structure", lookup.lookup_reuses_forward_mask_exact, lookup.applies, _zero,
                  role=CALL_LEVEL),
        CheckSpec(edges.EVAL, "eval mode", edges.eval_mode_deterministic_and_exact,
                  lambda c: c.contract.eval_output is not None, _zero, role=CALL_LEVEL),
        CheckSpec(edges.P_ZERO, "edge cases", edges.p_zero_is_exact_identity, _always, _zero, role=CALL_LEVEL),
        CheckSpec(edges.P_ONE, "edge cases", edges.p_one_gives_zeros_with_finite_gradients,
                  edges.applies_p_one, _zero, role=CALL_LEVEL),
        CheckSpec(edges.INVALID, "edge cases", edges.invalid_p_rejected, _always, _zero, role=CALL_LEVEL),
        CheckSpec(edges.NONFINITE, "edge cases", edges.nonfinite_inputs_leave_others_untouched,
                  lambda c: c.contract.multiplicative, _zero, role=CALL_LEVEL),
        CheckSpec(edges.DTYPES, "edge cases", edges.dtype_and_shape_preserved, _always, _zero, role=CALL_LEVEL),
        CheckSpec(edges.EMPTY, "edge cases", edges.empty_batch_works, _always, _zero, role=CALL_LEVEL),
        CheckSpec(callpatterns.AFTER_EVAL, "call patterns", callpatterns.masks_fresh_after_eval, _random, _zero,
                  role=STRUCTURAL, explain=_words.after_eval),
        CheckSpec(callpatterns.INSTANCES, "call patterns", callpatterns.instances_draw_independent_masks, _random,
                  _zero, role=STRUCTURAL, explain=_words.instances_share),
        CheckSpec(callpatterns.INPLACE, "call patterns", callpatterns.input_unchanged_unless_inplace, _always, _zero,
                  role=CALL_LEVEL),
    ]
    return tuple(specs)


CHECKS: Tuple[CheckSpec, ...] = _registry()
_BY_RESULT: Dict[str, Optional[CheckSpec]] = {}


def check_names() -> Tuple[str, ...]:
    """The registry's check names, in run order."""
    return tuple(c.name for c in CHECKS)


def spec_for_result(result: str) -> Optional[CheckSpec]:
    """The registry entry whose results carry the name ``result`` (None: not a registry check,
    e.g. a model-level check of ``dropverify scan``)."""
    if result not in _BY_RESULT:
        _BY_RESULT[result] = next((c for c in CHECKS if c.produces(result)), None)
    return _BY_RESULT[result]


def is_marginal(result: str) -> bool:
    """True when ``result`` comes from a check of a (marginal) drop rate (``CheckSpec.marginal``)."""
    spec = spec_for_result(result)
    return bool(spec is not None and spec.marginal)


def role_of(result: str) -> Optional[str]:
    """The diagnosis role of the check that produced ``result`` (see :data:`ROLES`)."""
    spec = spec_for_result(result)
    return spec.role if spec is not None else None


__all__ = ["CALL_LEVEL", "CHECKS", "CheckSpec", "CheckContext", "CheckResult", "ERROR", "FAIL", "INCONCLUSIVE",
           "PASS", "POOLED", "ROLES", "STRUCTURAL", "Settings", "TargetError", "WITHIN_CALL", "check_names",
           "is_marginal", "role_of", "spec_for_result"]
