"""The scan corpus (examples/scan/corpus.py, `make scan-corpus`): every entry has a factory and an input
function and the Makefile scans exactly those; a corpus model scanned twice (two folders, two working
directories, the Makefile's arguments) writes the same Markdown and JSON bytes."""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "examples" / "scan" / "corpus.py"


def _corpus():
    spec = importlib.util.spec_from_file_location("scan_corpus", CORPUS)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_makefile_scans_every_corpus_entry_and_each_has_a_factory_and_input():
    mod = _corpus()
    text = (ROOT / "Makefile").read_text()
    block = re.search(r"^CORPUS \?=((?:.*\\\n)*.*)$", text, re.M).group(1)
    assert tuple(block.replace("\\\n", " ").split()) == mod.CORPUS
    assert "scan-corpus" in re.search(r"^reports:(.*)$", text, re.M).group(1)
    for name in mod.CORPUS:
        assert callable(getattr(mod, name)) and callable(getattr(mod, f"{name}_input")), name


def _scan(cwd: Path, out: str) -> Path:
    cwd.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    args = ["scan", f"{CORPUS}:lstm_lm", "--input", f"{CORPUS}:lstm_lm_input", "--check", "quick", "--time-budget", "0",
            "--quiet",
            "--report", f"{out}/lstm_lm.md"]
    proc = subprocess.run([sys.executable, "-m", "dropverify", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    return cwd / out


def test_a_corpus_scan_run_twice_writes_the_same_bytes(tmp_path):
    a, b = _scan(tmp_path / "one", "reports_a"), _scan(tmp_path / "two", "elsewhere")
    files = sorted(p.name for p in a.iterdir() if not p.name.endswith("timings.json"))
    assert "lstm_lm.md" in files and "lstm_lm.json" in files
    for name in files:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
