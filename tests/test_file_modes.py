"""Reports get the permissions any new file gets (0o666 less the umask), not mkstemp's 0600
(issue 16, item 7): every writer — Markdown, JSON, figures, timings, JUnit XML, the job
summary, sweep reports — under two umasks."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dropverify.checks import Settings
from dropverify.cli import main

FEW = ["--max-calls", "300", "--check", "drop_rate_matches_by_binomial", "--check", "drop_rate_per_position_by_binomial",
       "--quiet"]


@pytest.fixture(params=[0o022, 0o027], ids=["umask022", "umask027"])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _modes(folder: Path) -> dict:
    return {str(p.relative_to(folder)): stat.S_IMODE(p.stat().st_mode) for p in folder.rglob("*") if p.is_file()}


def test_current_umask_reads_the_umask(umask):
    from dropverify.report._io import current_umask, file_mode
    assert current_umask() == umask and file_mode() == 0o666 & ~umask


def test_cli_reports_junit_and_summary_respect_the_umask(tmp_path, umask, monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    one, many = tmp_path / "one", tmp_path / "many"
    assert main(["run", "numpy:dropout", "--report", str(one / "r.md"), "--junit-xml", str(one / "j.xml"),
                 "--summary", str(one / "s.md"), *FEW]) == 0
    assert main(["run", "numpy:dropout", "numpy:spatial_dropout_2d", "--out", str(many), *FEW]) == 0
    expected = 0o666 & ~umask
    modes = {**_modes(one), **{f"many/{k}": v for k, v in _modes(many).items()}}
    assert {"r.md", "r.json", "r.timings.json", "j.xml", "s.md", "many/index.md", "many/index.json",
            "many/timings.json", "many/numpy_dropout.md", "many/numpy_dropout.json"} <= set(modes)
    assert any(k.endswith(".png") for k in modes)  # the figures too
    assert {k: oct(v) for k, v in modes.items() if v != expected} == {}
    assert not list(tmp_path.rglob("*.tmp"))


def test_rewriting_a_report_gives_the_umask_mode_again(tmp_path, umask):
    from dropverify.report import write_atomic
    path = tmp_path / "r.md"
    path.write_text("old")
    path.chmod(0o600)  # as the earlier writer left it
    write_atomic(path, "new")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask and path.read_text() == "new"


def test_sweep_report_respects_the_umask(tmp_path, umask):
    from dropverify.sweep import run_sweep, write_sweep
    result = run_sweep("numpy:dropout", None, Settings(seed=3), fixed={"layout": "contiguous", "shape": (8, 4, 4),
                                                                       "dtype": "float64"},
                       strength=1, search=0, large=False, max_calls=300)
    paths = write_sweep(result, tmp_path / "sweep.md")
    assert sorted(p.name for p in paths) == ["sweep.json", "sweep.md", "sweep.png", "sweep.timings.json"]
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in paths} == \
        {p.name: oct(0o666 & ~umask) for p in paths}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.json", "sweep.md", "sweep.png", "sweep.timings.json"]
