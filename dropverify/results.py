"""What a check returns, and the one way it is turned into text.

:class:`CheckResult` holds a verdict and the numbers behind it as fields (estimate, interval,
n, p-values, minimum detectable deviation, the configuration's ``label``, the diagnosed
``cause``); nothing reads numbers back out of text. Its :attr:`CheckResult.message` and
:func:`failure_row` are the only renderings; the report writers (Markdown, JSON, JUnit,
GitHub summary), the CLI, :mod:`dropverify.testing` and :func:`dropverify.verify` use them.

>>> from dropverify.results import Verdict, worst
>>> worst([Verdict.PASS, "INCONCLUSIVE", Verdict.FAIL])
<Verdict.FAIL: 'FAIL'>
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping, Optional, Tuple


class Verdict(str, enum.Enum):
    """A check's verdict. A ``str``: ``Verdict.PASS == "PASS"`` and it is written as ``PASS``.

    PASS: the property holds within the stated margin (the interval lies inside it);
    FAIL: a deviation is established at the stated false-alarm rate; INCONCLUSIVE: neither
    (the budget ended, or the check could not run here; the text says which); ERROR: the
    target (or the check) crashed, hung or returned the wrong shape.
    """

    PASS = "PASS"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"
    ERROR = "ERROR"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


PASS, FAIL, INCONCLUSIVE, ERROR = Verdict.PASS, Verdict.FAIL, Verdict.INCONCLUSIVE, Verdict.ERROR
SEVERITY: Tuple[Verdict, ...] = (ERROR, FAIL, INCONCLUSIVE, PASS)
"""Verdicts from worst to best: a run, a target or a site is as bad as its worst result."""
BAD: Tuple[Verdict, ...] = (FAIL, ERROR)
"""Verdicts that make ``dropverify`` exit 1 (and INCONCLUSIVE too under ``--strict``)."""


def worst(verdicts: Iterable[Any]) -> Verdict:
    """The worst of ``verdicts`` (ERROR > FAIL > INCONCLUSIVE > PASS); PASS when there are none."""
    found = {Verdict(str(v)) for v in verdicts}
    return next((v for v in SEVERITY if v in found), PASS)


def fmt(v: Optional[float]) -> str:
    """A number as the reports write it: 4 decimals, scientific below 1e-3 or from 1e5."""
    if v is None:
        return "n/a"
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return str(v)
    a = abs(v)
    if a != 0 and (a < 1e-3 or a >= 1e5):
        return f"{v:.3e}"
    return f"{v:.4f}"


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check on one target, with everything a reader needs to trust it.

    For statistical results: ``quantity`` names the estimate; ``p_value`` is the sequential
    p-value of the check (valid at the stopping time), ``p_adjusted`` the Holm-adjusted one
    across the run, ``alpha`` the false-alarm budget the check was designed with, ``mdd`` the
    smallest deviation it detects with probability ``power`` at the ``n`` samples it used,
    ``margin`` the equivalence margin a PASS certifies, ``look_verdict`` what the check's own
    test concluded before Holm. Exact checks have ``statistical=False``, no p-value, and say
    in ``text`` what they observed against what the contract requires (deterministic).
    ``label`` is the configuration (``dropout(p=0.3) on numpy:dropout``); ``cause`` a
    diagnosed cause in words that the text is read under (a DropBlock seed scheme).
    """

    check: str
    target: str
    variant: str
    verdict: Verdict
    text: str = ""
    label: str = ""
    cause: str = ""
    statistical: bool = False
    quantity: str = ""
    look_verdict: Optional[Verdict] = None
    holm_rejected: bool = False
    estimate: Optional[float] = None
    ci: Optional[Tuple[float, float]] = None
    ci_level: Optional[float] = None
    expected: Optional[float] = None
    margin: Optional[float] = None
    n: Optional[int] = None
    n_unit: str = ""
    p_value: Optional[float] = None
    p_adjusted: Optional[float] = None
    alpha: Optional[float] = None
    power: Optional[float] = None
    mdd: Optional[float] = None
    looks: int = 0
    stopped_early: bool = False
    seconds: float = 0.0
    certified: bool = False
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "verdict", Verdict(str(self.verdict)))
        if self.look_verdict is not None:
            object.__setattr__(self, "look_verdict", Verdict(str(self.look_verdict)))

    def with_(self, **kw: Any) -> "CheckResult":
        return replace(self, **kw)

    @property
    def summary(self) -> str:
        """The result in one sentence, without the configuration label."""
        return describe(self)

    @property
    def message(self) -> str:
        """:attr:`summary` followed by ``[label]`` (the form the reports print)."""
        return f"{describe(self)} [{self.label}]" if self.label else describe(self)

    def __repr__(self) -> str:
        return f"CheckResult({self.check}={self.verdict}: {self.message})"


# --------------------------------------------------------------------------- rendering

