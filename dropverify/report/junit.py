"""JUnit XML for CI systems: one ``<testsuite>`` per target configuration, one ``<testcase>``
per reported check result (FAIL -> ``<failure>``, ERROR -> ``<error>``, INCONCLUSIVE ->
``<skipped>``, or ``<failure>`` under ``strict``), and one skipped case per check that is not
applicable, with its reason. Failure text carries the numbers (estimate, interval, expected
± margin, n, p-values, MDD) and the seed to reproduce."""
from __future__ import annotations

from typing import List, Optional
from xml.etree import ElementTree as ET

from ..results import failure_row, fmt
from ..runner import RunResult, TargetRun


def result_text(r, seed: Optional[int] = None) -> str:
    """The numbers of one result in one readable block (used as failure text)."""
    lines = [failure_row(r), r.message]
    if r.statistical and r.estimate is not None:
        ci = f"{fmt(r.ci[0])} .. {fmt(r.ci[1])}" if r.ci is not None else "n/a"
        lines.append(f"estimate {fmt(r.estimate)}; CI {ci}; expected {fmt(r.expected)} ± {fmt(r.margin)}; "
                     f"n {r.n} {r.n_unit}; p (seq) {_p(r.p_value)}; p (Holm) {_p(r.p_adjusted)}; "
                     f"alpha {_p(r.alpha)}; MDD {fmt(r.mdd)}")
    if seed is not None:
        lines.append(f"seed {seed}")
    return "\n".join(lines)


def _p(v: Optional[float]) -> str:
    return "n/a" if v is None else f"{v:.3g}"


def _suite(run: RunResult, t: TargetRun, strict: bool, command: Optional[str]) -> ET.Element:
    suite = ET.Element("testsuite", name=t.spec_name)
    props = ET.SubElement(suite, "properties")
    config = {"variant": t.variant, "params": ", ".join(f"{k}={v!r}" for k, v in t.params.items()),
              "probe_shape": "x".join(str(s) for s in t.shape), "seed": str(run.settings.seed),
              "alpha": f"{run.settings.alpha:g}"}
    if command:
        config["command"] = command
    for k, v in config.items():
        ET.SubElement(props, "property", name=k, value=v)
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for r in t.results:
        case = ET.SubElement(suite, "testcase", classname=t.spec_name, name=r.check, time=f"{float(r.seconds):.3f}")
        counts["tests"] += 1
        short = failure_row(r)[:500]
        if r.verdict == "FAIL" or (r.verdict == "INCONCLUSIVE" and strict):
            kind = "FAIL" if r.verdict == "FAIL" else "INCONCLUSIVE (--strict)"
            el = ET.SubElement(case, "failure", message=short if r.verdict == "FAIL" else f"{kind}: {short}",
                               type=r.verdict)
            el.text = result_text(r, run.settings.seed)
            counts["failures"] += 1
        elif r.verdict == "ERROR":
            el = ET.SubElement(case, "error", message=short, type="ERROR")
            el.text = result_text(r, run.settings.seed)
            counts["errors"] += 1
        elif r.verdict == "INCONCLUSIVE":
            ET.SubElement(case, "skipped", message=short)
            counts["skipped"] += 1
        else:
            ET.SubElement(case, "system-out").text = r.message
    for name, why in t.not_applicable:
        case = ET.SubElement(suite, "testcase", classname=t.spec_name, name=name, time="0.000")
        ET.SubElement(case, "skipped", message=f"not applicable: {why}")
        counts["tests"] += 1
        counts["skipped"] += 1
    for k, v in counts.items():
        suite.set(k, str(v))
    suite.set("time", f"{t.seconds:.3f}")
    return suite


def junit_xml(run: RunResult, strict: bool = False, command: Optional[str] = None) -> str:
    """The whole run as a JUnit XML document (a string ending in a newline)."""
    root = ET.Element("testsuites", name="dropverify")
    suites: List[ET.Element] = [_suite(run, t, strict, command) for t in run.targets]
    for key in ("tests", "failures", "errors", "skipped"):
        root.set(key, str(sum(int(s.get(key, "0")) for s in suites)))
    root.set("time", f"{run.seconds:.3f}")
    root.extend(suites)
    ET.indent(root, space=" ")
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


__all__ = ["junit_xml", "result_text"]
