"""The public Python API: dropverify.verify() -> Report (small budgets, fixed seeds)."""
from __future__ import annotations

import json
import shlex
import subprocess
import sys

import numpy as np
import pytest

import dropverify
from dropverify import CheckFailed, InvalidArgument, Report, Settings, verify
from dropverify.variants import variant_class

Dropout = variant_class("dropout")
SMALL = Settings(max_calls=400)
SHAPE = (16, 8, 4, 4)
FEW = ["drop_rate_matches_by_binomial", "masks_fresh_across_calls_by_fisher", "invalid_p_rejected",
       "p_zero_is_exact_identity"]


class Sticky(Dropout):
    """The same mask on every call (an RNG that never advances)."""

    def draw_keep(self, shape):
        return np.random.default_rng(0).random(self.mask_shape(shape)) >= self.p


def make_sticky(p):
    return Sticky(p=p)


def test_public_names_are_exactly_all():
    assert sorted(dropverify.__all__) == sorted([
        "CheckFailed", "CheckResult", "Contract", "DEFAULT_SEED", "DropverifyError", "InvalidArgument", "ParamSpec",
        "Report", "Settings", "TargetUnavailable", "Verdict", "all_contracts", "get_contract", "scan", "verify", "worst",
        "__version__"])
    for name in dropverify.__all__:
        assert getattr(dropverify, name) is not None
    with pytest.raises(AttributeError):
        dropverify.no_such_name  # noqa: B018


def test_import_stays_light_and_api_is_lazy():
    code = ("import dropverify, sys; a = 'scipy' in sys.modules; dropverify.verify; "
            "print(a, 'scipy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True"]


def test_one_default_seed_everywhere():
    from dropverify.cli import build_parser
    assert dropverify.DEFAULT_SEED == 20261126 == Settings().seed
    args = build_parser().parse_args(["run", "numpy:dropout"])
    assert args.seed in (None, dropverify.DEFAULT_SEED)  # None: the CLI resolves it to DEFAULT_SEED
    report = verify("numpy:dropout", p=0.2, shape=SHAPE, settings=SMALL, checks=FEW[:1])
    assert report.seed == dropverify.DEFAULT_SEED
    # the same numbers as the runner with the default settings' seed
    from dropverify.runner import verify as run_checks
    from dropverify.targets.resolve import resolve_target
    run = run_checks(resolve_target("numpy:dropout", None, {"p": 0.2}, SHAPE), SMALL, checks=FEW[:1])
    assert run.all_results()[0].estimate == report.results[0].estimate


def test_report_of_a_passing_builtin():
    report = verify("numpy:dropout", p=0.2, shape=SHAPE, seed=7, settings=SMALL, checks=FEW)
    assert isinstance(report, Report) and report.ok and report.failures == [] and report.inconclusive == []
    assert report.verdict == "PASS" and report.seed == 7
    text = repr(report)
    assert "\n" not in text and len(text) < 200
    assert text == "Report(PASS: numpy:dropout dropout(p=0.2); 4 PASS; seed 7)"
    assert report.summary().splitlines() == [
        "PASS         numpy:dropout dropout(p=0.2) shape (16, 8, 4, 4): PASS=4",
        "OK: seed 7, family-wise false-alarm rate 0.001 over 2 statistical results"]
    report.assert_ok()
    report.assert_ok(strict=True)
    with pytest.raises(dataclass_frozen_error()):
        report.reproduce = "x"  # frozen


def dataclass_frozen_error():
    import dataclasses
    return dataclasses.FrozenInstanceError


def test_to_dict_to_markdown_and_write(tmp_path):
    report = verify("numpy:dropout", p=0.2, shape=SHAPE, settings=SMALL, checks=FEW)
    doc = report.to_dict()
    back = json.loads(json.dumps(doc, allow_nan=False))
    assert back["ok"] is True and back["seed"] == dropverify.DEFAULT_SEED
    assert back["reproduce"] == report.reproduce
    [target] = back["targets"]
    assert target["target"] == "numpy:dropout" and target["params"]["p"] == 0.2
    assert {r["check"] for r in target["results"]} == set(FEW)
    md = report.to_markdown()
    assert md.startswith("# dropverify report: `numpy:dropout`") and "drop_rate_matches_by_binomial" in md
    paths = report.write(tmp_path / "out")
    names = {p.name for p in paths}
    assert {"index.md", "index.json", "numpy_dropout.md"} <= names
    assert json.loads((tmp_path / "out" / "numpy_dropout.json").read_text())["verdict"] == "PASS"
    assert (tmp_path / "out" / "img" / "numpy_dropout-ci.png").is_file()


