"""What a FAIL of each structural check establishes, in words (the registry's ``explain``).

Each function takes a FAIL result and the contract's layout (``"(N, C, H, W)"``) and returns
the root cause as a reader would say it, or None when the result gives no such cause (then
the diagnosis states the result itself). The registry in :mod:`dropverify.checks` attaches
one to every check whose FAIL is a cause of its own; :mod:`dropverify.diagnosis` reads them.
"""
from __future__ import annotations

import re
from typing import Optional

from ..results import CheckResult

AXIS_RESULT = re.compile(r"^masks_independent_along_axis(\d+)_by_")


def axis_words(axis: int, layout: str) -> str:
    """``axis 1 (channels)`` from an axis index and the contract's layout."""
    names = [a.strip() for a in re.sub(r"[()]", "", layout.split(" or ")[0]).split(",")] if layout else []
    if axis == 0:
        return "the batch axis"
    if axis < len(names) and names[axis]:
        label = {"C": "channels", "H": "rows", "W": "columns", "D": "depth", "T": "time steps", "L": "blocks"}
        return f"axis {axis} ({label.get(names[axis], names[axis])})"
    return f"axis {axis}"


def _identical(r: CheckResult) -> bool:
    return bool(r.details.get("identical")) if r.details else False


def stated(r: CheckResult, layout: str = "") -> Optional[str]:
    """The result's own sentence is the cause (a structural property stated exactly)."""
    return r.summary


def axis_dependence(r: CheckResult, layout: str = "") -> Optional[str]:
    m = AXIS_RESULT.match(r.check)
    if not m:
        return None
    axis = int(m.group(1))
    where = axis_words(axis, layout)
    if _identical(r) and axis == 0:
        return "one draw per batch instead of one per item: every batch item shares the mask"
    if _identical(r) and axis == 1 and "C" in layout:
        return "mask shared by all channels instead of one per channel"
    if _identical(r):
        return f"one mask shared along {where}: every unit pair identical ({r.details.get('worst_lane')})"
    if negative_dependence(r, layout):
        return negative_dependence(r, layout)
    return f"masks dependent along {where} ({r.details.get('worst_lane', '')}: {r.summary})"


def flat_offsets(r: CheckResult, layout: str = "") -> Optional[str]:
    if not _identical(r):
        return negative_dependence(r, layout)
    return f"identical masks at {r.details.get('identical')}: the random stream wraps or restarts within a call"


def stale_calls(r: CheckResult, layout: str = "") -> Optional[str]:
    lag = r.details.get("worst_lane", "") if r.details else ""
    if _identical(r):
        return f"the same mask on later calls ({lag}): the RNG does not advance"
    if negative_dependence(r, layout):
        return negative_dependence(r, layout)
    return f"masks of different calls are dependent ({lag}): stale or cached masks"


def seed_ignored(r: CheckResult, layout: str = "") -> Optional[str]:
    if negative_dependence(r, layout):
        return negative_dependence(r, layout)
    return "the seed is ignored: different seeds give dependent masks"


def seeds_overlap(r: CheckResult, layout: str = "") -> Optional[str]:
    if negative_dependence(r, layout):
        return negative_dependence(r, layout)
    return "seeded streams overlap: call 1 under seed s repeats call 0 under seed s + 1"


def stream_repeat(r: CheckResult, layout: str = "") -> Optional[str]:
    d = r.details or {}
    return str(d["pattern"]) if d.get("pattern") else r.summary


def shifted_reuse(r: CheckResult, layout: str = "") -> Optional[str]:
    d = r.details or {}
    if "worst_shift" not in d:
        return r.summary
    shift, lag = -int(d["worst_shift"]), int(d.get("worst_lag", 1))
    return f"call t+{lag} reuses call t's draws shifted by {shift}" if shift else \
        f"call t+{lag} reuses call t's draws unshifted (the same draws at the same positions)"


def shared_lag(r: CheckResult, layout: str = "") -> Optional[str]:
    d = r.details or {}
    return f"elements {int(d['worst_lag'])} apart share one draw" if "worst_lag" in d else r.summary


def dispersion(r: CheckResult, layout: str = "") -> Optional[str]:
    if r.estimate is None:
        return r.summary
    side = "over" if r.estimate > 1 else "under"
    return (f"per-call rate {side}-dispersed (variance of the per-call dropped count {r.estimate:.3g}x "
            "binomial)" + (": a fixed number of units dropped per call?" if side == "under" else ""))


