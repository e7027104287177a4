"""A GitHub Actions job summary (Markdown): the overall verdict, one row per target, and the
rows of every FAIL / ERROR / INCONCLUSIVE result with its numbers, folded per target."""
from __future__ import annotations

from typing import List, Optional

from ..results import failure_row
from ..runner import RunResult
from .markdown import _ICON, root_cause_line, run_line, summary_table


def job_summary(run: RunResult, strict: bool = False, command: Optional[str] = None) -> str:
    """Markdown for ``$GITHUB_STEP_SUMMARY`` (or ``--summary PATH``)."""
    bad = {"FAIL", "ERROR"} | ({"INCONCLUSIVE"} if strict else set())
    ok = all(r.verdict not in bad for t in run.targets for r in t.results)
    passing = sum(1 for t in run.targets if t.verdict == "PASS")
    lines: List[str] = [f"## dropverify: {'OK' if ok else 'NOT OK'}{' (strict)' if strict else ''}", "",
                        f"{passing} of {len(run.targets)} target configuration(s) pass every check. {run_line(run)}"]
    if command:
        lines += ["", f"Reproduce: `{command}`"]
    lines += ["", "| target | variant | verdict | PASS | FAIL | INCONCLUSIVE | ERROR |", "|---|---|---|---|---|---|---|"]
    for t in run.targets:
        c = t.counts()
        lines.append(f"| `{t.spec_name}` | `{t.variant}` | {_ICON[t.verdict]} | {c['PASS']} | {c['FAIL']} | "
                     f"{c['INCONCLUSIVE']} | {c['ERROR']} |")
    for t in run.targets:
        if t.verdict == "PASS":
            continue
        lines += ["", f"<details{' open' if t.verdict in bad else ''}><summary><code>{t.spec_name}</code>: "
                      f"{t.verdict}</summary>", ""]
        if t.root_causes:
            lines += [root_cause_line(cause) for cause in t.root_causes] + [""]
        lines += [summary_table(t, only=("FAIL", "ERROR", "INCONCLUSIVE")), ""]
        lines += [f"- {failure_row(r)}".replace("\n", " ")
                  for r in t.results if r.verdict != "PASS"]
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


__all__ = ["job_summary"]
