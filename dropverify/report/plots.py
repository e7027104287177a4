"""PNG figures for reports (matplotlib, Agg backend, deterministic output)."""
from __future__ import annotations

import io
import math
from typing import Optional, Sequence

import numpy as np

from ..checks import CheckResult


def _pyplot():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    _pyplot().close(fig)
    return buf.getvalue()


def ci_plot(title: str, results: Sequence[CheckResult]) -> Optional[bytes]:
    """Forest plot of every statistical result: (estimate - expected) and its CI in units
    of the certified margin, with the margin (±1) and the minimum detectable deviation."""
    rows = [r for r in results if r.statistical and r.ci is not None and r.margin and r.expected is not None
            and r.estimate is not None and math.isfinite(r.estimate)]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(rows) + 1.3))
    for i, r in enumerate(rows):
        m = r.margin
        lo, hi = (r.ci[0] - r.expected) / m, (r.ci[1] - r.expected) / m
        est = (r.estimate - r.expected) / m
        color = {"PASS": "tab:green", "FAIL": "tab:red"}.get(r.verdict, "tab:orange")
        ax.plot([max(lo, -3), min(hi, 3)], [i, i], color=color, lw=2.5)
        ax.plot([max(min(est, 3), -3)], [i], "o", color=color)
        if r.mdd is not None and math.isfinite(r.mdd):
            ax.plot([r.mdd / m, -r.mdd / m], [i, i], "|", color="0.4", ms=9)
    ax.axvline(0, color="0.3", lw=0.8)
    for x in (-1, 1):
        ax.axvline(x, color="0.5", lw=0.8, ls="--")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([r.check for r in rows], fontsize=8)
    ax.set_xlim(-3.2, 3.2)
    ax.invert_yaxis()
    ax.set_xlabel("(estimate - expected) / margin   ·   bars: CI   ·   dashes: ±margin   ·   ticks: ±MDD")
    ax.set_title(title, fontsize=10)
    return _png(fig)


def _as_2d(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    while a.ndim > 2:
        a = a.mean(axis=0)
    return a if a.ndim == 2 else a.reshape(1, -1)


def map_plot(title: str, result: CheckResult) -> Optional[bytes]:
    """Theory vs measured per-position drop map and their difference (3-D maps averaged over depth)."""
    d = result.details or {}
    if "measured_map" not in d or "theory_map" not in d:
        return None
    theory, measured = _as_2d(d["theory_map"]), _as_2d(d["measured_map"])
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    vmax = float(max(theory.max(), measured.max()))
    for ax, data, name in ((axes[0], theory, "exact theory 1-(1-γ)^K"), (axes[1], measured, "measured")):
        im = ax.imshow(data, vmin=0, vmax=vmax, cmap="viridis")
        ax.set_title(name, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046)
    diff = measured - theory
    lim = float(np.abs(diff).max()) or 1e-9
    im = axes[2].imshow(diff, vmin=-lim, vmax=lim, cmap="RdBu_r")
    axes[2].set_title("measured − theory", fontsize=9)
    fig.colorbar(im, ax=axes[2], fraction=0.046)
    for ax in axes:
        ax.set_xticks([]); ax.set_yticks([])
    scheme = d.get("identified_scheme")
    fig.suptitle(f"{title}" + (f" — best-fitting seed scheme: {scheme}" if scheme else ""), fontsize=10)
    return _png(fig)