def test_failing_factory_assert_ok_lists_rows_seed_and_cli_reproduction(tmp_path):
    report = verify(make_sticky, "dropout", p=0.2, shape=SHAPE, seed=3, settings=SMALL, checks=FEW)
    assert not report.ok and report.verdict == "FAIL"
    assert [r.check for r in report.failures] == ["drop_rate_matches_by_binomial", "masks_fresh_across_calls_by_fisher"]
    assert all(r.verdict == "FAIL" for r in report.failures)
    with pytest.raises(AssertionError) as info:
        report.assert_ok()
    assert isinstance(info.value, CheckFailed)
    lines = str(info.value).splitlines()
    name = f"user:{make_sticky.__module__}:make_sticky"
    assert lines[0] == f"{name} dropout(p=0.2): 2 FAIL; seed 3"
    fresh = next(line for line in lines if line.startswith("FAIL masks_fresh_across_calls_by_fisher"))
    assert fresh.startswith(f"FAIL masks_fresh_across_calls_by_fisher [{name}]: estimate 4.1540, CI 4.1540 .. "
                            "4.1540, expected 0.0000 ± 0.2000, p(Holm)=0, n=")
    assert "seed 3 (family-wise false-alarm rate 0.001)" in lines
    repro = lines[-1]
    assert repro == (f"reproduce: dropverify run {make_sticky.__module__}:make_sticky --variant dropout --param p=0.2 "
                     "--shape 16,8,4,4 --seed 3 --max-calls 400 " + " ".join(f"--check {c}" for c in FEW))
    # the command really reproduces the numbers
    from dropverify.cli import main
    argv = shlex.split(repro.split(": ", 1)[1])[1:] + ["--report", str(tmp_path / "r.md"), "--quiet"]
    assert main(argv) == 1
    doc = json.loads((tmp_path / "r.json").read_text())
    got = {r["check"]: (r["verdict"], r["estimate"]) for r in doc["results"]}
    from dropverify.report.jsonout import FLOAT_DIGITS  # the JSON states numbers to 6 significant digits
    assert got == {r.check: (r.verdict, None if r.estimate is None else float(f"{r.estimate:.{FLOAT_DIGITS}g}"))
                   for r in report.results}


def test_lambda_factory_gets_a_python_reproduction():
    report = verify(lambda p: Sticky(p=p), "dropout", p=0.2, shape=SHAPE, settings=SMALL, checks=FEW[1:2])
    assert report.reproduce == ("dropverify.verify(<your factory test_lambda_factory_gets_a_python_reproduction."
                                "<locals>.<lambda>>, 'dropout', shape=(16, 8, 4, 4), seed=20261126, "
                                "checks=['masks_fresh_across_calls_by_fisher'], "
                                "settings=dropverify.Settings(max_calls=400), p=0.2).assert_ok()")
    assert report.reproduce in str(pytest.raises(CheckFailed, report.assert_ok).value)


def test_strict_fails_inconclusive():
    report = verify("numpy:dropout", p=0.2, shape=SHAPE, settings=Settings(max_calls=20), checks=FEW[:1])
    assert report.ok and [r.verdict for r in report.inconclusive] == ["INCONCLUSIVE"]
    report.assert_ok()
    with pytest.raises(CheckFailed, match="1 INCONCLUSIVE; seed 20261126"):
        report.assert_ok(strict=True)


def test_layer_objects_numpy_and_torch_rebuilt_for_edge_checks():
    report = verify(Dropout(p=0.3), "dropout", shape=SHAPE, settings=SMALL, checks=FEW)
    assert report.ok and report.targets[0].params["p"] == 0.3, report.summary()
    torch = pytest.importorskip("torch")
    report = verify(torch.nn.Dropout(0.25), "dropout", shape=SHAPE, settings=SMALL, checks=FEW)
    assert report.ok and report.targets[0].params["p"] == 0.25, report.summary()
    assert report.reproduce.startswith("dropverify.verify(<your Dropout layer>, 'dropout'")
    # another p than the object's own: rebuilt from its constructor
    report = verify(torch.nn.Dropout(0.25), "dropout", p=0.1, shape=SHAPE, settings=SMALL, checks=FEW[:1])
    assert report.targets[0].params["p"] == 0.1 and abs(report.results[0].estimate - 0.1) < 0.01
    # a class is a factory
    assert verify(torch.nn.Dropout, "dropout", p=0.1, shape=SHAPE, settings=SMALL, checks=FEW[:1]).ok


