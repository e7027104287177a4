"""The scan's picture: configured vs observed rate per site, and the depth schedules.

Left panel, one row per site in discovery order: the configured rate (open circle), the rate
the site received in training (cross) and, where the site was sampled in situ, the measured
drop rate with its confidence interval (bar, coloured by the site's verdict). Right panel (only
when the model has stochastic-depth schedules): each schedule's rates against block depth.
The PNG carries no version stamp or clock value, so the same scan gives the same bytes.
"""
from __future__ import annotations

import io
from typing import Any, List, Optional, Tuple

from ..checks.rates import NAME as RATE_CHECK  # its estimate: the fraction of units dropped
from .site_checks import SITE_TRAINING
_COLOUR = {"PASS": "#2b8a3e", "FAIL": "#c92a2a", "ERROR": "#c92a2a", "INCONCLUSIVE": "#e67700",
           "NOT EXERCISED": "#868e96"}


def _measured(target: Any) -> Optional[Tuple[float, float, float]]:
    """(estimate, ci low, ci high) of the target's in-situ drop-rate result, if it ran."""
    for r in target.results:
        if r.check.split("[", 1)[0] == RATE_CHECK and r.estimate is not None and r.ci is not None:
            return float(r.estimate), float(r.ci[0]), float(r.ci[1])
    return None


def _received(target: Any) -> List[float]:
    for r in target.results:
        if r.check == SITE_TRAINING:
            return [float(p) for p in r.details.get("received", ())]
    return []


def site_rows(report: Any) -> List[Tuple[str, Optional[float], List[float], Optional[Tuple[float, float, float]], str]]:
    """Per site: (label, configured, received rates, measured (est, lo, hi) or None, verdict).
    A site verified by an identical one shows that one's measurement."""
    targets = {t.spec_name: t for t in report.run.targets}
    rows = []
    for row in report.scan.sites:
        t = targets.get(row.name)
        received = _received(t) if t is not None else []
        measured = _measured(t) if t is not None else None
        if measured is None and row.in_situ.startswith("shared with "):
            other = targets.get(row.in_situ[len("shared with "):])
            measured = _measured(other) if other is not None else None
        rows.append((row.label, row.configured, received, measured, row.verdict or "NOT EXERCISED"))
    return rows


def _pyplot() -> Any:
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def scan_png(report: Any) -> Optional[bytes]:
    """The picture as PNG bytes (None for a scan with no site)."""
    rows = site_rows(report)
    if not rows:
        return None
    plt = _pyplot()
    schedules = list(report.scan.schedules)
    n = len(rows)
    height = max(2.5, 0.22 * n + 1.4)
    fig, axes = plt.subplots(1, 2 if schedules else 1, figsize=(11.5 if schedules else 7.5, height),
                             gridspec_kw={"width_ratios": [3, 2]} if schedules else None, squeeze=False)
    ax = axes[0][0]
    ys = list(range(n))[::-1]
    for y, (label, configured, received, measured, verdict) in zip(ys, rows):
        colour = _COLOUR.get(verdict, "#495057")
        if measured is not None:
            est, lo, hi = measured
            ax.errorbar([est], [y], xerr=[[est - lo], [hi - est]], fmt="s", ms=4, color=colour, capsize=2)
        if configured is not None:
            ax.plot([configured], [y], "o", mfc="none", mec="#1c7ed6", ms=7)
        for p in received:
            ax.plot([p], [y], "x", color="#212529", ms=5)
    ax.set_yticks(ys)
    ax.set_yticklabels([r[0] for r in rows], fontsize=7 if n > 30 else 8)
    ax.set_ylim(-0.8, n - 0.2)
    ax.set_xlabel("rate")
    ax.set_title("configured (o), received in training (x), measured in situ (bar: CI)", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    if schedules:
        sx = axes[0][1]
        for s in schedules:
            sx.plot(range(len(s.rates)), s.rates, "o-", ms=3, label=f"{s.pattern} ({s.verdict})",
                    color=_COLOUR.get(s.verdict, "#495057") if s.verdict != "PASS" else None)
        from matplotlib.ticker import MaxNLocator
        sx.xaxis.set_major_locator(MaxNLocator(integer=True))
        sx.set_xlabel("block (depth order)")
        sx.set_ylabel("rate")
        sx.set_title("stochastic-depth schedules", fontsize=9)
        sx.legend(fontsize=7)
        sx.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


__all__ = ["RATE_CHECK", "scan_png", "site_rows"]
