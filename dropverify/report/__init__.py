"""Reports: Markdown per target (+ index), a JSON twin of each, PNG figures; all written atomically."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Union

from ..runner import RunResult, TargetRun
from . import jsonout, markdown, plots
from ._io import slug, write_atomic


def write_target_report(run: RunResult, target: TargetRun, md_path: Union[str, Path],
                        with_plots: bool = True) -> Path:
    """Write ``md_path`` (Markdown), the JSON beside it, and its figures under ``img/``."""
    md_path = Path(md_path)
    images: Dict[str, str] = {}
    if with_plots:
        stem = md_path.stem
        ci_png = plots.ci_plot(f"{target.spec_name}: estimates vs contract", target.results)
        if ci_png:
            rel = f"img/{stem}-ci.png"
            write_atomic(md_path.parent / rel, ci_png)
            images["ci"] = rel
        for r in target.results:
            png = plots.map_plot(f"{target.spec_name}: per-position drop rate", r)
            if png:
                rel = f"img/{stem}-{slug(r.check)}.png"
                write_atomic(md_path.parent / rel, png)
                images[r.check] = rel
    write_atomic(md_path.with_suffix(".json"), jsonout.target_json(run, target))
    write_atomic(md_path, markdown.target_markdown(run, target, images))
    return md_path


def write_reports(run: RunResult, out_dir: Union[str, Path], title: str = "dropverify verification",
                  with_plots: bool = True) -> List[Path]:
    """One report per target in ``out_dir`` plus ``index.md``/``index.json``; returns the paths."""
    out = Path(out_dir)
    links: Dict[str, str] = {}
    written: List[Path] = []
    for target in run.targets:
        name = f"{slug(target.spec_name)}.md"
        written.append(write_target_report(run, target, out / name, with_plots))
        links[target.spec_name] = name
    written.append(write_atomic(out / "index.json", jsonout.index_json(run)))
    written.append(write_atomic(out / "index.md", markdown.index_markdown(run, links, title)))
    return written


__all__ = ["write_reports", "write_target_report", "slug", "write_atomic"]