class Wrapped:
    """A numpy layer whose constructor takes another layer, not p: it cannot be rebuilt."""

    def __init__(self, inner):
        self.inner, self.p = inner, inner.p

    @property
    def rng(self):
        return self.inner.rng

    @rng.setter
    def rng(self, generator):
        self.inner.rng = generator

    @property
    def training(self):
        return self.inner.training

    @training.setter
    def training(self, flag):
        self.inner.training = flag

    def forward(self, *inputs):
        return self.inner.forward(*inputs)

    def backward(self, grad_out):
        return self.inner.backward(grad_out)


def test_object_that_cannot_be_rebuilt_errors_only_where_other_params_are_needed():
    obj = Wrapped(Dropout(p=0.2))
    report = verify(obj, "dropout", shape=SHAPE, settings=SMALL,
                    checks=["drop_rate_matches_by_binomial", "p_zero_is_exact_identity"])
    by = {r.check: r for r in report.results}
    assert by["drop_rate_matches_by_binomial"].verdict == "PASS"
    assert by["p_zero_is_exact_identity"].verdict == "ERROR"
    assert "pass a factory" in by["p_zero_is_exact_identity"].message
    with pytest.raises(InvalidArgument, match="cannot be rebuilt"):
        verify(obj, "dropout", p=0.1, shape=SHAPE, settings=SMALL, checks=FEW[:1])


@pytest.mark.parametrize("call, match", [
    (lambda: verify("numpy:dropout", p=0.2, seed=-1), "seed=-1"),
    (lambda: verify("numpy:dropout", p=0.2, alpha=2.0), "alpha=2.0"),
    (lambda: verify(make_sticky, p=0.2), "needs the variant"),
    (lambda: verify(42, "dropout"), "should be a target name"),
    (lambda: verify("numpy:dropout", p=1.5), "p=1.5"),
    (lambda: verify("numpy:dropout", "dropblock_2d", p=0.1), "implements 'dropout'"),
    (lambda: verify("numpy:dropout", p=0.2, checks=["no_such_check"]), "no_such_check"),
])
def test_bad_arguments_raise_invalid_argument_before_sampling(call, match):
    with pytest.raises(InvalidArgument, match=match):
        call()


BAD_SHAPES = [((0, 0), r"shape=\(0, 0\), but every size should be at least 1"),
              ((16, 0), r"shape=\(16, 0\), but every size should be at least 1"),
              ((-1, 4), r"shape=\(-1, 4\), but every size should be at least 1"),
              ((), r"shape=\(\), but should be a non-empty sequence of integers"),
              ("64,32", r"shape='64,32', but should be a non-empty sequence of integers"),
              (64, r"shape=64, but should be a non-empty sequence of integers"),
              ((2.5, 3), r"shape=\(2.5, 3\), but should be a non-empty sequence of integers")]


@pytest.mark.parametrize("shape, match", BAD_SHAPES, ids=[repr(s) for s, _ in BAD_SHAPES])
def test_empty_or_non_positive_shapes_are_refused_before_sampling(shape, match, monkeypatch):
    """Issue 16: verify(shape=(0, 0)) ran (and ERRORed) where the CLI's --shape 0,0 is a usage
    error; every entry point now refuses it in one line naming the shape."""
    import dropverify.runner as runner
    from dropverify.sweep import run_sweep
    from dropverify.testing import assert_honours_contract
    monkeypatch.setattr(runner, "verify", lambda *a, **k: pytest.fail("sampling started"))
    for call in (lambda: verify("numpy:dropout", p=0.2, shape=shape),
                 lambda: verify(make_sticky, "dropout", p=0.2, shape=shape),
                 lambda: assert_honours_contract(make_sticky, "dropout", {"p": 0.2}, shape=shape),
                 lambda: run_sweep("numpy:dropout", fixed={"shape": shape})):
        with pytest.raises(InvalidArgument, match=match):
            call()


def test_seed_in_settings_is_validated_like_the_seed_argument():
    """Settings(seed=-1) used to pass validation and ERROR every check after sampling."""
    with pytest.raises(InvalidArgument, match=r"seed=-1, but should be an integer >= 0"):
        verify("numpy:dropout", p=0.2, settings=Settings(seed=-1))
    with pytest.raises(InvalidArgument, match=r"seed=1.5, but should be an integer >= 0"):
        Settings(seed=1.5).validate()


