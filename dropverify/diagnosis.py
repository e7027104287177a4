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

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from .checks import POOLED, WITHIN_CALL, dropblock, is_marginal, role_of, spec_for_result
from .checks._words import AXIS_RESULT as _AXIS
from .checks.dispersion import NAME as DISPERSION
from .checks.dropblock import CONTIGUOUS, RATE as BLOCK_RATE
from .checks.independence import FLAT, FRESH, OVERLAP, SEEDS
from .checks.longhorizon import LAG
from .checks.rates import NAME as RATE
from .checks.repeats import NAME as REPEATS
from .results import ERROR, FAIL, INCONCLUSIVE, CheckResult


def _producer(r: CheckResult) -> str:
    spec = spec_for_result(r.check)
    return spec.name if spec is not None else r.check


def _about_masks(r: CheckResult) -> bool:
    """A FAIL about how masks are drawn (dependence, repeats, streams, dispersion): its check
    states its cause in words (``explain``)."""
    spec = spec_for_result(r.check)
    return spec is not None and spec.explain is not None


def consequences(check: str) -> Tuple[str, ...]:
    """The results a FAIL of ``check`` explains (its registry entry's ``consequences``)."""
    spec = spec_for_result(check)
    return spec.consequences if spec is not None else ()


@dataclass(frozen=True)
class RootCause:
    """One cause in words, the results that establish it, and those withdrawn because of it."""

    summary: str
    evidence: Tuple[str, ...]
    withdrawn: Tuple[str, ...] = ()
    kind: str = "FAIL"  # FAIL | ERROR
    restated: str = ""
    """The check (without a layout suffix) whose own result sentence this cause restates, when the
    diagnosis has no words of its own for it ("" otherwise)."""

    @property
    def self_named(self) -> bool:
        """True when the cause is just its single result's own sentence: readers show that
        result's row instead of repeating it as a cause line."""
        return len(self.evidence) == 1 and self.restated == self.evidence[0]

    def to_dict(self) -> Dict[str, object]:
        return {"summary": self.summary, "evidence": list(self.evidence), "withdrawn": list(self.withdrawn),
                "kind": self.kind}


def structural_summary(r: CheckResult, layout: str = "") -> Optional[str]:
    """The root cause a structural FAIL establishes, in words (None: not structural): the
    ``explain`` of the check's registry entry."""
    spec = spec_for_result(r.check)
    if spec is None or spec.explain is None:
        return None
    return spec.explain(r, layout)


def _dropblock_summary(r: CheckResult) -> Optional[str]:
    if not r.details:
        return None
    try:
        return dropblock.diagnose(r.details)
    except Exception:  # noqa: BLE001 - a diagnosis must never break a run
        return None


def _within_call(r: CheckResult) -> bool:
    """Does this structural FAIL make units inside a call dependent (so pooled tests count
    copies of one draw as independent units)? Its role says so, or identical masks at flat
    offsets inside a call."""
    return role_of(r.check) == WITHIN_CALL or (r.check == FLAT and bool((r.details or {}).get("identical")))


