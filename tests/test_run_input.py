"""``dropverify run ... --input MODULE:FN``: the user's own probe for the call-pattern checks;
every bad input is one line on stderr and exit 2, before any sampling."""
from __future__ import annotations

import json

import pytest

from dropverify.cli import main

CHECKS = ["--check", "masks_fresh_after_eval_by_hash", "--check", "instances_draw_independent_masks_by_hash",
          "--check", "input_unchanged_unless_inplace"]

INPUTS = '''
import numpy as np

def relu_batch():
    x = np.random.default_rng(0).standard_normal((16, 64))
    return (np.maximum(x, 0) * 1e4).astype(np.float32)

def tensor():
    import torch
    return torch.linspace(-5, 5, 16 * 64, dtype=torch.float64).reshape(16, 64)

def pair():
    return np.ones((4, 8)), np.ones((4, 8))

def ints():
    return np.arange(12).reshape(3, 4)

def nan():
    a = np.ones((4, 4))
    a[0, 0] = np.nan
    return a

def empty():
    return np.ones((0, 4))

def boom():
    raise RuntimeError("no data")

def text():
    return "hello"
'''


@pytest.fixture
def inputs_file(tmp_path):
    path = tmp_path / "inputs.py"
    path.write_text(INPUTS)
    return path


def test_input_is_the_probe_and_fixes_shape_and_dtype(inputs_file, tmp_path, capsys):
    report = tmp_path / "r.md"
    code = main(["run", "numpy:dropout", "--input", f"{inputs_file}:relu_batch", *CHECKS, "--report", str(report),
                 "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "numpy:dropout[float32]" in out and "PASS=3" in out
    data = json.loads(report.with_suffix(".json").read_text())
    assert tuple(data["probe_shape"]) == (16, 64)
    details = [r["details"] for r in data["results"]]
    assert all(d["user_input"] for d in details)
    units = next(d["units"] for d in details if "units" in d)
    import numpy as np
    x = np.random.default_rng(0).standard_normal((16, 64))
    assert units == int(np.sum(x > 0))  # the zeros of the user's input carry no mask


def test_torch_tensor_input(inputs_file, capsys):
    pytest.importorskip("torch")
    code = main(["run", "torch:Dropout", "--input", f"{inputs_file}:tensor", *CHECKS, "--quiet"])
    assert code == 0, capsys.readouterr().out


@pytest.mark.parametrize("fn, extra, words", [
    ("ints", [], "dtype int64"),
    ("nan", [], "NaN or inf"),
    ("empty", [], "non-empty"),
    ("boom", [], "raised RuntimeError"),
    ("text", [], "returned a str"),
    ("missing", [], "no attribute 'missing'"),
    ("pair", [], "returned 2 array(s)"),
    ("relu_batch", ["--shape", "4,4"], "--shape and --input"),
    ("relu_batch", ["--dtype", "float64"], "--dtype and --input"),
    ("relu_batch", ["--sweep"], "--sweep and --input"),
])
def test_bad_input_is_one_line_exit_2(inputs_file, capsys, fn, extra, words):
    code = main(["run", "numpy:dropout", "--input", f"{inputs_file}:{fn}", *extra, "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("dropverify: error:") and words in err, err


def test_input_of_the_wrong_rank_for_the_variant(inputs_file, capsys):
    code = main(["run", "numpy:spatial_dropout_2d", "--input", f"{inputs_file}:relu_batch", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "rank" in err, err
