"""Markdown reports: one per target, and an index."""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence

from ..results import fmt
from ..runner import RunResult, TargetRun

_ICON = {"PASS": "PASS", "FAIL": "**FAIL**", "INCONCLUSIVE": "_INCONCLUSIVE_", "ERROR": "**ERROR**"}

READING_GUIDE = """\
## How to read this report
- **PASS**: the check's equivalence margin is *certified* — the deviation from the contract is at most the margin,
  with false-pass probability at most the check's alpha — and no deviation was detected at run level.
- **FAIL**: a deviation from the contract is *established* — the run-level Holm-adjusted p-value is below the run's
  family-wise false-alarm rate (exact checks: a deterministic comparison failed, with the evidence quoted). It does
  not say the deviation is large: a FAIL whose estimate lies inside the margin is marked as such.
- **PASS** rests only on statistics that are independent across calls (per-call rates, per-step relative risks),
  from at least as many calls as expose a fault striking 1 call in 20 (the row says which fraction could hide);
  pooled tests over the units of a call serve only to establish deviations.
- **Root causes** open the report: one line per cause in words. When a structural property fails (one draw for the
  whole batch, a mask shared by every channel), checks whose pooled statistics assume that structure are *not
  assessed* (INCONCLUSIVE, grouped under the cause) unless their per-call evidence alone establishes a deviation.
- **Not applicable**: checks whose statistic cannot fail at this configuration (constant by algebra) are listed
  with the reason under the contract, never shown as a PASS.
- **INCONCLUSIVE**: the budget ran out before either; the deviation that could still hide is the larger of the
  margin and the MDD. A check that cannot run on this target (no gradients, say) is INCONCLUSIVE with the reason.
- **ERROR**: the target raised, hung, or returned the wrong shape or dtype; the reason is quoted.
- **MDD** (minimum detectable deviation): the smallest deviation the check detects with the stated power at the
  samples it used. Deviations below it may go unnoticed; that is what "could have missed" means.
- **p (seq)** is the check's own sequential p-value (Bonferroni spending over its looks, valid at the data-dependent
  stopping time); **p (Holm)** is adjusted across every statistical result of the run.
- Exact checks (no p-value) compare values within the float tolerance of the dtype: they cannot raise false alarms
  on a correct implementation.
"""


def _ci(r) -> str:
    if r.ci is None:
        return ""
    return f"{fmt(r.ci[0])} .. {fmt(r.ci[1])}"


def _p(v: Optional[float]) -> str:
    return "" if v is None else f"{v:.3g}"