def _replayed(r: CheckResult) -> bool:
    d = r.details or {}
    limit, worst = d.get("agreement_limit"), d.get("worst_agreement")
    return bool(d.get("repeat_rule") and d.get("repeats")) or (limit is not None and worst is not None
                                                              and worst > limit)


def after_eval(r: CheckResult, layout: str = "") -> Optional[str]:
    """Masks drawn after an eval pass that replay earlier masks (a generator restored on eval -> train)."""
    if _replayed(r):
        return "masks after an eval pass replay earlier masks: the random state is restored on eval -> train"
    return "eval outputs between training blocks are off the contract or differ between passes"


def instances_share(r: CheckResult, layout: str = "") -> Optional[str]:
    """Two instances of one factory drawing the same masks (class-level cache, fixed per-instance seed)."""
    return "two instances draw the same masks: a class-level mask cache or a fixed per-instance seed"


def drift(r: CheckResult, layout: str = "") -> Optional[str]:
    """A drifting rate: the warm-up or the two windows of calls furthest apart (details' pattern)."""
    d = r.details or {}
    return str(d["pattern"]) if d.get("pattern") else r.summary


# ------------------------------------------------------------------ negative dependence (issue 22)

def _pair_words(lane: str, layout: str, r: CheckResult) -> tuple:
    """(first, second) of a pairing in words: call t / call t+k, unit i / unit i+d."""
    m = re.match(r"lag (\d+)$", lane)
    if m:
        return "at call t", f"at call t+{m.group(1)}"
    m = re.match(r"(?:flat )?offset (\d+)$", lane)
    if m:
        axis = AXIS_RESULT.match(r.check)
        where = f" along {axis_words(int(axis.group(1)), layout)}" if axis else " in the flattened call"
        return "", f"{m.group(1)} unit{'s' if m.group(1) != '1' else ''} away{where}"
    if lane.startswith("seed"):
        return "under seed s", "under seed s + 1"
    if lane.startswith("call 1 of s"):
        return "at call 1 under seed s", "at call 0 under seed s + 1"
    return "", f"in its pair ({lane})"


def negative_dependence(r: CheckResult, layout: str = "") -> Optional[str]:
    """'a unit dropped at call t is rarely dropped at call t+1 (relative risk 0.0015): negative
    dependence' where a pair statistic rejected with an excess relative risk below 0 (a
    correlation below 0 for continuous noise); None otherwise (positive dependence, identical
    masks, no estimate)."""
    d = r.details or {}
    if r.estimate is None or not r.estimate < 0 or _identical(r) or r.verdict != "FAIL":
        return None
    first, second = _pair_words(str(d.get("worst_lane", "")), layout, r)
    event = d.get("event")
    if event:
        rr = max(1.0 + r.estimate, 0.0)
        unit = f"a unit {event} {first}".rstrip() if first else f"a {event} unit's partner"
        verb = f"is rarely {event} {second}" if first else f"{second} is rarely {event}"
        return f"{unit} {verb} (relative risk {rr:.2g}): negative dependence, not shared or stale draws"
    return (f"draws {first} and {second} are negatively correlated (r = {r.estimate:.2g}): negative dependence, "
            "not shared or stale draws").replace("draws  and", "draws and")


def _cells(c: dict) -> str:
    return f"{c['start']}" if c["start"] == c["stop"] else f"{c['start']}-{c['stop']}"


def marginal_rates(r: CheckResult, layout: str = "") -> Optional[str]:
    """``sample 63 drops at 0.40, sample 0 at 0.20`` / ``positions 130176-131071 never dropped``."""
    d = r.details or {}
    for key, what in (("never_dropped", "never dropped"), ("always_dropped", "dropped in every call")):
        if d.get(key):
            s, e = d[key]
            return f"positions {s}-{e} of the flattened mask {what} ({d.get('calls')} calls)"
    w, hi, lo = d.get("worst_cell"), d.get("highest_cell"), d.get("lowest_cell")
    if not (w and hi and lo):
        return r.summary
    axis = int(w["axis"])
    if axis == 0:
        noun = "sample"
    elif axis > 0:
        noun = f"{axis_words(axis, layout)} index"
    else:
        noun = "flat positions"
    return (f"{noun} {_cells(hi)} drops at {hi['rate']:.2f}, {noun} {_cells(lo)} at {lo['rate']:.2f} "
            f"(overall {float(d.get('overall_rate', 0.0)):.2f}): the drop rate is uneven along "
            f"{'the batch' if axis == 0 else 'the flat index' if axis < 0 else axis_words(axis, layout)}")
