"""``dropverify scan`` of Flax NNX modules: a correct MLP and transformer block PASS, one small broken
module per NNX dropout bug FAILs naming its site, the usage errors exit 2."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flax.nnx")

import dropverify  # noqa: E402
from dropverify.checks import Settings  # noqa: E402
from dropverify.cli import main  # noqa: E402
from dropverify.errors import InvalidArgument  # noqa: E402
from dropverify.modelscan import frameworks, layer_sites  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "scan"
NM = str(EXAMPLES / "nnx_models.py")
sys.path.insert(0, str(EXAMPLES))
M = importlib.import_module("nnx_models")
FAST = dict(checks=["multiplier_values_exact"], settings=Settings(max_calls=200))
CLI_FAST = ["--max-calls", "200", "--check", "multiplier_values_exact", "--quiet"]


def _x(*shape):
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


def _rows(report):
    return {row.label: row for row in report.scan.sites}


def test_framework_is_nnx():
    assert frameworks.detect(M.correct_mlp()) == "nnx"


def test_correct_mlp_and_transformer_block_pass():
    r = dropverify.scan(M.correct_mlp(), _x(8, 16), **FAST)
    assert r.ok and r.verdict == "PASS", r.summary()
    row = _rows(r)["drop"]
    assert row.kind == "nnx.Dropout" and row.configured_from == "(model).dropout_rate" and row.train == "0.3"
    assert row.eval == "0 (p=0.3, off)" and row.in_situ == "verified"
    rng = [x for x in r.results if x.check == layer_sites.RNG_CHECK]
    assert rng and rng[0].verdict == "PASS" and "different elements dropped" in rng[0].message
    r = dropverify.scan(M.transformer_block(), _x(4, 8, 16), **FAST)
    assert r.ok and not r.scan.causes, r.summary()
    assert set(_rows(r)) == {"attn_drop", "mlp_drop", "resid_drop"}
    assert _rows(r)["resid_drop"].in_situ == "shared with attn_drop[Dropout]"


def test_a_dropout_that_ignores_deterministic_fails_naming_it():
    r = dropverify.scan(M.flag_ignored(), _x(8, 16), **FAST)
    assert ("drop: nnx.Dropout subclass AlwaysDrops drops in eval although it is passed deterministic=True: it "
            "ignores the flag it is passed (2 of 2 eval calls)") in r.scan.causes
    assert not r.ok and _rows(r)["drop"].verdict == "FAIL"


def test_a_rate_not_plumbed_fails_naming_the_site():
    r = dropverify.scan(M.rate_not_plumbed(), _x(8, 16), **FAST)
    assert ("drop: nnx.Dropout received p=0.1 in training, but 0.3 is configured ((model).dropout_rate): the "
            "configured rate is not plumbed into the call") in r.scan.causes


def test_a_key_that_does_not_advance_fails():
    r = dropverify.scan(M.rng_not_advanced(), _x(8, 16), **FAST)
    assert any(c.startswith("drop: the same elements are dropped in two training passes (the model's RngStreams "
                            "advanced between them): its random key does not advance between calls")
               for c in r.scan.causes), r.scan.causes
    assert _rows(r)["drop"].verdict == "FAIL"


def test_the_repeat_check_does_not_judge_where_a_repeat_is_likely():
    r = dropverify.scan(M.rng_not_advanced(), _x(1, 16), **FAST)  # 32 elements at p=0.3: chance 0.58^32 > 1e-9
    (res,) = [x for x in r.results if x.check == layer_sites.RNG_CHECK]
    assert res.verdict == "PASS" and res.message.startswith("drop: not judged")


def test_the_module_is_left_as_it_was():
    from flax import nnx
    model = M.correct_mlp()
    model.eval()
    counts = str(nnx.state(model, nnx.RngCount))
    dropverify.scan(model, _x(8, 16), **FAST)
    assert str(nnx.state(model, nnx.RngCount)) == counts and model.drop.deterministic is True
    assert "__call__" not in vars(nnx.Dropout) or nnx.Dropout.__call__.__module__.startswith("flax")


def test_usage_errors(capsys):
    with pytest.raises(InvalidArgument, match="no dropout site found in flax.nnx.nn.linear.Linear: searched the NNX"):
        dropverify.scan(M.no_dropout(), _x(8, 16), **FAST)
    with pytest.raises(InvalidArgument, match="eval_active applies to torch models"):
        dropverify.scan(M.correct_mlp(), _x(8, 16), eval_active=["drop"], **FAST)
    assert main(["scan", f"{NM}:no_dropout", "--shape", "8,16", *CLI_FAST]) == 2
    assert "no dropout site found" in capsys.readouterr().err


def test_cli(tmp_path, capsys):
    report = tmp_path / "n.md"
    assert main(["scan", f"{NM}:transformer_block", "--shape", "4,8,16", "--report", str(report), *CLI_FAST]) == 0
    assert "scan of nnx_models.TransformerBlock on (4, 8, 16) float32 (Flax NNX)" in capsys.readouterr().out
    assert "| `mlp_drop` | nnx.Dropout | 0.1 (`(model).dropout_rate`) | 0.1 | 0 (p=0.1, off) | verified | PASS |" \
        in report.read_text()
    assert main(["scan", f"{NM}:rng_not_advanced", "--input", f"{NM}:example_input", *CLI_FAST]) == 1
    assert "cause: drop: the same elements are dropped in two training passes" in capsys.readouterr().out


def test_committed_transformer_block_report_is_what_the_docs_quote():
    import json
    root = Path(__file__).resolve().parents[1]
    report = root / "reports" / "scan" / "nnx_transformer_block.md"
    text = report.read_text()
    docs = (root / "docs" / "frameworks.md").read_text()
    section = docs[docs.index("## Audit a whole Keras 3 or Flax NNX model"):docs.index("## Audit a whole model:")]
    rows = [line for line in section.splitlines() if line.startswith("| `") and "nnx.Dropout" in line]
    assert len(rows) == 3 and all(row in text.splitlines() for row in rows)
    # INCONCLUSIVE under the full battery: the finite-difference gradient needs float64 (JAX without x64)
    assert "Verdict: **INCONCLUSIVE** — 3 dropout site(s): 3 INCONCLUSIVE." in text
    assert "not run: the target has no float64 support" in text
    doc = json.loads(report.with_suffix(".json").read_text())
    assert doc["framework"] == "nnx" and doc["ok"] and doc["run"]["command"] == (
        "dropverify scan examples/scan/nnx_models.py:transformer_block --shape 8,8,16 --time-budget 0")


def test_expected_rates_are_checked_on_nnx_models():
    ok = dropverify.scan(M.transformer_block(), _x(4, 8, 16), expect={"*_drop": 0.1}, **FAST)
    (r,) = [x for x in ok.results if x.check == "site_rate_matches_expected"]
    assert r.verdict == "PASS" and "(3 site(s))" in r.message, ok.summary()
    broken = dropverify.scan(M.transformer_block(), _x(4, 8, 16), expect=["mlp_drop=0.2"], **FAST)
    (r,) = [x for x in broken.results if x.check == "site_rate_matches_expected"]
    assert r.verdict == "FAIL" and "mlp_drop: p=0.1 in training, but mlp_drop=0.2 is expected" in r.message
    with pytest.raises(InvalidArgument, match="'blocks.*' matches no dropout site"):
        dropverify.scan(M.transformer_block(), _x(4, 8, 16), expect={"blocks.*": 0.1}, **FAST)
