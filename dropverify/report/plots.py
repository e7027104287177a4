"""PNG figures for reports (matplotlib, Agg backend, deterministic output).

``ci_plot``: every statistical result as (estimate - expected) / margin with its interval; a
value beyond ±``LIMIT`` margins is drawn at the edge with an arrow and its value (never
clipped silently); exact checks that FAILed or ERRORed get a row of their own; a legend
explains the marks. ``map_plot``: DropBlock's per-position drop map (theory, measured,
difference) with labelled axes and colour bars.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..checks import CheckResult

LIMIT = 3.0
"""Half-width of the forest plot in margins; values beyond are marked off-scale."""

_COLOR = {"PASS": "tab:green", "FAIL": "tab:red", "INCONCLUSIVE": "tab:orange", "ERROR": "tab:purple"}


@dataclass(frozen=True)
class OffScale:
    """A value drawn at the edge of the scale: ``side`` -1 (left) or +1 (right), ``value`` the
    true value in margins, ``what`` "estimate" or "CI"."""

    side: int
    value: float
    what: str

    @property
    def label(self) -> str:
        arrow = "→" if self.side > 0 else "←"
        text = f"{self.what} {self.value:.3g}"
        return f"{text} {arrow}" if self.side > 0 else f"{arrow} {text}"


@dataclass(frozen=True)
class Placement:
    """Where one row is drawn: interval ``lo``..``hi`` and ``est`` inside [-limit, limit]
    (None for a non-finite value), and the off-scale markers (at most one per side: the
    estimate when it is off-scale, else the interval end)."""

    lo: Optional[float]
    est: Optional[float]
    hi: Optional[float]
    off: Tuple[OffScale, ...]


def _clip(v: float, limit: float) -> Optional[float]:
    if math.isnan(v):
        return None
    return max(-limit, min(limit, v))


def place_on_scale(lo: float, est: float, hi: float, limit: float = LIMIT) -> Placement:
    """Positions to draw (each within ±``limit``) and the off-scale markers for ``lo`` <=
    ``est`` <= ``hi`` in units of the margin. Pure: no plotting."""
    off: List[OffScale] = []
    for side in (-1, 1):
        beyond_est = est * side > limit
        end = lo if side < 0 else hi
        if beyond_est:
            off.append(OffScale(side, float(est), "estimate"))
        elif end * side > limit:
            off.append(OffScale(side, float(end), "CI"))
    return Placement(_clip(lo, limit), _clip(est, limit), _clip(hi, limit), tuple(off))


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


def _plottable(r: CheckResult) -> bool:
    return bool(r.statistical and r.ci is not None and r.margin and r.expected is not None
                and r.estimate is not None and math.isfinite(r.estimate))


def _short(r: CheckResult, n: int = 56) -> str:
    text = r.summary
    return text if len(text) <= n else text[: n - 1] + "…"


def ci_plot(title: str, results: Sequence[CheckResult]) -> Optional[bytes]:
    """Forest plot: each statistical result's (estimate - expected) and CI in units of its
    certified margin, with the margin (±1) and the minimum detectable deviation; values
    beyond ±LIMIT marked off-scale with their value; FAIL/ERROR results without an interval
    (exact checks, crashed checks) listed below with their verdict. None if nothing to show."""
    fig = ci_figure(title, results)
    return None if fig is None else _png(fig)


def ci_figure(title: str, results: Sequence[CheckResult]):
    """The matplotlib figure behind :func:`ci_plot` (None if nothing to show)."""
    rows = [r for r in results if _plottable(r)]
    extra = [r for r in results if not _plottable(r) and r.verdict in ("FAIL", "ERROR")]
    if not rows and not extra:
        return None
    from matplotlib.lines import Line2D
    plt = _pyplot()
    n = len(rows) + len(extra)
    fig, ax = plt.subplots(figsize=(8.5, 0.42 * n + 2.0))
    any_off = False
    for i, r in enumerate(rows):
        m = r.margin
        pl = place_on_scale((r.ci[0] - r.expected) / m, (r.estimate - r.expected) / m, (r.ci[1] - r.expected) / m)
        color = _COLOR.get(r.verdict, "tab:orange")
        if pl.lo is not None and pl.hi is not None:
            ax.plot([pl.lo, pl.hi], [i, i], color=color, lw=2.5)
        if pl.est is not None:
            ax.plot([pl.est], [i], "o", color=color)
        if r.mdd is not None and math.isfinite(r.mdd) and r.mdd / m <= LIMIT:
            ax.plot([r.mdd / m, -r.mdd / m], [i, i], "|", color="0.4", ms=9)
        for o in pl.off:
            any_off = True
            x = o.side * LIMIT
            ax.annotate("", xy=(x + 0.12 * o.side, i), xytext=(x - 0.35 * o.side, i),
                        arrowprops=dict(arrowstyle="-|>", color=color, lw=1.5))
            ax.text(x - 0.45 * o.side, i - 0.28, o.label, fontsize=7, color=color,
                    ha="right" if o.side > 0 else "left", va="bottom")
    for k, r in enumerate(extra):
        i = len(rows) + k
        color = _COLOR.get(r.verdict, "tab:red")
        ax.plot([0], [i], "X", color=color, ms=9)
        kind = "exact" if not r.statistical else "no estimate"
        ax.text(0.2, i, f"{r.verdict} ({kind}): {_short(r)}", fontsize=7, color=color, va="center")
    ax.axvline(0, color="0.3", lw=0.8)
    for x in (-1, 1):
        ax.axvline(x, color="0.5", lw=0.8, ls="--")
    ax.set_yticks(range(n))
    ax.set_yticklabels([r.check for r in rows] + [r.check for r in extra], fontsize=8)
    ax.set_xlim(-LIMIT - 0.2, LIMIT + 0.2)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_xlabel("(estimate - expected) / margin")
    ax.set_title(title, fontsize=10)
    handles = [Line2D([], [], color=_COLOR[v], lw=2.5, marker="o", label=f"{v}: estimate and CI")
               for v in ("PASS", "FAIL", "INCONCLUSIVE") if any(r.verdict == v for r in rows)]
    handles += [Line2D([], [], color="0.5", ls="--", label="± margin (certified band)"),
                Line2D([], [], color="0.4", ls="none", marker="|", ms=9, label="± MDD (could be missed)")]
    if any_off:
        handles.append(Line2D([], [], color="0.2", ls="none", marker=r"$\rightarrow$", ms=10,
                              label=f"off-scale (beyond ±{LIMIT:g} margins): value shown"))
    if extra:
        handles.append(Line2D([], [], color="tab:red", ls="none", marker="X", ms=8,
                              label="FAIL / ERROR without an interval (exact or crashed check)"))
    axes_inches = (0.42 * n + 2.0) * 0.77  # the axes' share of the figure height (default subplot margins)
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.55 / axes_inches),
              ncol=2, fontsize=7, frameon=False)
    return fig


def _as_2d(a: np.ndarray) -> Tuple[np.ndarray, bool]:
    a = np.asarray(a, dtype=np.float64)
    averaged = a.ndim > 2
    while a.ndim > 2:
        a = a.mean(axis=0)
    return (a if a.ndim == 2 else a.reshape(1, -1)), averaged


def map_plot(title: str, result: CheckResult) -> Optional[bytes]:
    """Theory vs measured per-position drop map and their difference (3-D maps averaged over
    depth), axes labelled with the map's rows and columns, colour bars with their quantity."""
    fig = map_figure(title, result)
    return None if fig is None else _png(fig)