def _level(level: float) -> str:
    tail = 1 - level
    return f"{100 * level:.6g}%" if tail >= 1e-5 else f"1-{tail:.2g}"


def _observed(r: CheckResult) -> str:
    lo, hi = r.ci if r.ci is not None else (math.nan, math.nan)
    obs = f"{r.quantity}={fmt(r.estimate)} ({_level(r.ci_level or 0.0)} CI {fmt(lo)}..{fmt(hi)}, n={r.n} {r.n_unit})"
    identical = (r.details or {}).get("identical")
    return f"identical masks ({identical}); " + obs if identical else obs


def _expected(r: CheckResult) -> str:
    return f"{fmt(r.expected)} ± {fmt(r.margin)}"


_INSIDE = (" (a deviation is established, but the estimate lies inside the margin: statistically "
           "significant, possibly small)")


def _statistical_text(r: CheckResult) -> str:
    d = r.details or {}
    verdict = r.look_verdict or r.verdict
    if verdict == FAIL:
        note = _INSIDE if d.get("estimate_inside_margin") else ""
        return f"{_observed(r)}, but should be {_expected(r)}; p={r.p_value:.3g}{note}"
    certifiable = float(d.get("certifiable_margin", math.inf))
    if verdict == PASS:
        hidden = d.get("hidden_fault_fraction")
        faults = (f"; a fault striking fewer than 1 call in {1 / hidden:,.0f} could hide"
                  if hidden and hidden > 0 else "")
        return f"{_observed(r)}, certified within {_expected(r)}; undetectable below {fmt(r.mdd)}{faults}"
    why = d.get("not_certified_because") or f"could certify only ± {fmt(certifiable)}"
    return (f"{_observed(r)}: neither a deviation nor the margin {fmt(r.margin)} certified ({why}); "
            f"a deviation up to {fmt(max(r.mdd, certifiable))} could hide")


def _holm(r: CheckResult) -> str:
    return f"; rejected by Holm at run level (p_adj={r.p_adjusted:.3g})" if r.holm_rejected else ""


def describe(r: CheckResult) -> str:
    """``r`` in one sentence without the label: the cause, then what was observed against what
    the contract requires (statistical: estimate, interval, n, expected ± margin, p-value or
    the deviation that could hide), then the run-level Holm decision where it changed it."""
    body = r.text if (r.text or not r.quantity) else _statistical_text(r)
    return (f"{r.cause}: " if r.cause else "") + body + _holm(r)


def _row_statistic(r: CheckResult) -> str:
    """Which statistic's estimate and interval a FAIL row shows, where it is not the t-test
    across calls (the one that rejected: dropverify/checks/_coherent.py)."""
    d = r.details or {}
    if not d.get("row_statistic"):
        return ""
    t_ci = d.get("t_ci") or (math.nan, math.nan)
    return (f"estimate and CI of {d['row_statistic']}, which rejected (the t-test across calls: "
            f"{fmt(d.get('t_estimate'))}, CI {fmt(t_ci[0])} .. {fmt(t_ci[1])})")


def failure_row(r: CheckResult) -> str:
    """One line per FAIL / ERROR / INCONCLUSIVE result, the same in the CLI, pytest failures,
    JUnit, the GitHub summary and :func:`dropverify.verify`'s report: verdict, check, target,
    then for a statistical result its numbers (estimate, interval, expected ± margin, the
    Holm-adjusted p-value, n) and what the result adds to them."""
    head = f"{r.verdict} {r.check} [{r.target}]"
    if not (r.statistical and r.estimate is not None):
        return f"{head}: {describe(r)}"
    ci = f"{fmt(r.ci[0])} .. {fmt(r.ci[1])}" if r.ci is not None else "n/a"
    if r.p_adjusted is not None:
        p = f"p(Holm)={r.p_adjusted:.3g}"
    else:
        p = f"p={r.p_value:.3g}" if r.p_value is not None else "p=n/a"
    nums = f"estimate {fmt(r.estimate)}, CI {ci}, expected {fmt(r.expected)} ± {fmt(r.margin)}, {p}"
    if r.n is not None:
        nums += f", n={r.n} {r.n_unit}".rstrip()
    verdict = r.look_verdict or r.verdict
    if r.text or not r.quantity or verdict != FAIL:
        rest = [describe(r)]
    else:  # the numbers are the message: keep only what it adds to them
        identical = (r.details or {}).get("identical")
        rest = [r.cause, f"identical masks ({identical})" if identical else "",
                _INSIDE.strip(" ()") if (r.details or {}).get("estimate_inside_margin") else "", _holm(r).lstrip("; "),
                _row_statistic(r)]
    rest = [x for x in rest if x]
    return f"{head}: {nums}" + (f" — {'; '.join(rest)}" if rest else "")


__all__ = ["BAD", "CheckResult", "ERROR", "FAIL", "INCONCLUSIVE", "PASS", "SEVERITY", "Verdict", "describe",
           "failure_row", "fmt", "worst"]
