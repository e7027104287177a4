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
    return f"masks dependent along {where} ({r.details.get('worst_lane', '')}: {r.summary})"


def flat_offsets(r: CheckResult, layout: str = "") -> Optional[str]:
    if not _identical(r):
        return None
    return f"identical masks at {r.details.get('identical')}: the random stream wraps or restarts within a call"


def stale_calls(r: CheckResult, layout: str = "") -> Optional[str]:
    lag = r.details.get("worst_lane", "") if r.details else ""
    if _identical(r):
        return f"the same mask on later calls ({lag}): the RNG does not advance"
    return f"masks of different calls are dependent ({lag}): stale or cached masks"


def seed_ignored(r: CheckResult, layout: str = "") -> Optional[str]:
    return "the seed is ignored: different seeds give dependent masks"


def seeds_overlap(r: CheckResult, layout: str = "") -> Optional[str]:
    return "seeded streams overlap: call 1 under seed s repeats call 0 under seed s + 1"


def stream_repeat(r: CheckResult, layout: str = "") -> Optional[str]:
    d = r.details or {}
    return str(d["pattern"]) if d.get("pattern") else r.summary


def shifted_reuse(r: CheckResult, layout: str = "") -> Optional[str]:
    d = r.details or {}
    if "worst_shift" not in d:
        return r.summary
    shift = -int(d["worst_shift"])
    return f"call t+1 reuses call t's draws shifted by {shift}" if shift else \
        "call t+1 reuses call t's draws unshifted (the same draws at the same positions)"


def shared_lag(r: CheckResult, layout: str = "") -> Optional[str]:
    d = r.details or {}
    return f"elements {int(d['worst_lag'])} apart share one draw" if "worst_lag" in d else r.summary


def dispersion(r: CheckResult, layout: str = "") -> Optional[str]:
    if r.estimate is None:
        return r.summary
    side = "over" if r.estimate > 1 else "under"
    return (f"per-call rate {side}-dispersed (variance of the per-call dropped count {r.estimate:.3g}x "
            "binomial)" + (": a fixed number of units dropped per call?" if side == "under" else ""))


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
