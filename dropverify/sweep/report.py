"""A sweep's outputs: the minimal failing configurations with a reproduction command, a
configurations x properties table (Markdown), a figure of where in the space the layer
fails, and the JSON."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, BinaryIO, Dict, List, Optional, Union

from ..reproduce import run_command, settings_flags
from .execute import SWEEP_CHECKS, SWEEP_MAX_CALLS

_MARK = {"PASS": "P", "FAIL": "**F**", "INCONCLUSIVE": "i", "ERROR": "**E**"}


def base_check(name: str) -> str:
    """``multiplier_values_exact[transposed]`` -> ``multiplier_values_exact``; per-axis
    names map to the check that produces them."""
    stem = name.split("[", 1)[0]
    if re.match(r"masks_independent_along_axis\d+_by_", stem):
        return "masks_independent_along_axes_by_fisher"
    return stem.replace("_by_cross_product_t_test", "_by_fisher")


def reproduce_command(result, row: Dict[str, Any]) -> str:
    """The ``dropverify run`` line that repeats this configuration's run: same target, variant,
    parameters, shape, dtype, layout, seed, alpha, call budget, checks and the sweep's other settings
    that change results (power, margins, fault fraction, time budget)."""
    cfg = row["config"]
    named = result.variant and ":" in result.target and not _builtin(result.target)
    ran: List[str] = []
    for r in row.get("results", []):
        b = base_check(r["check"])
        if b in SWEEP_CHECKS and b not in ran:
            ran.append(b)
    options = ["--seed", str(row["seed"]), "--alpha", f"{row['alpha']:.6g}",
               "--max-calls", str(row.get("max_calls") or _max_calls(result))]
    settings = getattr(result, "settings", None)
    if settings is not None:  # the sweep's other settings that change results: power, margins, time budget
        flags = settings_flags(settings)
        for flag, value in zip(flags[::2], flags[1::2]):
            if flag not in ("--seed", "--alpha", "--max-calls"):
                options += [flag, value]
    return run_command(result.target, result.variant if named else None, cfg.all_params(), shape=cfg.shape,
                       dtype=cfg.dtype, layout=cfg.layout, device=cfg.device, options=options, checks=ran,
                       literal=_literal, quote=True)


def _max_calls(result) -> int:
    return int(getattr(result, "max_calls", SWEEP_MAX_CALLS))


def _builtin(target: str) -> bool:
    from ..targets.resolve import is_builtin
    return is_builtin(target)


def _literal(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v) if isinstance(v, str) else f"{v:g}" if isinstance(v, float) else str(v)


def _row_dict(row: Dict[str, Any]) -> Dict[str, Any]:
    cfg = row["config"]
    return {"config": json.loads(cfg.key()), "label": cfg.label(), "phase": row.get("phase"),
            "verdict": row["verdict"], "alpha": row["alpha"], "seed": row["seed"],
            "error": row.get("error"), "causes": row.get("causes", []),
            "results": [{k: r[k] for k in ("target", "check", "verdict", "p_value", "estimate", "message")}
                        for r in row.get("results", [])]}


def sweep_dict(result) -> Dict[str, Any]:
    """JSON-ready: axes, rows (configuration, phase, alpha, seed, per-check verdicts), the
    minimal failing configurations with their reproduction commands, the verdict, the harness
    fingerprint. Nothing of the machine or the clock (executor, seconds: :func:`sweep_timings`)."""
    from ..provenance import harness_fingerprint
    return {"target": result.target, "variant": result.variant, "verdict": result.verdict,
            "family_wise_alpha": result.settings.alpha, "master_seed": result.settings.seed,
            "harness": harness_fingerprint(), "phases": result.phases,
            "axes": {a.name: [list(v) if isinstance(v, tuple) else v for v in a.values] for a in result.axes},
            "fixed": {k: list(v) if isinstance(v, tuple) else v for k, v in result.fixed.items()},
            "minimal_failing": [{"config": json.loads(m["config"].key()), "label": m["config"].label(),
                                 "confirmed": m["confirmed"], "note": m.get("note", ""),
                                 "reproduce": reproduce_command(result, m["row"]),
                                 "failing_checks": [r["check"] for r in m["row"].get("results", [])
                                                    if r["verdict"] == "FAIL"],
                                 "causes": m["row"].get("causes", [])} for m in result.minimal],
            "rows": [_row_dict(r) for r in result.rows]}


def sweep_markdown(result, figure: Optional[str] = None) -> str:
    """The Markdown report of a sweep."""
    lines = [f"# dropverify sweep: `{result.target}` ({result.variant})", "",
             f"**Verdict: {result.verdict}** over {len(result.rows)} configuration runs "
             f"({result.phases.get('covering', 0)} covering, {result.phases.get('large', 0)} large tensor, "
             f"{result.phases.get('adaptive', 0)} adaptive, {result.phases.get('confirm', 0)} confirmation); "
             f"family-wise false-alarm rate {result.settings.alpha:g} over the whole sweep, adaptive configurations "
             f"included (covering alpha/2 split evenly; adaptive alpha_B 6/(pi^2 i^2), alpha_B = 3 alpha/10; "
             f"confirmation alpha/5); master seed {result.settings.seed}.", ""]
    lines += ["Axes (simplest value first; the shrinker moves toward it):", ""]
    for a in result.axes:
        vals = ", ".join("x".join(map(str, v)) if isinstance(v, tuple) else str(v) for v in a.values)
        lines.append(f"- `{a.name}`: {vals}")
    if result.fixed:
        lines.append("- fixed: " + ", ".join(f"`{k}={v}`" for k, v in result.fixed.items()))
    lines.append("")
    if result.minimal:
        lines += ["## Minimal failing configurations", ""]
        for m in result.minimal:
            row = m["row"]
            state = "confirmed with a fresh seed" if m["confirmed"] else "NOT confirmed with a fresh seed"
            lines.append(f"- **{m['config'].label()}** ({state}{'; ' + m['note'] if m.get('note') else ''})")
            for c in row.get("causes", [])[:4]:
                lines.append(f"  - cause: {c}")
            lines += ["", "  ```", f"  {reproduce_command(result, row)}", "  ```", ""]
    if figure:
        lines += [f"![where the layer fails]({figure})", ""]
    checks = []
    for r in result.rows:
        for x in r.get("results", []):
            b = base_check(x["check"])
            if b not in checks:
                checks.append(b)
    lines += ["## Configurations x properties", "",
              "P pass (margin certified), i inconclusive, **F** fail, **E** error, - not run.", ""]
    short = [c.replace("_by_binomial", "").replace("_by_t_test", "").replace("_by_fisher", "") for c in checks]
    lines.append("| # | phase | configuration | alpha | verdict | " + " | ".join(f"`{s}`" for s in short) + " |")
    lines.append("|---|---|---|---|---|" + "---|" * len(checks))
    for i, r in enumerate(result.rows):
        cells = []
        for c in checks:
            vs = [x["verdict"] for x in r.get("results", []) if base_check(x["check"]) == c]
            v = next((w for w in ("ERROR", "FAIL", "INCONCLUSIVE", "PASS") if w in vs), None)
            cells.append(_MARK.get(v, "-"))
        verdict = _MARK.get(r["verdict"], r["verdict"]) + (f" ({r['error']})" if r.get("error") else "")
        lines.append(f"| {i + 1} | {r.get('phase')} | {r['config'].label()} | {r['alpha']:.2g} | {verdict} | "
                     + " | ".join(cells) + " |")
    from ..provenance import fingerprint_line
    lines += ["", "Executor, wall time and machine: the untracked `<report>.timings.json`.", "", fingerprint_line()]
    return "\n".join(lines) + "\n"


def sweep_timings(result) -> Dict[str, Any]:
    """The untracked side file of a sweep: executor, seconds (whole sweep and per configuration
    run) and the machine (Python, platform, library versions)."""
    from ..runner import environment
    return {"kind": "sweep-timings", "target": result.target, "executor": result.executor,
            "seconds": round(float(result.seconds), 3), "environment": environment(),
            "rows": [{"label": r["config"].label(), "seconds": round(float(r.get("seconds", 0.0) or 0.0), 3)}
                     for r in result.rows]}


def sweep_figure(result, path: Union[Path, BinaryIO]) -> Optional[Union[Path, BinaryIO]]:
    """Where in the space the layer fails: one panel per layout, p (x, log-odds scale) against
    dtype (y); marker colour = verdict, marker size grows with the tensor's elements."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    rows = [r for r in result.rows if r["config"].role == "standard"]
    if not rows:
        return None
    layouts = sorted({r["config"].layout for r in rows})
    dtypes = [a for a in next((ax.values for ax in result.axes if ax.name == "dtype"), ())]
    colours = {"PASS": "tab:green", "INCONCLUSIVE": "tab:gray", "FAIL": "tab:red", "ERROR": "black"}
    fig, axs = plt.subplots(1, len(layouts), figsize=(4.2 * len(layouts), 3.2), squeeze=False, sharey=True)
    for ax, lay in zip(axs[0], layouts):
        for r in rows:
            c = r["config"]
            if c.layout != lay:
                continue
            x = float(np.log(c.p / (1 - c.p)))
            y = dtypes.index(c.dtype) if c.dtype in dtypes else -1
            jitter = (hash(c.key()) % 7 - 3) * 0.05
            ax.scatter(x, y + jitter, s=20 + 8 * np.log2(max(c.elements, 2)), c=colours.get(r["verdict"], "blue"),
                       edgecolors="k", linewidths=0.4, alpha=0.85)
        ax.set_title(f"layout: {lay}")
        ax.set_xlabel("p (log-odds scale)")
        ticks = sorted({r["config"].p for r in rows})
        ax.set_xticks([float(np.log(p / (1 - p))) for p in ticks], [f"{p:g}" for p in ticks], rotation=45)
        ax.set_yticks(range(len(dtypes)), dtypes)
    axs[0][0].set_ylabel("dtype")
    handles = [plt.Line2D([], [], marker="o", ls="", color=col, label=v) for v, col in colours.items()]
    fig.legend(handles=handles, loc="upper right", fontsize=8, title="verdict (size: elements)")
    fig.tight_layout(rect=(0, 0, 0.88, 1))
    if isinstance(path, Path):
        path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, format="png", metadata={"Software": None})  # no version stamp in the bytes
    plt.close(fig)
    return path


def write_sweep(result, report: Path) -> List[Path]:
    """``report`` (.md) with the figure (.png) and the JSON (.json) beside it; each written
    atomically (:func:`~dropverify.report.write_atomic`: nothing half-written is left behind,
    and the files get the umask's permissions)."""
    import io

    from ..report._io import write_atomic
    report = Path(report)
    buf = io.BytesIO()
    paths = []
    if sweep_figure(result, buf) is not None:
        paths.append(write_atomic(report.with_suffix(".png"), buf.getvalue()))
    from ..report.jsonout import fixed_precision
    doc = fixed_precision(json.loads(json.dumps(sweep_dict(result), default=str)))
    js = write_atomic(report.with_suffix(".json"), json.dumps(doc, indent=1, sort_keys=True) + "\n")
    md = write_atomic(report, sweep_markdown(result, report.with_suffix(".png").name if paths else None))
    side = write_atomic(report.with_name(report.stem + ".timings.json"),
                        json.dumps(sweep_timings(result), indent=1, sort_keys=True, default=str) + "\n")
    return paths + [md, js, side]
