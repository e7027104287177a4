"""The command line: exit codes, one-line usage errors, reports, user factories."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from dropverify.cli import main


def run_cli(*args, cwd=None):
    proc = subprocess.run([sys.executable, "-m", "dropverify.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize("args,needle", [
    (["verify", "--variant", "nope"], "variant='nope', but should be one of"),
    (["verify", "--alpha", "2"], "alpha=2.0, but should be in (0, 1)"),
    (["verify", "--check", "bogus"], "check='bogus', but should be one of"),
    (["verify", "--target", "torch"], "should look like FRAMEWORK:LAYER"),
    (["run", "nomodule_xyz:make", "--variant", "dropout"], "cannot import module 'nomodule_xyz'"),
    (["run", "math:sqrt", "--variant", "dropout"], "must accept the drop probability"),
    (["run", "json:nothing", "--variant", "dropout"], "has no attribute 'nothing'"),
    (["run", "x", "--variant", "dropout"], "should be MODULE:FACTORY"),
    (["run", "json:dumps", "--variant", "dropout", "--param", "p"], "should be KEY=VALUE"),
    (["run", "json:dumps", "--variant", "dropout", "--param", "p=3"], "p=3, but should be a number in [0, 1]"),
    (["frobnicate"], "invalid choice"),
])
def test_usage_errors_are_one_line_exit_2(args, needle, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err and "Traceback" not in err


def test_list_names_variants_checks_and_targets(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "dropblock_2d" in out and "drop_map_matches_theory_by_binomial" in out and "numpy:<variant>" in out


USER_LAYERS = textwrap.dedent('''
    import numpy as np
    from dropverify.variants import variant_class

    Dropout = variant_class("dropout")

    class Halved(Dropout):
        def scale(self):
            return 0.5 / (1 - self.p)

    def good(p):
        return Dropout(p=p)

    def bad(p):
        return Halved(p=p)

    def wrong_type(p):
        return "not a layer"
''')


def test_run_user_factory_pass_fail_and_report(tmp_path):
    (tmp_path / "mylayers.py").write_text(USER_LAYERS)
    report = tmp_path / "out" / "good.md"
    code, out, err = run_cli("run", "mylayers:good", "--variant", "dropout", "--param", "p=0.2",
                             "--shape", "16,8,4,4", "--report", str(report), cwd=tmp_path)
    assert code == 0, out + err
    assert report.exists() and report.with_suffix(".json").exists()
    doc = json.loads(report.with_suffix(".json").read_text())
    assert doc["verdict"] == "PASS" and doc["params"] == {"p": 0.2}
    code, out, err = run_cli("run", "mylayers:bad", "--variant", "dropout", "--shape", "16,8,4,4", cwd=tmp_path)
    assert code == 1 and "FAIL: multiplier_values_exact" in out
    code, out, err = run_cli("run", "mylayers:wrong_type", "--variant", "dropout", cwd=tmp_path)
    assert code == 2 and "should return a torch nn.Module" in err and "Traceback" not in err


def test_verify_writes_reports_and_same_seed_gives_same_report(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        code, stdout, err = run_cli("verify", "--variant", "dropout", "--variant", "spatial_dropout_1d",
                                    "--out", str(out), "--seed", "5")
        assert code == 0, stdout + err
    assert (a / "index.md").exists() and (a / "numpy_dropout.md").exists() and (a / "img").is_dir()

    def strip(doc):
        for r in doc["results"]:
            r.pop("seconds")
        return doc

    for name in ("numpy_dropout.json", "numpy_spatial_dropout_1d.json"):
        da = strip(json.loads((a / name).read_text()))
        db = strip(json.loads((b / name).read_text()))
        assert da["results"] == db["results"]
    md = (a / "numpy_dropout.md").read_text()
    assert "| check | verdict | estimate | CI | expected ± margin | n | p (seq) | p (Holm) | MDD |" in md
    assert not list(a.glob("**/*.tmp"))
