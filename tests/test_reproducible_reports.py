"""Reports change only when results do (issue 25): the reference verification run twice, into
two folders of different names from two working directories, the second with its targets shared
between two processes (``--jobs 2``), writes the same bytes (every
file but the untracked ``timings.json``), states nothing of the machine, and writes what
``reports/repro/`` holds (`make repro`, part of `make reports`) when the harness is the one
that made it.

A subset of the reference variants keeps this fast (the Holm family of a subset is not the
full run's, so ``reports/repro/`` is its own committed run rather than a part of ``reports/``).
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from dropverify.provenance import harness_fingerprint, report_fingerprint

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "reports" / "repro"
ARGS = ["verify", "--reference", "--variant", "dropout", "--variant", "spatial_dropout_1d", "--seed", "20261126",
        "--time-budget", "0", "--max-calls", "500"]
"""Keep in step with the Makefile's `repro` target (test_make_repro_runs_these_arguments)."""


def _verify(cwd: Path, out: str, *more: str) -> Path:
    cwd.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    proc = subprocess.run([sys.executable, "-m", "dropverify", *ARGS, *more, "--out", out, "--quiet"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return cwd / out


def _files(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("repro")
    return _verify(base / "first", "reports"), _verify(base / "second" / "elsewhere", "out/dir", "--jobs", "2")


def test_two_runs_into_two_folders_write_the_same_bytes(two_runs):
    a, b = (_files(folder) for folder in two_runs)
    assert sorted(a) == sorted(b)
    assert {"index.md", "index.json", "numpy_dropout.md", "numpy_dropout.json", "timings.json"} <= set(a)
    differ = [name for name in a if name != "timings.json" and a[name] != b[name]]
    assert not differ, f"files that differ between two identical runs: {differ}"


def test_reports_state_nothing_of_the_machine(two_runs):
    files = _files(two_runs[0])
    machine = [platform.platform(), platform.node(), str(two_runs[0]), str(two_runs[0].parent), "Wall time"]
    for name, data in files.items():
        if name == "timings.json" or name.endswith(".png"):
            continue
        text = data.decode("utf-8")
        assert not [m for m in machine if m and m in text], name
        assert report_fingerprint(text) == harness_fingerprint(), name
    doc = json.loads(files["numpy_dropout.json"])
    assert "environment" not in doc["run"] and doc["run"]["libraries"] == {}
    assert doc["run"]["command"] == "dropverify " + " ".join(ARGS)  # the output folder is not part of it
    timings = json.loads(files["timings.json"])
    assert timings["environment"]["platform"] == platform.platform()


def test_floats_in_the_json_have_six_significant_digits(two_runs):
    doc = json.loads(_files(two_runs[0])["numpy_dropout.json"])
    floats = []

    def walk(x):
        if isinstance(x, float):
            floats.append(x)
        elif isinstance(x, dict):
            [walk(v) for v in x.values()]
        elif isinstance(x, list):
            [walk(v) for v in x]
    walk(doc)
    assert len(floats) > 50
    assert all(float(f"{v:.6g}") == v for v in floats)
    assert any(len(repr(v).replace(".", "").lstrip("0-")) > 3 for v in floats)  # not rounded coarser than that


def test_a_fresh_run_writes_the_committed_reports_of_the_same_harness(two_runs):
    """The committed reports/repro/ is what a fresh run writes, byte for byte, on any machine
    with the same harness (skips until `make reports` wrote it with the current fingerprint)."""
    index = COMMITTED / "index.md"
    if not index.exists():
        pytest.skip("reports/repro/ is not committed yet: `make repro` (part of `make reports`) writes it")
    stated = report_fingerprint(index.read_text(encoding="utf-8"))
    if stated != harness_fingerprint():
        pytest.skip(f"reports/repro/ comes from harness {stated}, this is {harness_fingerprint()}: "
                    "tests/test_report_fingerprint.py reports it stale; `make reports` regenerates it")
    fresh, committed = _files(two_runs[0]), _files(COMMITTED)
    committed.pop("timings.json", None)  # untracked (.gitignore), present only where it was run
    fresh.pop("timings.json")
    assert sorted(fresh) == sorted(committed)
    differ = [name for name in fresh if fresh[name] != committed[name]]
    assert not differ, f"a fresh run differs from the committed reports/repro/: {differ}"


def test_make_repro_runs_these_arguments():
    makefile = (ROOT / "Makefile").read_text()
    line = next(x for x in makefile.splitlines() if "--out reports/repro" in x)
    assert " ".join(ARGS).replace("20261126", "$(SEED)") + " --out reports/repro" in line
