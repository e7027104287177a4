"""Diagnosis first: one line per root cause, in words, with the results that support it.

Pooled tests treat the mask units inside a call as independent; that is what the contract
promises, so their FAILs are valid evidence against the contract. But once a *structural*
property fails (one draw for the whole batch, a mask shared by every channel, items
reusing each other's masks), the pooled tests of other properties count copies of one draw
as independent units and FAIL too, blaming the wrong property. So:

* structural FAILs become root causes, stated in words;
* a FAIL of a pooled-unit check whose per-call evidence alone (valid whatever happens
  inside a call) does not reject is withdrawn: INCONCLUSIVE, "not assessed from pooled
  units", grouped under the root cause;
* every other FAIL is its own root cause; identical ERRORs collapse to one line.

Runs before Holm, on sequential p-values; withdrawn results keep the call-level p-value.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from .checks._core import ERROR, FAIL, INCONCLUSIVE, CheckResult

_AXIS = re.compile(r"^masks_independent_along_axis(\d+)_by_")
POOLED_UNIT_CHECKS = ("drop_rate_matches_by_binomial", "drop_rate_per_position_by_binomial",
                      "drop_map_matches_theory_by_binomial", "gamma_matches_by_binomial",
                      "masks_fresh_across_calls_by_fisher", "masks_independent_across_seeds_by_fisher",
                      "seed_streams_do_not_overlap_by_fisher", "masks_independent_at_flat_offsets_by_fisher",
                      "drop_rate_independent_of_input_by_stratum")
"""Checks whose FAIL side pools mask units within a call (counted as independent)."""
STRUCTURAL = ("mask_constant_along_shared_axes", "masks_never_repeat_by_hash", "weight_mask_convention",
              "masks_never_repeat_over_stream_by_hash", "draws_not_reused_shifted_across_calls",
              "draws_not_shared_at_any_flat_lag", "per_call_rate_dispersion_by_chi_square")
LAG = "draws_not_shared_at_any_flat_lag"
SHIFT = "draws_not_reused_shifted_across_calls"
STREAM_REPEAT = "masks_never_repeat_over_stream_by_hash"
DISPERSION = "per_call_rate_dispersion_by_chi_square"
CONSEQUENCES = {
    LAG: (DISPERSION, "masks_independent_at_flat_offsets_by_fisher"),
    SHIFT: ("masks_fresh_across_calls_by_fisher", DISPERSION),
    STREAM_REPEAT: ("masks_fresh_across_calls_by_fisher", "masks_never_repeat_by_hash"),
}
"""Results that FAIL as a consequence of a cause another check establishes directly: shared
draws inside a call inflate the per-call count's variance; a shifted or repeated stream makes
calls dependent. They are grouped under that cause as supporting evidence."""


@dataclass(frozen=True)
class RootCause:
    """One cause in words, the results that establish it, and those withdrawn because of it."""

    summary: str
    evidence: Tuple[str, ...]
    withdrawn: Tuple[str, ...] = ()
    kind: str = "FAIL"  # FAIL | ERROR

    def to_dict(self) -> Dict[str, object]:
        return {"summary": self.summary, "evidence": list(self.evidence), "withdrawn": list(self.withdrawn),
                "kind": self.kind}


def _short(message: str) -> str:
    return message.rsplit(" [", 1)[0] if message.endswith("]") else message


def _axis_words(axis: int, layout: str) -> str:
    names = [a.strip() for a in re.sub(r"[()]", "", layout.split(" or ")[0]).split(",")] if layout else []
    if axis == 0:
        return "the batch axis"
    if axis < len(names) and names[axis]:
        label = {"C": "channels", "H": "rows", "W": "columns", "D": "depth", "T": "time steps", "L": "blocks"}
        return f"axis {axis} ({label.get(names[axis], names[axis])})"
    return f"axis {axis}"


def structural_summary(r: CheckResult, layout: str = "") -> Optional[str]:
    """The root cause a structural FAIL establishes, in words (None: not structural)."""
    m = _AXIS.match(r.check)
    identical = bool(r.details.get("identical")) if r.details else False
    if m:
        axis = int(m.group(1))
        where = _axis_words(axis, layout)
        if identical and axis == 0:
            return "one draw per batch instead of one per item: every batch item shares the mask"
        if identical and axis == 1 and "C" in layout:
            return "mask shared by all channels instead of one per channel"
        if identical:
            return f"one mask shared along {where}: every unit pair identical ({r.details.get('worst_lane')})"
        return f"masks dependent along {where} ({r.details.get('worst_lane', '')}: {_short(r.message)})"
    if r.check == "masks_independent_at_flat_offsets_by_fisher" and identical:
        return (f"identical masks at {r.details.get('identical')}: the random stream wraps or restarts "
                "within a call")
    if r.check == "masks_fresh_across_calls_by_fisher":
        lag = r.details.get("worst_lane", "") if r.details else ""
        if identical:
            return f"the same mask on later calls ({lag}): the RNG does not advance"
        return f"masks of different calls are dependent ({lag}): stale or cached masks"
    if r.check == "masks_independent_across_seeds_by_fisher":
        return "the seed is ignored: different seeds give dependent masks"
    if r.check == "seed_streams_do_not_overlap_by_fisher":
        return "seeded streams overlap: call 1 under seed s repeats call 0 under seed s + 1"
    d = r.details or {}
    if r.check == STREAM_REPEAT and d.get("pattern"):
        return str(d["pattern"])
    if r.check == SHIFT and "worst_shift" in d:
        shift = -int(d["worst_shift"])
        return f"call t+1 reuses call t's draws shifted by {shift}" if shift else \
            "call t+1 reuses call t's draws unshifted (the same draws at the same positions)"
    if r.check == LAG and "worst_lag" in d:
        return f"elements {int(d['worst_lag'])} apart share one draw"
    if r.check == DISPERSION and r.estimate is not None:
        side = "over" if r.estimate > 1 else "under"
        return (f"per-call rate {side}-dispersed (variance of the per-call dropped count {r.estimate:.3g}x "
                "binomial)" + (": a fixed number of units dropped per call?" if side == "under" else ""))
    if r.check in STRUCTURAL or r.check.startswith("mask_shared") or r.check.startswith("dropconnect_mask"):
        return _short(r.message)
    return None


def _dropblock_summary(r: CheckResult) -> Optional[str]:
    try:
        from .checks import dropblock
    except ImportError:  # pragma: no cover
        return None
    fn = getattr(dropblock, "diagnose", None)
    if fn is None or not r.details:
        return None
    try:
        return fn(r.details)
    except Exception:  # noqa: BLE001 - a diagnosis must never break a run
        return None


def _within_call(r: CheckResult) -> bool:
    """Does this structural FAIL make units inside a call dependent (so pooled tests count
    copies of one draw as independent units)?"""
    return bool(_AXIS.match(r.check)) or r.check in ("mask_constant_along_shared_axes", LAG) \
        or r.check.startswith("mask_shared") or r.check.startswith("dropconnect_mask") \
        or (r.check == "masks_independent_at_flat_offsets_by_fisher" and bool((r.details or {}).get("identical")))


def _calls_repeat(r: CheckResult) -> bool:
    """Hash check: at least half of the calls of the stream repeat an earlier call's mask
    (an RNG that does not advance, or a small pool): calls are then not independent."""
    if r.check != "masks_never_repeat_by_hash" or r.verdict != FAIL or not r.details:
        return False
    calls = (r.details.get("classes") or {}).get("calls") or {}
    masks = int(calls.get("masks", 1) or 1)
    if int(r.details.get("constant_calls", 0)) * 2 >= masks:
        return False  # one constant mask (nothing or everything dropped, or undecodable output): no random stream
    return int(calls.get("repeats", 0)) * 2 >= masks


def _single_call_p(r: CheckResult) -> float:
    """The sequential p-value of the components that read one call (step) at a time: valid
    evidence whatever the dependence between calls."""
    d = r.details or {}
    return min(1.0, int(d.get("planned_looks", 1)) * float(d.get("p_single_call", 1.0)))


def _inert_cause(out: Sequence[CheckResult]) -> Optional[RootCause]:
    """A layer that drops nothing (or everything) in every call: the rate check says so from
    every call, and the mask-structure FAILs (equal pairs, repeated masks) follow from it."""
    rate = next((r for r in out if r.check == "drop_rate_matches_by_binomial" and r.verdict == FAIL), None)
    pooled = (rate.details or {}).get("pooled_rate") if rate is not None else None
    if pooled not in (0.0, 1.0):
        return None
    text = ("no unit is dropped in any call: the layer has no effect in training mode" if pooled == 0.0 else
            "every unit is dropped in every call")
    follow = tuple(r.check for r in out if r.verdict == FAIL and r.check != rate.check
                   and r.check.startswith(("masks_", "seed_", "drop_rate_", "drop_map_")))
    return RootCause(text, (rate.check,) + follow)


def _withdraw_all(out: List[CheckResult], root: CheckResult,
                  alpha_each: float) -> Tuple[List[CheckResult], List[RootCause]]:
    """Calls are not independent: every statistical FAIL that rests on that assumption is
    withdrawn; one that a single call (step) establishes on its own stays."""
    calls = root.details["classes"]["calls"]
    text = (f"the same mask on most calls ({calls['repeats']} of {calls['masks']} calls repeat an earlier one): "
            "the RNG does not advance or masks come from a small pool")
    withdrawn = []
    for i, r in enumerate(out):
        if r.verdict == FAIL and r.statistical and not r.check.startswith("masks_fresh_across_calls") \
                and _single_call_p(r) > alpha_each:
            out[i] = r.with_(verdict=INCONCLUSIVE, certified=False, p_value=1.0,
                             message=f"not assessed (calls are not independent: {text}) [" +
                                     r.message.rsplit(" [", 1)[-1],
                             details={**r.details, "withdrawn_because": text, "p_pooled_fail": r.p_value})
            withdrawn.append(r.check)
    withdrawn += [r.check for r in out if r.verdict != FAIL and r.details and r.details.get("withdrawn_because")
                  and r.check not in withdrawn]
    causes = [RootCause(text, (root.check,) + tuple(r.check for r in out if r.verdict == FAIL and r.check != root.check
                                                      and (r.check.startswith(("masks_", "seed_", "draws_"))
                                                           or r.check == DISPERSION)),
                        tuple(withdrawn))]
    return out, causes


def diagnose(results: Sequence[CheckResult], layout: str = "",
             alpha_each: float = 1.0) -> Tuple[List[CheckResult], List[RootCause]]:
    """Root causes of one target's results, and the results with pooled-unit FAILs withdrawn
    where a within-call structural FAIL explains them (see the module docstring). A
    withdrawn result keeps the call-level p-value (times its planned looks: the sequential
    p-value of that component), which still enters Holm."""
    out = list(results)
    inert = _inert_cause(out)
    if inert is not None:
        return out, [inert] + _other_causes(out, set(inert.evidence), layout)
    stuck = next((r for r in out if _calls_repeat(r)), None)
    if stuck is not None:
        out, causes = _withdraw_all(out, stuck, alpha_each)
        return out, causes + _other_causes(out, {c for cause in causes for c in cause.evidence}, layout)
    within = sorted((r for r in out if r.verdict == FAIL and _within_call(r)),
                    key=lambda r: (not (r.details or {}).get("identical"), r.check != LAG, r.check))
    supporting: List[str] = [r.check for r in within[1:] if _AXIS.match(r.check)
                             or r.check == "masks_independent_at_flat_offsets_by_fisher"]
    causes: List[RootCause] = []
    withdrawn: List[str] = [r.check for r in out if r.verdict != FAIL and r.details
                            and r.details.get("withdrawn_because")]
    root = structural_summary(within[0], layout) if within else None
    if within:
        for i, r in enumerate(out):
            if r.verdict != FAIL or _within_call(r):
                continue
            if r.check in ("masks_never_repeat_by_hash", "masks_independent_at_flat_offsets_by_fisher", DISPERSION):
                supporting.append(r.check)  # repeats / dependence at flat offsets follow from the shared draw
                continue
            if r.check not in POOLED_UNIT_CHECKS:
                continue
            p_call = r.details.get("p_call_level") if r.details else None
            if p_call is None:
                continue
            p_seq = min(1.0, int(r.details.get("planned_looks", 1)) * float(p_call))
            if p_seq <= alpha_each:
                continue  # the per-call evidence alone establishes this deviation too
            out[i] = r.with_(verdict=INCONCLUSIVE, p_value=p_seq, certified=False,
                             message=f"not assessed from pooled units (they are not independent: {root}); "
                                     f"per-call evidence alone p={p_seq:.3g} [" + r.message.rsplit(" [", 1)[-1],
                             details={**r.details, "withdrawn_because": root, "p_pooled_fail": r.p_value})
            withdrawn.append(r.check)
    failed = {r.check for r in out if r.verdict == FAIL}
    for cause, follows in CONSEQUENCES.items():  # e.g. shared draws -> over-dispersed counts
        if cause in failed:
            supporting += [c for c in follows if c in failed and c not in supporting and c != cause]
    from .checks.inputs import input_cause  # an input-dependent rate, and the fixed-probe FAILs it explains
    by_input = input_cause(out)
    explained = set(by_input[1]) if by_input else set()
    structural = [r for r in out if r.verdict == FAIL and r.check not in supporting and r.check not in explained
                  and structural_summary(r, layout) is not None]
    seen = set()
    for r in structural:
        text = structural_summary(r, layout)
        if text in seen:
            continue
        seen.add(text)
        first = bool(within) and r is within[0]
        own = tuple(c for c in CONSEQUENCES.get(r.check, ()) if c in supporting)
        extra = tuple(supporting) if first else own
        causes.append(RootCause(text, (r.check,) + tuple(dict.fromkeys(c for c in extra if c != r.check)),
                                tuple(withdrawn) if first else ()))
    if by_input:
        causes.append(RootCause(by_input[0], by_input[1]))
    return out, _merge_repeats(causes + _other_causes(out, {r.check for r in structural} | set(supporting) | explained,
                                                      layout), out)


_REPEAT_PARTNERS = {"seeds": ("seed_streams_do_not_overlap_by_fisher", "masks_independent_across_seeds_by_fisher"),
                    "calls": ("masks_fresh_across_calls_by_fisher",)}


def _merge_repeats(causes: List[RootCause], out: Sequence[CheckResult]) -> List[RootCause]:
    """Exact repeats found only across seeds (or only across calls) are the same cause as the
    seed (freshness) check that FAILed: one line, both results as its evidence."""
    rep = next((r for r in out if r.check == "masks_never_repeat_by_hash" and r.verdict == FAIL), None)
    if rep is None:
        return causes
    found = _hash_classes(rep)
    own = next((c for c in causes if c.evidence == ("masks_never_repeat_by_hash",)), None)
    if own is None or len(found) != 1:
        return causes
    partners = _REPEAT_PARTNERS.get(next(iter(found)), ())
    host = next((c for c in causes if c is not own and any(p in c.evidence for p in partners)), None)
    if host is None:
        return causes
    merged = RootCause(host.summary, host.evidence + own.evidence, host.withdrawn, host.kind)
    return [merged if c is host else c for c in causes if c is not own]


def _hash_classes(r: CheckResult) -> set:
    """The classes (calls / items / seeds) in which the repeat check found exact repeats."""
    classes = (r.details or {}).get("classes") or {}
    return {name for name, c in classes.items() if int((c or {}).get("repeats", 0))}


_DROPBLOCK_CONSEQUENCES = ("block_rate_matches_by_t_test", "dropped_set_is_union_of_blocks")


def _other_causes(out: Sequence[CheckResult], explained: set, layout: str) -> List[RootCause]:
    """Every FAIL not explained by a structural cause is a cause of its own, merged where one
    cause shows in several results: the same exact check on several memory layouts, the
    DropBlock results that read one seed scheme (with the mean rate and the block shape it
    implies), exact repeats across seeds / calls beside the seed / freshness check that saw
    them. Identical ERRORs collapse to one line."""
    causes: List[RootCause] = []
    keys: Dict[str, int] = {}
    fails = [r for r in out if r.verdict == FAIL and r.check not in explained]

    def add(key: str, text: str, check: str) -> None:
        if key in keys:
            c = causes[keys[key]]
            causes[keys[key]] = RootCause(c.summary, c.evidence + (check,), c.withdrawn)
        else:
            keys[key] = len(causes)
            causes.append(RootCause(text, (check,)))

    scheme = None
    for r in fails:
        words = _dropblock_summary(r)
        if words:
            scheme = scheme or words.split(";")[0]
            add("dropblock:" + words.split(";")[0], words, r.check)
    for r in fails:
        if _dropblock_summary(r):
            continue
        if scheme and r.check in _DROPBLOCK_CONSEQUENCES:
            add("dropblock:" + scheme, scheme, r.check)
            continue
        stem, _, lay = r.check.partition("[")
        message = _short(r.message)
        if lay:
            message = message.replace(f" ({lay.rstrip(']')})", "")
        text = structural_summary(r, layout) or f"{stem}: {message}"
        add(stem + ":" + message, text, r.check)
    for i, c in enumerate(causes):  # name the layouts when one exact check failed on several
        lays = [e.partition("[")[2].rstrip("]") for e in c.evidence if "[" in e]
        if len(lays) > 1 and c.summary.startswith(c.evidence[0].partition("[")[0] + ":"):
            stem = c.evidence[0].partition("[")[0]
            causes[i] = RootCause(f"{stem} on {', '.join(lays)}:" + c.summary[len(stem) + 1:], c.evidence,
                                  c.withdrawn)
    errors: Dict[str, List[str]] = {}
    for r in out:
        if r.verdict == ERROR:
            errors.setdefault(_short(r.message), []).append(r.check)
    for text, checks in errors.items():
        causes.append(RootCause(f"ERROR: {text}" + (f" (in {len(checks)} checks)" if len(checks) > 1 else ""),
                                tuple(checks), kind=ERROR))
    return causes