def summary_table(target: TargetRun, only: Optional[Sequence[str]] = None) -> str:
    """The results table of one target (only the rows whose verdict is in ``only``, if given)."""
    lines = ["| check | verdict | estimate | CI | expected ± margin | n | p (seq) | p (Holm) | MDD |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in target.results:
        if only is not None and r.verdict not in only:
            continue
        if r.statistical and r.estimate is not None:
            exp = f"{fmt(r.expected)} ± {fmt(r.margin)}"
            n = f"{r.n} {r.n_unit}"
            lines.append(f"| `{r.check}` | {_ICON[r.verdict]} | {fmt(r.estimate)} | {_ci(r)} | {exp} | {n} | "
                         f"{_p(r.p_value)} | {_p(r.p_adjusted)} | {fmt(r.mdd)} |")
        else:
            lines.append(f"| `{r.check}` | {_ICON[r.verdict]} | exact | | | | | | |")
    return "\n".join(lines)


def root_cause_line(cause) -> str:
    """One bullet: the cause in words, the results that establish it, those it withdrew."""
    text = cause.summary.replace("|", "/")
    line = f"- **{text}** — established by " + ", ".join(f"`{c}`" for c in cause.evidence)
    if cause.withdrawn:
        line += ("; not assessed from pooled units because of it (their FAILs would blame other properties): "
                 + ", ".join(f"`{c}`" for c in cause.withdrawn))
    return line


def contract_section(target: TargetRun) -> str:
    c = target.contract
    out = ["## Contract", "", f"**{c['name']}** — {c['summary']}", "", f"Reference: {c['reference']}.", "",
           "| parameter | value | valid range | meaning |", "|---|---|---|---|"]
    for name, spec in c["params"].items():
        out.append(f"| `{name}` | `{spec['value']!r}` | {spec['range']} | {spec['doc']} |")
    out += ["", f"- Layout: {c['layout']}; probe shape `{tuple(target.shape)}`.",
            f"- Mask structure: {c['structure']}; expectation promised: {c['mean_scope']}.",
            f"- Gradient rule: {c['gradient_rule']}.",
            f"- p = 1 allowed: {c['p_one_allowed']}."]
    for note in c.get("notes", []):
        out.append(f"- {note}")
    if target.conventions:
        out += ["", "### Conventions of this implementation"]
        out += [f"- {conv}" for conv in target.conventions]
    if target.not_applicable:
        out += ["", "### Checks not applicable to this target"]
        out += [f"- `{name}`: {why}" for name, why in target.not_applicable]
    return "\n".join(out)


def _detail_value(v: Any) -> Optional[str]:
    if isinstance(v, list) and (len(v) > 8 or (v and isinstance(v[0], list))):
        return None  # arrays go to the plots / JSON
    if isinstance(v, float):
        return fmt(v) if math.isfinite(v) else str(v)
    if isinstance(v, dict):
        return ", ".join(f"{k}={_detail_value(x)}" for k, x in v.items())
    return f"{v}"


def details_section(target: TargetRun, images: Dict[str, str]) -> str:
    out = ["## Details"]
    for r in target.results:
        out += ["", f"### `{r.check}` — {r.verdict}", "", r.message]
        facts: List[str] = []
        if r.statistical and r.alpha is not None:
            facts.append(f"designed at alpha={r.alpha:.3g} (false alarm and false pass), power={r.power:g}; "
                         f"{r.looks} look(s){' — stopped early' if r.stopped_early else ''}")
        for k, v in (r.details or {}).items():
            shown = _detail_value(v)
            if shown is not None:
                facts.append(f"{k}: {shown}")
        if facts:
            out.append("")
            out += [f"- {f}" for f in facts]
        if r.check in images:
            out += ["", f"![{r.check}]({images[r.check]})"]
    return "\n".join(out)


def provenance_lines(run: RunResult) -> List[str]:
    """What a committed report states of where it comes from, the same on every machine: the
    libraries under test (their versions determine results) and the harness fingerprint. The
    machine (platform, Python, numpy ...) is in the untracked ``timings.json``."""
    from ..provenance import fingerprint_line
    from .jsonout import libraries
    libs = libraries(run)
    return ([f"Libraries under test: {', '.join(f'{k} {v}' for k, v in libs.items())}."] if libs else []) + \
        ["Machine and timings: the untracked `timings.json` (`<report>.timings.json` for a single report).",
         fingerprint_line()]


def run_line(run: RunResult) -> str:
    s = run.settings
    return (f"Run: seed {s.seed}; family-wise false-alarm rate {s.alpha:g} (Holm over {run.m_statistical} "
            f"statistical results; each check designed at alpha={run.alpha_each:.3g}); power {s.power:g}; "
            f"budget {s.max_calls} calls / {s.max_units:,} mask units per check.")


def target_markdown(run: RunResult, target: TargetRun, images: Dict[str, str], command: Optional[str] = None) -> str:
    counts = target.counts()
    args = ", ".join(f"{k}={v!r}" for k, v in target.params.items())
    head = [f"# dropverify report: `{target.spec_name}`", "",
            f"Verdict: **{target.verdict}** — " + ", ".join(f"{v} {k}" for k, v in counts.items()) + ".", "",
            f"Variant `{target.variant}({args})`, probe shape `{tuple(target.shape)}`."]
    if target.description:
        head += ["", target.description]
    head += ["", run_line(run)]
    if target.stream:
        drawn = dict(target.stream).get("drawn", 0)
        readers = [(k, v) for k, v in target.stream if k != "drawn"]
        if readers:
            top, most = readers[0]
            head += ["", f"Calls: one shared stream of {drawn:,} training calls fed {len(readers)} checks "
                         f"(the most demanding, `{top}`, read {most:,})."]
    if command:
        head += ["", f"Command: `{command}`"]
    if target.root_causes:
        head += ["", "## Root causes", ""]
        head += [root_cause_line(c) for c in target.root_causes]
    head += ["", "## Summary", "", summary_table(target)]
    if "ci" in images:
        head += ["", f"![confidence intervals]({images['ci']})"]
    return "\n".join(head + ["", contract_section(target), "", details_section(target, images), "",
                             READING_GUIDE, *provenance_lines(run), ""])


def index_markdown(run: RunResult, links: Dict[str, str], title: str, command: Optional[str] = None) -> str:
    lines = [f"# {title}", "", f"Overall: **{'PASS' if run.ok else 'FAIL'}** — "
             f"{sum(1 for t in run.targets if t.verdict == 'PASS')} of {len(run.targets)} targets pass every check.",
             "", run_line(run), ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += ["| target | variant | verdict | PASS | FAIL | INCONCLUSIVE | ERROR | first problem |",
              "|---|---|---|---|---|---|---|---|"]
    for t in run.targets:
        c = t.counts()
        problem = next((r for r in t.results if r.verdict in ("FAIL", "ERROR")), None) or \
            next((r for r in t.results if r.verdict == "INCONCLUSIVE"), None)
        why = (f"`{problem.check}`: " + problem.summary.replace("|", "/")) if problem else ""
        if t.root_causes:
            why = "; ".join(c.summary for c in t.root_causes[:2]).replace("|", "/") + \
                (f" (+{len(t.root_causes) - 2} more)" if len(t.root_causes) > 2 else "")
        lines.append(f"| [`{t.spec_name}`]({links[t.spec_name]}) | `{t.variant}` | {_ICON[t.verdict]} | "
                     f"{c['PASS']} | {c['FAIL']} | {c['INCONCLUSIVE']} | {c['ERROR']} | {why} |")
    lines += ["", READING_GUIDE, *provenance_lines(run), ""]
    return "\n".join(lines)
