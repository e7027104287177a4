"""``dropverify scan``: exit codes 0 / 1 / 2, one-line usage errors before anything runs,
the Markdown / JSON / JUnit outputs."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest.importorskip("torch")

from dropverify.cli import main  # noqa: E402

MODELS = str(Path(__file__).resolve().parents[1] / "examples" / "scan" / "scan_models.py")
FAST = ["--max-calls", "200", "--check", "multiplier_values_exact", "--quiet"]


@pytest.fixture(autouse=True)
def _no_step_summary(monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


def test_correct_model_exits_0_and_writes_markdown_json_junit(tmp_path, capsys):
    report, junit = tmp_path / "scan.md", tmp_path / "scan.xml"
    code = main(["scan", f"{MODELS}:correct", "--shape", "8,5,16", "--report", str(report), "--junit-xml",
                 str(junit), *FAST])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"report {report} written" in out and f"JUnit XML {junit} written" in out
    assert out.splitlines()[-1].startswith("OK: seed 20261126, family-wise false-alarm rate 0.001 over 0 statistical")
    doc = json.loads(report.with_suffix(".json").read_text())
    assert doc["kind"] == "scan" and doc["ok"] is True and doc["run"]["command"].startswith("dropverify scan ")
    assert doc["run"]["settings"]["max_calls"] == 200
    assert "| `blocks.0.attn` | F.scaled_dot_product_attention |" in report.read_text()
    suites = ET.parse(junit).getroot()
    assert suites.get("failures") == "0" and suites.find("testsuite").get("name") == "(model)"
    assert (tmp_path / "scan.timings.json").exists()


def test_buggy_model_exits_1_with_the_cause_naming_the_site(capsys):
    code = main(["scan", f"{MODELS}:sdpa_dropout_in_eval", "--shape", "8,5,16", *FAST])
    out = capsys.readouterr().out
    assert code == 1
    assert "  cause: blocks.0.attn: dropout_p=0.1 passed to scaled_dot_product_attention in eval (2 of 2 eval calls)" \
        in out.splitlines()
    assert out.splitlines()[-1].startswith("reproduce: dropverify scan ")


def test_input_function_dtype_and_strict(tmp_path, capsys):
    code = main(["scan", f"{MODELS}:correct", "--input", f"{MODELS}:example_input", *FAST])
    assert code == 0, capsys.readouterr()
    # float64: the model is cast to the input's dtype; --strict with a statistical check at a tiny budget
    code = main(["scan", f"{MODELS}:correct", "--shape", "8,5,16", "--dtype", "float64", "--max-calls", "20",
                 "--check", "drop_rate_matches_by_binomial", "--strict", "--quiet"])
    out = capsys.readouterr().out
    assert "(8, 5, 16) float64 on cpu" in out
    assert code == 1 and "NOT OK (--strict: INCONCLUSIVE fails)" in out
    # --quick's calls are kept (not replaced by the scan's default); the profile is defined by calls, not seconds
    report = tmp_path / "q.md"
    assert main(["scan", f"{MODELS}:correct", "--shape", "8,5,16", "--quick", "--check", "multiplier_values_exact",
                 "--quiet", "--report", str(report)]) == 0
    settings = json.loads(report.with_suffix(".json").read_text())["run"]["settings"]
    assert settings["max_calls"] == 1000 and settings["time_budget_s"] is None and settings["power"] == 0.9


USAGE = [
    (["nope_module_xyz:make", "--shape", "2,3"], "model 'nope_module_xyz:make': cannot import module 'nope_module_xyz'"),
    ([f"{MODELS}:nothing", "--shape", "2,3"], "has no attribute 'nothing'"),
    ([f"{MODELS}:example_input", "--shape", "2,3"], "returned a torch.Tensor, but should return a torch nn.Module"),
    ([f"{MODELS}:correct"], "give the example input: --shape S (a seeded standard normal) or --input MODULE:FN"),
    ([f"{MODELS}:correct", "--shape", "8,x"], "--shape '8,x', but should be comma-separated integers"),
    ([f"{MODELS}:correct", "--shape", "0,5,16"], "--shape '0,5,16', but every size should be at least 1"),
    ([f"{MODELS}:correct", "--shape", "8,5,16", "--input", f"{MODELS}:example_input"], "--shape and --input: give one"),
    ([f"{MODELS}:correct", "--input", f"{MODELS}:correct"], "returned a TinyNet, but should return a tensor"),
    ([f"{MODELS}:correct", "--input", f"{MODELS}:example_input", "--dtype", "float64"], "--dtype applies to --shape"),
    ([f"{MODELS}:correct", "--shape", "8,5,7"], "the model raised RuntimeError on the example input "
                                                "((8, 5, 7) float32 on cpu) in training"),
    ([f"{MODELS}:correct", "--shape", "8,5,16", "--report", "out.txt"], "--report 'out.txt', but should end in .md"),
    ([f"{MODELS}:correct", "--shape", "8,5,16", "--check", "bogus"], "check='bogus', but should be one of"),
    ([f"{MODELS}:correct", "--shape", "8,5,16", "--seed", "-1"], "--seed -1, but should be a non-negative integer"),
    ([f"{MODELS}:correct", "--shape", "8,5,16", "--dtype", "int8"], "argument --dtype: invalid choice: 'int8'"),
]


@pytest.mark.parametrize("args, message", USAGE, ids=[m.split(",")[0][:40] for _, m in USAGE])
def test_usage_errors_are_one_line_exit_2_and_write_nothing(args, message, tmp_path, monkeypatch, capsys):
    import dropverify.runner as runner

    def boom(*a, **k):
        raise AssertionError("sampling started before the usage error was reported")
    monkeypatch.setattr(runner, "verify", boom)
    monkeypatch.chdir(tmp_path)
    code = main(["scan", *args, "--report", "r.md"] if "--report" not in args else ["scan", *args])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dropverify: error: ") and message in lines[0], err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_a_model_without_dropout_sites_exits_2_saying_what_was_searched(tmp_path, capsys):
    (tmp_path / "plain.py").write_text("import torch.nn as nn\n\ndef lstm():\n    return nn.LSTM(8, 8, num_layers=2)\n")
    code = main(["scan", f"{tmp_path / 'plain.py'}:lstm", "--shape", "3,2,8", *FAST])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("dropverify: error: no dropout site found in torch.nn.modules.rnn.LSTM: searched the "
                             "module tree for torch.nn Dropout")
    assert "F.scaled_dot_product_attention(dropout_p)" in err[0]


def test_eval_active_declares_mc_dropout(tmp_path, capsys):
    (tmp_path / "mc.py").write_text(
        "import torch.nn as nn\nimport torch.nn.functional as F\n\n"
        "class MC(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.fc, self.p = nn.Linear(16, 16), 0.25\n\n"
        "    def forward(self, x):\n        return F.dropout(self.fc(x), self.p, training=True)\n")
    args = ["scan", f"{tmp_path / 'mc.py'}:MC", "--shape", "8,16", *FAST]
    assert main(args) == 1
    assert "cause: (model): F.dropout(p=0.25) called with training=True" in capsys.readouterr().out
    assert main([*args, "--eval-active", "(model)"]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert out.startswith("PASS") and "cause:" not in out