def map_figure(title: str, result: CheckResult):
    """The matplotlib figure behind :func:`map_plot` (None without a drop map)."""
    d = result.details or {}
    if "measured_map" not in d or "theory_map" not in d:
        return None
    (theory, avg), (measured, _) = _as_2d(d["theory_map"]), _as_2d(d["measured_map"])
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    vmax = float(max(theory.max(), measured.max()))
    for ax, data, name in ((axes[0], theory, "exact theory 1-(1-γ)^K"), (axes[1], measured, "measured")):
        im = ax.imshow(data, vmin=0, vmax=vmax, cmap="viridis")
        ax.set_title(name, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046).set_label("drop probability", fontsize=8)
    diff = measured - theory
    lim = float(np.abs(diff).max()) or 1e-9
    im = axes[2].imshow(diff, vmin=-lim, vmax=lim, cmap="RdBu_r")
    axes[2].set_title("measured − theory", fontsize=9)
    fig.colorbar(im, ax=axes[2], fraction=0.046).set_label("difference in drop probability", fontsize=8)
    for ax in axes:
        ax.set_xlabel("column (W)", fontsize=8)
        ax.set_ylabel("row (H)" + (", mean over depth" if avg else ""), fontsize=8)
        ax.tick_params(labelsize=7)
    for cb_ax in fig.axes[3:]:
        cb_ax.tick_params(labelsize=7)
    fig.subplots_adjust(wspace=0.45)
    scheme = d.get("identified_scheme")
    fig.suptitle(f"{title} — {result.verdict}" + (f" — best-fitting seed scheme: {scheme}" if scheme else ""),
                 fontsize=10)
    return fig


__all__ = ["LIMIT", "OffScale", "Placement", "ci_figure", "ci_plot", "map_figure", "map_plot", "place_on_scale"]
