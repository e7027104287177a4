"""``dropverify scan`` of Keras 3 models on this process's backend (KERAS_BACKEND; the jax and
tensorflow runs: tests/test_scan_keras_backends.py): correct Sequential / functional / subclassed
models PASS, one small broken model per bug FAILs naming its site, the usage errors exit 2."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("keras")
pytest.importorskip("torch")

import dropverify  # noqa: E402
from dropverify.checks import Settings  # noqa: E402
from dropverify.cli import main  # noqa: E402
from dropverify.errors import InvalidArgument  # noqa: E402
from dropverify.modelscan import frameworks  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "scan"
KM = str(EXAMPLES / "keras_models.py")
sys.path.insert(0, str(EXAMPLES))
M = importlib.import_module("keras_models")
FAST = dict(checks=["multiplier_values_exact"], settings=Settings(max_calls=200))
CLI_FAST = ["--max-calls", "200", "--check", "multiplier_values_exact", "--quiet"]


def _scan(name: str, x=None):
    return dropverify.scan(getattr(M, name)(), M.example_input() if x is None else x, **FAST)


def _rows(report):
    return {row.label: row for row in report.scan.sites}


def test_framework_is_read_from_the_object():
    import keras
    import torch.nn as nn
    assert frameworks.detect(M.sequential()) == "keras"
    assert frameworks.detect(keras.layers.Dropout(0.1)) == "keras"
    assert frameworks.detect(nn.Dropout(0.1)) == "torch"
    assert frameworks.detect(np.zeros(3)) is None and frameworks.detect("model") is None


def test_sequential_passes_with_every_site_found():
    r = _scan("sequential")
    assert r.ok and r.verdict == "PASS", r.summary()
    rows = _rows(r)
    assert set(rows) == {"drop", "noise"}
    assert rows["drop"].kind == "keras.layers.Dropout" and rows["drop"].configured == pytest.approx(0.3)
    assert rows["drop"].train == "0.3" and rows["drop"].eval == "0 (p=0.3, off)" and rows["drop"].in_situ == "verified"
    assert rows["noise"].kind == "keras.layers.GaussianDropout" and rows["noise"].variant == "gaussian_dropout"


def test_functional_model_attention_spatial_rnn_alpha_sites():
    r = _scan("functional", M.sequence_input())
    assert r.ok and not r.scan.causes, r.summary()
    rows = _rows(r)
    assert set(rows) == {"attn.dropout", "sdrop", "lstm", "adrop"}, rows
    assert rows["attn.dropout"].kind == "keras.layers.MultiHeadAttention attention dropout"
    assert rows["attn.dropout"].configured_from == "attn.dropout"
    assert rows["sdrop"].variant == "spatial_dropout_1d"
    assert rows["lstm"].kind == "keras.layers.LSTM dropout" and rows["lstm"].train == "0.25"
    assert rows["lstm"].in_situ == "verified" and rows["adrop"].variant == "alpha_dropout"


def test_subclassed_nested_model_passes_and_reads_rates_from_the_owning_block():
    r = _scan("subclassed")
    assert r.ok and not r.scan.causes, r.summary()
    rows = _rows(r)
    assert set(rows) == {"block1.drop", "block2.drop", "head.drop"}
    assert rows["block1.drop"].configured_from == "block1.rate" and rows["head.drop"].configured_from == "head.drop.rate"
    assert all(row.calls == {"train": 1, "eval": 2, "train_after_eval": 1} for row in rows.values())


def test_a_layer_that_ignores_the_training_flag_fails_naming_it():
    r = _scan("flag_ignored")
    assert not r.ok
    assert ("drop: keras.layers.Dropout subclass AlwaysDrops drops in eval although it is passed training=False: it "
            "ignores the flag it is passed (2 of 2 eval calls)") in r.scan.causes
    assert r.scan.causes[0].startswith("eval output differs between two calls under different seeds")
    assert _rows(r)["drop"].verdict == "FAIL"


def test_a_rate_not_plumbed_fails_naming_the_site():
    r = _scan("rate_not_plumbed")
    assert ("block1.drop: keras.layers.Dropout received p=0.1 in training, but 0.3 is configured (block1.rate): the "
            "configured rate is not plumbed into the call") in r.scan.causes
    assert _rows(r)["block1.drop"].verdict == "FAIL" and _rows(r)["block2.drop"].verdict == "PASS"


def test_a_training_flag_hard_coded_by_the_caller_fails():
    r = _scan("training_hard_coded")
    assert any(c.startswith("block1.drop: keras.layers.Dropout is passed training=True while the model is in eval")
               for c in r.scan.causes), r.scan.causes


def test_dropouts_in_series_are_found():
    import keras
    L = keras.layers
    model = keras.Sequential([keras.Input((16,)), L.Dense(8), L.Dropout(0.2, name="a"), L.Dropout(0.1, name="b")])
    r = dropverify.scan(model, M.example_input(), **FAST)
    assert "b is applied to the output of a with nothing between: p 0.2 then 0.1 is one dropout at effective p = " \
           "1 - (1 - 0.2)(1 - 0.1) = 0.28" in r.scan.causes


def test_the_model_is_left_as_it_was():
    import keras
    model = M.sequential()
    x = M.example_input()
    before = [keras.ops.convert_to_numpy(v.value).copy() for v in model.non_trainable_variables]
    y = keras.ops.convert_to_numpy(model(x, training=False))
    dropverify.scan(model, x, **FAST)
    after = [keras.ops.convert_to_numpy(v.value) for v in model.non_trainable_variables]
    assert all(np.array_equal(a, b) for a, b in zip(before, after)) and len(before) == len(after) > 0
    assert "call" not in vars(model.get_layer("drop"))
    assert np.array_equal(keras.ops.convert_to_numpy(model(x, training=False)), y)


def test_no_dropout_and_no_framework_are_usage_errors(capsys):
    with pytest.raises(InvalidArgument, match="no dropout site found in keras.src.models.sequential.Sequential: "
                                              "searched the Keras layer tree"):
        _scan("no_dropout")
    with pytest.raises(InvalidArgument, match="model is a ndarray, but should be a torch nn.Module, a Keras 3 "
                                              "keras.Model / keras.Layer or a Flax NNX nnx.Module"):
        dropverify.scan(np.zeros(3), M.example_input())
    assert main(["scan", f"{KM}:no_dropout", "--shape", "8,16", *CLI_FAST]) == 2
    assert "no dropout site found" in capsys.readouterr().err
    assert main(["scan", f"{KM}:example_input", "--shape", "8,16", *CLI_FAST]) == 2
    err = capsys.readouterr().err
    assert "returned a numpy.ndarray, but should return a torch nn.Module, a Keras 3 keras.Model" in err
    assert main(["scan", f"{KM}:sequential", "--shape", "8,16", "--device", "cpu", *CLI_FAST]) == 2
    assert "--device applies to torch models" in capsys.readouterr().err


def test_a_missing_framework_is_a_usage_error_naming_the_package(monkeypatch):
    real = importlib.import_module

    def fake(name, *a, **k):
        if name.startswith("flax"):
            raise ModuleNotFoundError("No module named 'flax'", name="flax")
        return real(name, *a, **k)
    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(InvalidArgument, match=r"scanning a Flax NNX model needs the package 'flax' .*pip install "
                                              r"'dropverify\[jax\]'"):
        frameworks.scanner("nnx")


def test_cli_scans_a_keras_model_from_shape_and_input(tmp_path, capsys):
    report = tmp_path / "k.md"
    assert main(["scan", f"{KM}:sequential", "--shape", "8,16", "--report", str(report), *CLI_FAST]) == 0
    out = capsys.readouterr().out
    assert "scan of keras.src.models.sequential.Sequential (seq) on (8, 16) float32 (Keras on " in out
    assert "| `drop` | keras.layers.Dropout | 0.3 (`drop.rate`) | 0.3 | 0 (p=0.3, off) | verified | PASS |" \
        in report.read_text()
    assert main(["scan", f"{KM}:subclassed", "--input", f"{KM}:example_input", *CLI_FAST]) == 0
    assert main(["scan", f"{KM}:flag_ignored", "--shape", "8,16", *CLI_FAST]) == 1
    assert "cause: drop: keras.layers.Dropout subclass AlwaysDrops drops in eval" in capsys.readouterr().out


def test_committed_mobilenet_report_is_what_the_docs_quote():
    import json
    root = Path(__file__).resolve().parents[1]
    report = root / "reports" / "scan" / "keras_mobilenet.md"
    text = report.read_text()
    docs = (root / "docs" / "frameworks.md").read_text()
    section = docs[docs.index("## Audit a whole Keras 3 or Flax NNX model"):docs.index("## Audit a whole model:")]
    rows = [line for line in section.splitlines() if line.startswith("| `") and "keras.layers" in line]
    assert len(rows) == 1 and rows[0] in text.splitlines()
    doc = json.loads(report.with_suffix(".json").read_text())
    assert doc["run"]["command"] == ("dropverify scan examples/scan/keras_models.py:mobilenet --shape 8,32,32,3 "
                                     "--time-budget 0")
    assert doc["framework"] == "keras" and [t["target"] for t in doc["targets"]] == ["(model)", "dropout[Dropout]"]


def test_recurrent_dropout_is_a_site_verified_through_the_cells_mask():
    import keras
    L = keras.layers
    model = keras.Sequential([keras.Input((6, 16)), L.GRU(8, recurrent_dropout=0.3, name="gru"), L.Dense(2)])
    r = dropverify.scan(model, M.sequence_input(), **FAST)
    (row,) = r.scan.sites
    assert r.ok and row.name == "gru[recurrent_dropout]" and row.kind == "keras.layers.GRU recurrent_dropout"
    assert row.train == "0.3" and row.eval == "0 (p=0.3, off)" and row.in_situ == "verified", r.summary()


def test_expected_rates_are_checked_on_keras_models(capsys):
    ok = dropverify.scan(M.sequential(), M.example_input(), expect={"drop": 0.3, "noise": 0.2}, **FAST)
    (r,) = [x for x in ok.results if x.check == "site_rate_matches_expected"]
    assert r.verdict == "PASS" and "(2 site(s))" in r.message, ok.summary()
    code = main(["scan", f"{KM}:sequential", "--shape", "8,16", "--expect", "drop=0.5", *CLI_FAST])
    assert code == 1 and "drop: p=0.3 in training, but drop=0.5 is expected" in capsys.readouterr().out
    assert main(["scan", f"{KM}:sequential", "--shape", "8,16", "--expect", "attn=0.1", *CLI_FAST]) == 2
    assert "'attn' matches no dropout site" in capsys.readouterr().err