def _calls_repeat(r: CheckResult) -> bool:
    """Hash check: at least half of the calls of the stream repeat an earlier call's mask
    (an RNG that does not advance, or a small pool): calls are then not independent."""
    if r.check != REPEATS or r.verdict != FAIL or not r.details:
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
    rate = next((r for r in out if r.check == RATE and r.verdict == FAIL), None)
    pooled = (rate.details or {}).get("pooled_rate") if rate is not None else None
    if pooled not in (0.0, 1.0):
        return None
    text = ("no unit is dropped in any call: the layer has no effect in training mode" if pooled == 0.0 else
            "every unit is dropped in every call")
    follow = tuple(r.check for r in out if r.verdict == FAIL and r.check != rate.check
                   and (_about_masks(r) or role_of(r.check) == POOLED))
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
        if r.verdict == FAIL and r.statistical and _producer(r) != FRESH \
                and _single_call_p(r) > alpha_each:
            out[i] = r.with_(verdict=INCONCLUSIVE, certified=False, p_value=1.0,
                             text=f"not assessed (calls are not independent: {text})", cause="",
                             details={**r.details, "withdrawn_because": text, "p_pooled_fail": r.p_value})
            withdrawn.append(r.check)
    withdrawn += [r.check for r in out if r.verdict != FAIL and r.details and r.details.get("withdrawn_because")
                  and r.check not in withdrawn]
    causes = [RootCause(text, (root.check,) + tuple(r.check for r in out if r.verdict == FAIL and r.check != root.check
                                                      and _about_masks(r)),
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
    from .checks.drift import drift_cause  # a drifting rate (marginal, by call index): first, with what it explains
    by_drift = drift_cause(out, consequences)
    drifted = set(by_drift[1]) if by_drift else set()
    within = sorted((r for r in out if r.verdict == FAIL and _within_call(r) and r.check not in drifted),
                    key=lambda r: (not (r.details or {}).get("identical"), r.check != LAG, r.check))
    supporting: List[str] = [r.check for r in within[1:] if _AXIS.match(r.check)
                             or r.check == FLAT]
    causes: List[RootCause] = []
    withdrawn: List[str] = [r.check for r in out if r.verdict != FAIL and r.details
                            and r.details.get("withdrawn_because")]
    root = structural_summary(within[0], layout) if within else None
    if within:
        for i, r in enumerate(out):
            if r.verdict != FAIL or _within_call(r) or r.check in drifted:
                continue
            if r.check in (REPEATS, FLAT, DISPERSION):
                supporting.append(r.check)  # repeats / dependence at flat offsets follow from the shared draw
                continue
            if role_of(r.check) != POOLED:
                continue
            p_call = r.details.get("p_call_level") if r.details else None
            if p_call is None:
                continue
            p_seq = min(1.0, int(r.details.get("planned_looks", 1)) * float(p_call))
            if p_seq <= alpha_each:
                continue  # the per-call evidence alone establishes this deviation too
            out[i] = r.with_(verdict=INCONCLUSIVE, p_value=p_seq, certified=False,
                             text=f"not assessed from pooled units (they are not independent: {root}); "
                                  f"per-call evidence alone p={p_seq:.3g}", cause="",
                             details={**r.details, "withdrawn_because": root, "p_pooled_fail": r.p_value})
            withdrawn.append(r.check)
    failed = {r.check for r in out if r.verdict == FAIL}
    for cause in sorted(failed):  # e.g. shared draws -> over-dispersed counts
        follows = consequences(cause)
        if follows:
            supporting += [c for c in follows if c in failed and c not in supporting and c != cause]
    from .checks.inputs import input_cause  # an input-dependent rate, and the fixed-probe FAILs it explains
    by_input = input_cause(out)
    explained = (set(by_input[1]) if by_input else set()) | drifted
    structural = [r for r in out if r.verdict == FAIL and r.check not in supporting and r.check not in explained
                  and structural_summary(r, layout) is not None]
    seen = set()
    for r in structural:
        text = structural_summary(r, layout)
        if text in seen:
            continue
        seen.add(text)
        first = bool(within) and r is within[0]
        own = tuple(c for c in consequences(r.check) if c in supporting)
        extra = tuple(supporting) if first else own
        causes.append(RootCause(text, (r.check,) + tuple(dict.fromkeys(c for c in extra if c != r.check)),
                                tuple(withdrawn) if first else ()))
    if by_input:
        causes.append(RootCause(by_input[0], by_input[1]))
    if by_drift:
        causes.insert(0, RootCause(by_drift[0], by_drift[1]))
    return out, marginals_first(_merge_repeats(causes + _other_causes(
        out, {r.check for r in structural} | set(supporting) | explained, layout), out))


def marginals_first(causes: List[RootCause]) -> List[RootCause]:
    """Marginal causes (a wrong or uneven drop rate: by position, sample, input, time; checks
    with ``CheckSpec.marginal``) before the others, each group in its own order: the dependence
    statistics condition on the marginal rates, so a dependence cause beside a marginal one is
    one that persists after conditioning, and the rate fault is read first."""
    marginal = [c for c in causes if c.kind == FAIL and c.evidence and is_marginal(c.evidence[0])]
    return marginal + [c for c in causes if c not in marginal]


_REPEAT_PARTNERS = {"seeds": (OVERLAP, SEEDS), "calls": (FRESH,)}


def _merge_repeats(causes: List[RootCause], out: Sequence[CheckResult]) -> List[RootCause]:
    """Exact repeats found only across seeds (or only across calls) are the same cause as the
    seed (freshness) check that FAILed: one line, both results as its evidence."""
    rep = next((r for r in out if r.check == REPEATS and r.verdict == FAIL), None)
    if rep is None:
        return causes
    found = _hash_classes(rep)
    own = next((c for c in causes if c.evidence == (REPEATS,)), None)
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


_DROPBLOCK_CONSEQUENCES = (BLOCK_RATE, CONTIGUOUS)


def _other_causes(out: Sequence[CheckResult], explained: set, layout: str) -> List[RootCause]:
    """Every FAIL not explained by a structural cause is a cause of its own, merged where one
    cause shows in several results: the same exact check on several memory layouts, the
    DropBlock results that read one seed scheme (with the mean rate and the block shape it
    implies), exact repeats across seeds / calls beside the seed / freshness check that saw
    them. Identical ERRORs collapse to one line."""
    causes: List[RootCause] = []
    keys: Dict[str, int] = {}
    fails = [r for r in out if r.verdict == FAIL and r.check not in explained]

    def add(key: str, text: str, check: str, restated: str = "") -> None:
        if key in keys:
            c = causes[keys[key]]
            causes[keys[key]] = RootCause(c.summary, c.evidence + (check,), c.withdrawn, restated=c.restated)
        else:
            keys[key] = len(causes)
            causes.append(RootCause(text, (check,), restated=restated))

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
        message = r.summary
        if lay:
            message = message.replace(f" ({lay.rstrip(']')})", "")
        words = structural_summary(r, layout)
        add(stem + ":" + message, words or f"{stem}: {message}", r.check, restated="" if words else stem)
    for i, c in enumerate(causes):  # name the layouts when one exact check failed on several
        lays = [e.partition("[")[2].rstrip("]") for e in c.evidence if "[" in e]
        if len(lays) > 1 and c.restated:
            stem = c.restated
            causes[i] = RootCause(f"{stem} on {', '.join(lays)}:" + c.summary[len(stem) + 1:], c.evidence,
                                  c.withdrawn, restated=stem)
    errors: Dict[str, List[str]] = {}
    for r in out:
        if r.verdict == ERROR:
            errors.setdefault(r.summary, []).append(r.check)
    for text, checks in errors.items():
        causes.append(RootCause(f"ERROR: {text}" + (f" (in {len(checks)} checks)" if len(checks) > 1 else ""),
                                tuple(checks), kind=ERROR))
    return causes

