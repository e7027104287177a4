"""The fingerprint that certifies "no behaviour change" (benchmarks/fingerprint.py) sees a
changed verdict, a changed number and a changed cause, and nothing where nothing changed."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmarks/ is a folder of the repository, not of the installed package
from benchmarks.fingerprint import main  # noqa: E402

REPORTS = ROOT / "reports"


def _copy(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for stem in ("numpy_dropout", "numpy_dropblock_2d"):
        shutil.copy(REPORTS / f"{stem}.json", folder)
    return folder


def test_identical_runs_have_identical_fingerprints(tmp_path, capsys):
    a, b = _copy(tmp_path, "a"), _copy(tmp_path, "b")
    assert main([str(a), "--compare", str(b)]) == 0
    assert "verdicts differ: 0; numbers differ (same verdict): 0" in capsys.readouterr().out


def test_a_changed_number_verdict_or_cause_is_reported(tmp_path, capsys):
    a, b = _copy(tmp_path, "a"), _copy(tmp_path, "b")
    doc = json.loads((b / "numpy_dropout.json").read_text())
    doc["results"][0]["estimate"] += 1e-9
    doc["results"][1]["verdict"] = "FAIL"
    doc["root_causes"] = [{"summary": "words", "evidence": ["x"], "withdrawn": [], "kind": "FAIL"}]
    (b / "numpy_dropout.json").write_text(json.dumps(doc))
    assert main([str(a), "--compare", str(b)]) == 1
    out = capsys.readouterr().out
    assert "verdicts differ: 1; numbers differ (same verdict): 1" in out and "results in one run only: 1" in out
    assert f"numbers: numpy:dropout {doc['results'][0]['check']}" in out