def test_every_verification_is_observed():
    from dropverify import _session
    seen = []
    _session.observers.append(seen.append)
    try:
        from dropverify.testing import assert_honours_contract
        run = assert_honours_contract(Dropout, "dropout", {"p": 0.2}, shape=SHAPE, seed=3, settings=SMALL,
                                      checks=FEW[:1])
        assert run.settings.seed == 3 and run.settings.max_calls == 400
        verify("numpy:dropout", p=0.2, shape=SHAPE, settings=SMALL, checks=FEW[:1])
    finally:
        _session.observers.remove(seen.append)
    assert [r.ok for r in seen] == [True, True] and all(isinstance(r, Report) for r in seen)


def test_a_named_user_factory_file(tmp_path):
    path = tmp_path / "layers_file.py"
    path.write_text("from dropverify.variants import variant_class\n\n"
                    "def make(p):\n    return variant_class('dropout')(p=p)\n")
    report = verify(f"{path}:make", "dropout", p=0.3, shape=SHAPE, settings=SMALL, checks=FEW[:1])
    assert report.ok and report.targets[0].spec_name == f"user:{path}:make"
    assert report.reproduce == (f"dropverify run {path}:make --variant dropout --param p=0.3 --shape 16,8,4,4 "
                                "--seed 20261126 --max-calls 400 --check drop_rate_matches_by_binomial")
    with pytest.raises(InvalidArgument, match="give its variant"):
        verify(f"{path}:make", p=0.3)


def test_sweep_report_lists_minimal_failing_configurations():
    pytest.importorskip("dropverify.sweep")
    report = verify(make_sticky, "dropout", sweep=True, p=0.2, shape=(16, 8))
    assert report.run is None and report.sweep is not None
    assert not report.ok and report.verdict == "FAIL" and report.failures
    assert repr(report).startswith(f"Report(FAIL: sweep of {make_sticky.__module__}:make_sticky (dropout); ")
    message = str(pytest.raises(CheckFailed, report.assert_ok).value)
    assert "minimal failing configuration p=0.2" in message and "masks_fresh_across_calls_by_fisher" in message
    assert f"  reproduce: dropverify run {make_sticky.__module__}:make_sticky " in message
    assert message.endswith(f"reproduce the sweep: dropverify run {make_sticky.__module__}:make_sticky --variant "
                            "dropout --param p=0.2 --shape 16,8 --seed 20261126 --sweep")
    assert report.to_dict()["verdict"] == "FAIL"
    assert report.to_markdown().startswith("# dropverify sweep: ")


def test_environment_names_the_frameworks_of_isolated_targets():
    """Targets run in a spawned worker (keras[jax]:, tf:) still have their framework versions in the report."""
    import importlib.util
    from types import SimpleNamespace
    from dropverify.runner import environment
    env = environment([SimpleNamespace(name="keras[jax]:Dropout"), SimpleNamespace(name="tf:nn.dropout")])
    assert {"python", "numpy", "scipy", "statsmodels"} <= set(env)
    if importlib.util.find_spec("jax") is not None:
        assert env["jax"] and env["jaxlib"]
    if importlib.util.find_spec("tensorflow") is not None:
        assert env["tensorflow"]
    assert "flax" not in environment([SimpleNamespace(name="numpy:dropout")]) or "flax" in __import__("sys").modules


@pytest.mark.parametrize("kw, match", [
    ({"layout": "diagonal"}, r"layout='diagonal', but "),  # verify(): no target takes it (test_usage.py)
    ({"layout": "channels_last"}, r"layout='channels_last', but numpy:dropout takes contiguous, transposed, strided"),
    ({"dtype": "bfloat16"}, r"dtype='bfloat16', but numpy:dropout takes float16, float32, float64"),
])
def test_a_dtype_or_layout_the_target_does_not_take_is_refused_like_the_cli(kw, match, monkeypatch):
    """The CLI refused --layout / --dtype a target does not take; verify() and run_sweep()
    accepted them and every check ERRORed after sampling."""
    import dropverify.runner as runner
    from dropverify.sweep import run_sweep
    monkeypatch.setattr(runner, "verify", lambda *a, **k: pytest.fail("sampling started"))
    with pytest.raises(InvalidArgument, match=match):
        verify("numpy:dropout", p=0.2, shape=(16, 8, 4, 4), **kw)
    with pytest.raises(InvalidArgument, match=match.split(" takes")[0]):
        run_sweep("numpy:dropout", fixed={"shape": (16, 8, 4, 4), **kw})
