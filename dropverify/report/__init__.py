"""Reports: Markdown per target (+ index), a JSON twin of each, PNG figures, JUnit XML and a
GitHub job summary; all written atomically.

The tracked files (Markdown, JSON, figures) depend only on the seed, settings, targets and
command line; the timestamp and timings go to ``timings.json`` (``<stem>.timings.json`` beside a
single-target report), which belongs in ``.gitignore``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Union

from ..runner import RunResult, TargetRun
from . import jsonout, markdown, plots
from ._io import slug, write_atomic

TIMINGS_NAME = "timings.json"


def write_target_report(run: RunResult, target: TargetRun, md_path: Union[str, Path],
                        with_plots: bool = True, command: Optional[str] = None) -> Path:
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
    write_atomic(md_path.with_suffix(".json"), jsonout.target_json(run, target, command))
    write_atomic(md_path, markdown.target_markdown(run, target, images, command))
    return md_path


def write_single_report(run: RunResult, md_path: Union[str, Path], with_plots: bool = True,
                        command: Optional[str] = None) -> List[Path]:
    """The report of a one-target run at ``md_path`` (+ JSON, figures, ``<stem>.timings.json``)."""
    md_path = Path(md_path)
    written = [write_target_report(run, run.targets[0], md_path, with_plots, command)]
    written.append(write_atomic(md_path.with_name(md_path.stem + ".timings.json"),
                                jsonout.timings_json(run, command)))
    return written


def write_reports(run: RunResult, out_dir: Union[str, Path], title: str = "dropverify verification",
                  with_plots: bool = True, command: Optional[str] = None) -> List[Path]:
    """One report per target in ``out_dir`` plus ``index.md``/``index.json`` and the untracked
    ``timings.json``; returns the paths."""
    out = Path(out_dir)
    links: Dict[str, str] = {}
    written: List[Path] = []
    for target in run.targets:
        name = f"{slug(target.spec_name)}.md"
        written.append(write_target_report(run, target, out / name, with_plots, command))
        links[target.spec_name] = name
    written.append(write_atomic(out / "index.json", jsonout.index_json(run, command)))
    written.append(write_atomic(out / "index.md", markdown.index_markdown(run, links, title, command)))
    written.append(write_atomic(out / TIMINGS_NAME, jsonout.timings_json(run, command)))
    return written


def write_junit(run: RunResult, path: Union[str, Path], strict: bool = False,
                command: Optional[str] = None) -> Path:
    """JUnit XML of the run at ``path`` (see :mod:`dropverify.report.junit`)."""
    from .junit import junit_xml
    return write_atomic(path, junit_xml(run, strict, command))


def write_summary(run: RunResult, path: Union[str, Path], strict: bool = False,
                  command: Optional[str] = None) -> Path:
    """Append the GitHub job summary of the run to ``path`` (GitHub's step summary file is
    shared by the steps of a job, so it is appended to, never replaced)."""
    from .github import job_summary
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(job_summary(run, strict, command))
    return path


def schema_path() -> Path:
    """The JSON Schema every report JSON follows."""
    return Path(__file__).with_name("schema.json")


__all__ = ["TIMINGS_NAME", "schema_path", "slug", "write_atomic", "write_junit", "write_reports",
           "write_single_report", "write_summary", "write_target_report"]
