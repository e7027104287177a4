"""The command line: exit codes, one-line usage errors before any sampling, built-in targets
with parameters, several targets in one family, check names, reports, user factories."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dropverify.cli import main

FAST = ["--max-calls", "300", "--check", "drop_rate_matches_by_binomial"]


def run_cli(*args, cwd=None, env=None):
    full_env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "dropverify", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600, env=full_env)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(autouse=True)
def _no_step_summary(monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


@pytest.fixture
def no_sampling(monkeypatch):
    """Usage-error tests must fail before any sampling: the runner raises if reached."""
    import dropverify.runner as runner

    def boom(*a, **k):
        raise AssertionError("sampling started before the usage error was reported")
    monkeypatch.setattr(runner, "verify", boom)


@pytest.fixture
def a_file(tmp_path):
    f = tmp_path / "a_file.txt"
    f.write_text("x")
    return f


USAGE_ERRORS = [
    (["verify", "--variant", "nope"], "variant='nope', but should be one of"),
    (["verify", "--reference", "--alpha", "2"], "alpha=2.0, but should be in (0, 1)"),
    (["verify", "--reference", "--check", "bogus"], "check='bogus', but should be one of"),
    (["verify", "--target", "torch"], "should look like FRAMEWORK:LAYER"),
    (["verify", "--target", "numpy:nope"], "variant='nope', but should be one of"),
    (["run", "numpy:dropout", "--seed", "-5"], "--seed -5, but should be a non-negative integer"),
    (["run", "numpy:dropout", "--seed", "x"], "argument --seed: invalid int value: 'x'"),
    (["run", "numpy:dropout", "--shape", "0,0"], "--shape '0,0', but every size should be at least 1"),
    (["run", "numpy:dropout", "--shape", "4,x"], "should be comma-separated integers"),
    (["run", "numpy:spatial_dropout_2d", "--shape", "8,4"], "input rank=2 (shape (8, 4)), but should be"),
    (["run", "numpy:dropout", "--shape", "2,2,2,2,2,2"], "input rank=6"),
    (["run", "numpy:dropout", "--report", "out/report.txt"], "--report 'out/report.txt', but should end in .md"),
    (["run", "numpy:dropout", "--report", "{file}/r.md"], "is a file, not a folder"),
    (["run", "numpy:dropout", "--out", "{file}"], "is a file, not a folder"),
    (["run", "numpy:dropout", "--out", "/proc/dropverify-test"], "is not writable"),
    (["run", "numpy:dropout", "--junit-xml", "{file}/j.xml"], "is a file, not a folder"),
    (["run", "numpy:dropout", "--junit-xml", "{tmp}"], "is a folder, not a file"),
    (["run", "numpy:dropout", "--summary", "/proc/dropverify-summary.md"], "is not writable"),
    (["run", "numpy:dropout", "numpy:zoneout", "--report", "{tmp}/r.md"], "--report takes one target configuration"),
    (["run", "numpy:dropout", "--check", "bogus"], "check='bogus', but should be one of"),
    (["run", "numpy:dropout", "--check", "masks_independent_along_axisX_by_fisher"], "check="),
    (["run", "numpy:dropout", "--param", "p"], "should be KEY=VALUE"),
    (["run", "numpy:dropout", "--param", "p=3"], "p=3, but should be a number in [0, 1]"),
    (["run", "numpy:dropout", "--param", "p=0.1", "--param", "p=0.2"], "--param p given twice"),
    (["run", "numpy:dropout", "--param", "block_size=3"], "unknown parameter 'block_size' for dropout"),
    (["run", "numpy:dropout", "--variant", "dropblock_2d"], "numpy:dropout implements 'dropout'"),
    (["run", "numpy:dropout", "--dtype", "int8"], "argument --dtype: invalid choice: 'int8'"),
    (["run", "numpy:dropout", "--layout", "diagonal"], "--layout diagonal, but should be one of contiguous, transposed"),
    (["run", "torch:Dropout2d", "--layout", "strided"], "--layout strided, but torch:Dropout2d[strided] takes"),
    (["run", "numpy:dropout", "--margin", "rate"], "should be NAME=VALUE"),
    (["run", "numpy:dropout", "--margin", "speed=1"], "margin 'speed' unknown"),
    (["run", "torch:Nope"], "target='torch:Nope', but should be one of"),
    (["run", "numpy:dropout", "--layout", "channels_last"], "--layout channels_last, but numpy:dropout"),
    (["run", "numpy:dropout", "--dtype", "bfloat16"], "--dtype bfloat16, but numpy:dropout"),
    (["run", "torch:Dropout", "--shape", "256,128", "--layout", "channels_last"],
     "layout='channels_last' needs a 4-D or 5-D input, but torch:Dropout is probed with shape (256, 128)"),
    (["run", "numpy:dropout", "--device", "cuda"], "runs on the cpu only"),
    (["run", "nomodule_xyz:make", "--variant", "dropout"], "cannot import module 'nomodule_xyz'"),
    (["run", "nomodule_xyz:make"], "is a factory: give the variant it claims with --variant"),
    (["run", "math:sqrt", "--variant", "dropout"], "must accept the drop probability"),
    (["run", "json:nothing", "--variant", "dropout"], "has no attribute 'nothing'"),
    (["run", "x", "--variant", "dropout"], "should look like FRAMEWORK:LAYER"),
    (["run", "json:dumps", "--variant", "dropout", "--param", "p=3"], "p=3, but should be a number in [0, 1]"),
    (["run"], "the following arguments are required: TARGET"),
    (["frobnicate"], "invalid choice"),
    (["verify", "--config", "{tmp}/missing.toml"], "no such file"),
    (["verify", "--reference", "--target", "numpy:dropout"], "--target and --reference: give one"),
    (["verify", "--reference", "--config", "{file}"], "--config and --reference: give one"),
]


@pytest.mark.parametrize("args,needle", USAGE_ERRORS, ids=[" ".join(a)[:60] for a, _ in USAGE_ERRORS])
def test_usage_errors_are_one_line_exit_2_before_sampling(args, needle, capsys, tmp_path, a_file, no_sampling):
    args = [a.replace("{file}", str(a_file)).replace("{tmp}", str(tmp_path)) for a in args]
    assert main(args) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert needle in err, err
    assert err.startswith("dropverify: error: ")
    assert not err[len("dropverify: error: "):].startswith(("dropverify", "error"))  # no doubled prefix
    assert "\n" not in err and "Traceback" not in err
    assert not list(tmp_path.glob("**/*.md")) and not list(tmp_path.glob("**/*.json"))


def test_progress_without_a_tty_is_one_line_per_finished_check_with_times(capsys, monkeypatch):
    """Issue 16: a CI log showed one line per target, silent for minutes in between; now each
    check's line comes as it finishes, with its own time and the run's."""
    import dropverify.cli as cli
    clock = iter([100.0, 100.0, 104.2, 112.8, 113.0, 113.5, 120.0])
    monkeypatch.setattr(cli.time, "perf_counter", lambda: next(clock))
    progress = cli._progress(quiet=False)
    assert cli._progress(quiet=True) is None
    for call in [("torch:Dropout: drop_rate_matches_by_binomial", 0, 10),
                 ("torch:Dropout: multiplier_values_exact", 1, 10),
                 ("numpy:dropout: invalid_p_rejected", 9, 10),
                 ("done", 10, 10),
                 ("1 target(s) in a worker with {'KERAS_BACKEND': 'jax'}", 0, 1)]:
        progress(*call)
    assert capsys.readouterr().err.splitlines() == [
        "dropverify: [ 1/10] torch:Dropout: drop_rate_matches_by_binomial 4.2 s (total 4.2 s)",
        "dropverify: [ 9/10] torch:Dropout: multiplier_values_exact 8.6 s (total 12.8 s)",
        "dropverify: [10/10] numpy:dropout: invalid_p_rejected 0.2 s (total 13.0 s)",
        "dropverify: 10/10 checks done in 13.0 s",
        "dropverify: 1 target(s) in a worker with {'KERAS_BACKEND': 'jax'} (started at 13.5 s)"]


def test_version_and_python_dash_m(capsys):
    assert main(["--version"]) == 0
    from importlib.metadata import version
    assert capsys.readouterr().out.strip() == f"dropverify {version('dropverify')}"
    code, out, err = run_cli("--version")
    assert code == 0 and out.strip() == f"dropverify {version('dropverify')}"


def test_list_names_variants_checks_targets_and_result_names(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "dropblock_2d" in out and "drop_map_matches_theory_by_binomial" in out and "numpy:<variant>" in out
    assert "masks_independent_along_axisK_by_fisher" in out and "multiplier_values_exact[transposed]" in out


def test_list_params_shows_ranges_defaults_conventions_and_probe_shape(capsys):
    assert main(["list", "--params"]) == 0
    out = capsys.readouterr().out
    block = out[out.index("  dropblock_2d"):out.index("  dropblock_3d")]
    for needle in ("block_size", "share_channels", "seed_region", "gamma_rule", "'valid'", "'paper'",
                   "a number in [0, 1]", "probe shape ("):
        assert needle in block, needle
    depth = out[out.index("  stochastic_depth "):out.index("  stochastic_depth_network")]
    assert "mode" in depth and "'row', 'batch'" in depth and "scaling" in depth


@pytest.mark.parametrize("name,check", [
    ("masks_independent_along_axis1_by_fisher", "masks_independent_along_axes_by_fisher"),
    ("masks_independent_along_axis0_by_cross_product_t_test", "masks_independent_along_axes_by_fisher"),
    ("multiplier_values_exact[transposed]", "multiplier_values_exact"),
    ("masks_fresh_across_calls_by_cross_product_t_test", "masks_fresh_across_calls_by_fisher"),
    ("drop_rate_matches_by_binomial", "drop_rate_matches_by_binomial"),
])
def test_report_result_names_map_to_the_check_that_produces_them(name, check):
    from dropverify.checknames import producing_check
    assert producing_check(name) == check


def test_every_result_name_in_the_committed_reports_is_accepted_by_check():
    from dropverify.checknames import producing_check
    root = Path(__file__).resolve().parents[1] / "reports"
    names = {r["check"] for f in root.glob("**/*.json") if f.name not in ("index.json", "timings.json")
             for r in json.loads(f.read_text()).get("results", [])}
    assert len(names) > 30
    for name in names:
        producing_check(name)


def test_builtin_with_params_dtype_and_several_targets_share_one_family(tmp_path):
    out = tmp_path / "rep"
    code, stdout, err = run_cli("run", "numpy:dropout", "numpy:spatial_dropout_2d", "--param", "p=0.2",
                                "--shape", "16,8,4,4", "--dtype", "float32", "--out", str(out), *FAST,
                                "--check", "multiplier_values_exact[transposed]")
    assert code == 0, stdout + err
    index = json.loads((out / "index.json").read_text())
    assert [t["target"] for t in index["targets"]] == ["numpy:dropout[float32]", "numpy:spatial_dropout_2d[float32]"]
    assert all(t["params"]["p"] == 0.2 and t["probe_shape"] == [16, 8, 4, 4] for t in index["targets"])
    # one family: two statistical results (one rate check per target), each designed at alpha / 2
    assert index["run"]["statistical_results"] == 2 and index["run"]["alpha_per_result"] == pytest.approx(5e-4)
    doc = json.loads((out / "numpy_dropout_float32.json").read_text())
    assert {r["check"] for r in doc["results"]} >= {"drop_rate_matches_by_binomial",
                                                    "multiplier_values_exact[transposed]"}
    # not a TTY: one progress line per check as it finishes, on stderr
    import re
    progress = [ln for ln in err.splitlines() if ln.startswith("dropverify: [")]
    assert [re.sub(r" [0-9.]+ s \(total [0-9.]+ s\)$", "", ln) for ln in progress] == [
        "dropverify: [1/4] numpy:dropout[float32]: drop_rate_matches_by_binomial",
        "dropverify: [2/4] numpy:dropout[float32]: multiplier_values_exact",
        "dropverify: [3/4] numpy:spatial_dropout_2d[float32]: drop_rate_matches_by_binomial",
        "dropverify: [4/4] numpy:spatial_dropout_2d[float32]: multiplier_values_exact"], err


def test_builtin_third_party_target_takes_any_parameters_and_shape(tmp_path):
    """The issue's example: timm's DropBlock at the user's own block size and map size."""
    pytest.importorskip("timm")
    out = tmp_path / "rep"
    code, stdout, err = run_cli("run", "timm:DropBlock2d", "--variant", "dropblock_2d", "--param", "p=0.1",
                                "--param", "block_size=7", "--shape", "8,4,14,14", "--max-calls", "30",
                                "--check", "dropped_set_is_union_of_blocks", "--out", str(out), "--quiet")
    assert code in (0, 1) and "Traceback" not in err, stdout + err
    index = json.loads((out / "index.json").read_text())
    assert index["targets"] and all(t["params"]["block_size"] == 7 and t["params"]["p"] == 0.1
                                    and t["probe_shape"] == [8, 4, 14, 14] for t in index["targets"])


USER_LAYERS = textwrap.dedent('''
    import numpy as np
    from dropverify.variants import variant_class

    Dropout = variant_class("dropout")

    class Halved(Dropout):
        def scale(self):
            return 0.5 / (1 - self.p)

    class Crashes(Dropout):
        def forward(self, x):
            raise RuntimeError("kernel exploded")

    def good(p):
        return Dropout(p=p)

    def bad(p):
        return Halved(p=p)

    def crashes(p):
        return Crashes(p=p)

    def wrong_type(p):
        return "not a layer"
''')


def test_run_user_factory_pass_fail_error_and_report(tmp_path):
    (tmp_path / "mylayers.py").write_text(USER_LAYERS)
    report = tmp_path / "out" / "good.md"
    code, out, err = run_cli("run", "mylayers:good", "--variant", "dropout", "--param", "p=0.2",
                             "--shape", "16,8,4,4", "--report", str(report), *FAST, cwd=tmp_path)
    assert code == 0, out + err
    assert report.exists() and report.with_suffix(".json").exists()
    assert (tmp_path / "out" / "good.timings.json").exists()
    doc = json.loads(report.with_suffix(".json").read_text())
    assert doc["verdict"] == "PASS" and doc["params"] == {"p": 0.2}
    assert doc["run"]["command"].startswith("dropverify run mylayers:good --variant dropout")
    code, out, err = run_cli("run", "mylayers:bad", "--variant", "dropout", "--shape", "16,8,4,4",
                             "--check", "multiplier_values_exact", cwd=tmp_path)
    assert code == 1 and "FAIL multiplier_values_exact" in out
    # a crash inside the target is an ERROR verdict, never a traceback
    code, out, err = run_cli("run", "mylayers:crashes", "--variant", "dropout", "--shape", "16,8", *FAST,
                             "--junit-xml", "crash.xml", cwd=tmp_path)
    assert code == 1 and "ERROR" in out and "kernel exploded" in out and "Traceback" not in out + err
    junit = (tmp_path / "crash.xml").read_text()
    assert '<error message="' in junit and "kernel exploded" in junit and 'errors="1"' in junit
    code, out, err = run_cli("run", "mylayers:wrong_type", "--variant", "dropout", cwd=tmp_path)
    assert code == 2 and "should return a torch nn.Module" in err and "Traceback" not in err
    # verify --target user:MODULE:FACTORY together with a built-in, one family
    code, out, err = run_cli("verify", "--target", "user:mylayers:good", "--target", "numpy:zoneout",
                             "--variant", "dropout", "--out", str(tmp_path / "both"), *FAST, cwd=tmp_path)
    assert code == 0, out + err
    assert "PASS         user:mylayers:good" in out and "PASS         numpy:zoneout" in out


def test_internal_error_is_one_line_exit_1(monkeypatch, capsys):
    import dropverify.cli as cli

    def broken(args, command):
        raise KeyError("unexpected")
    monkeypatch.setitem(cli.COMMANDS, "list", broken)
    assert main(["list"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("dropverify: internal error: KeyError") and "\n" not in err


def test_verify_writes_reports_and_same_seed_gives_same_bytes(tmp_path):
    a, b = tmp_path / "a" / "rep", tmp_path / "b" / "rep"
    for out in (a, b):
        out.parent.mkdir()
        code, stdout, err = run_cli("verify", "--variant", "dropout", "--variant", "spatial_dropout_1d",
                                    "--out", "rep", "--seed", "5", "--max-calls", "300",
                                    "--check", "drop_rate_matches_by_binomial", "--check", "multiplier_values_exact",
                                    cwd=out.parent)
        assert code == 0, stdout + err
    assert (a / "index.md").exists() and (a / "numpy_dropout.md").exists() and (a / "img").is_dir()
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert Path("timings.json") in files
    for rel in files:  # every tracked file byte-identical; wall-clock facts only in timings.json
        if rel.name != "timings.json":
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    timings = json.loads((a / "timings.json").read_text())
    assert timings["kind"] == "timings" and timings["timestamp"][:2] == "20"
    assert "seconds" not in (a / "numpy_dropout.json").read_text()
    assert "Command: `dropverify verify --variant dropout" in (a / "index.md").read_text()
    md = (a / "numpy_dropout.md").read_text()
    assert "| check | verdict | estimate | CI | expected ± margin | n | p (seq) | p (Holm) | MDD |" in md
    assert not list(a.glob("**/*.tmp"))


def test_verify_without_a_config_needs_reference_to_verify_every_reference_variant(tmp_path):
    (tmp_path / ".git").mkdir()  # a repository without [tool.dropverify]
    fast = ("--out", "rep", "--max-calls", "30", "--check", "same_seed_reproduces")
    code, out, err = run_cli("verify", *fast, cwd=tmp_path)
    assert code == 2 and not (tmp_path / "rep").exists(), out + err
    assert err.strip() == ("dropverify: error: no pyproject.toml with a [tool.dropverify] table (or dropverify.toml) "
                           "here or above: list your layers under [tool.dropverify], or pass --reference to verify "
                           "the reference variants")
    code, out, err = run_cli("verify", "--reference", *fast, cwd=tmp_path)
    assert code == 0, out + err
    from dropverify.variants import variant_names
    index = json.loads((tmp_path / "rep" / "index.json").read_text())
    assert [t["target"] for t in index["targets"]] == [f"numpy:{v}" for v in variant_names()]


README = Path(__file__).resolve().parents[1] / "README.md"
USAGE = Path(__file__).resolve().parents[1] / "docs" / "usage.md"
README_COMMANDS = [  # the CLI examples of the README and docs/usage.md, each checked to be there verbatim
    "dropverify run mylayers:make --variant dropout --param p=0.2 --shape 16,8,4,4 --max-calls 2000 --report reports/mine.md",
    "dropverify run timm:DropBlock2d --param p=0.1 --param block_size=7 --shape 16,8,14,14 --max-calls 2000",
    "dropverify run torch:Dropout2d keras:SpatialDropout2D --param p=0.2 --dtype float32 --shape 16,8,4,4 --max-calls 2000 --out reports/",
]


def test_readme_commands_resolve_before_sampling(tmp_path, monkeypatch):
    """Every CLI example of the README names real targets, parameters and shapes: each is
    planned and validated in full (everything up to sampling)."""
    import re
    import shlex

    import dropverify.cli as cli
    for mod in ("torch", "timm", "keras"):
        pytest.importorskip(mod)
    text = README.read_text() + USAGE.read_text()
    factory = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if b.startswith("# mylayers.py"))
    (tmp_path / "mylayers.py").write_text(factory)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    planned = []
    monkeypatch.setattr(cli, "_execute", lambda plan, args, command: planned.append(plan) or 0)
    for command in README_COMMANDS:
        assert command in text, command
        assert main(shlex.split(command)[1:]) == 0, command
    assert [len(p.specs) for p in planned] == [1, 2, 3]
    assert planned[1].specs[0].params["block_size"] == 7 and planned[1].specs[0].shape == (16, 8, 14, 14)


def test_readme_config_is_the_example_projects():
    import re
    block = next(b for b in re.findall(r"```toml\n(.*?)```", USAGE.read_text(), re.S) if "[tool.dropverify]" in b)
    example = Path(__file__).resolve().parents[1] / "examples" / "project" / "pyproject.toml"
    assert block.strip() in example.read_text()


def test_out_folder_with_a_trailing_slash_is_named_once(tmp_path):
    code, out, err = run_cli("verify", "--reference", "--variant", "dropout", "--max-calls", "200", "--time-budget", "0",
                             "--check", "invalid_p_rejected", "--out", "rep/", cwd=tmp_path)
    assert code == 0 and "reports in rep/ written" in out and "rep//" not in out, out + err


def test_a_missing_framework_names_the_extra_to_install(monkeypatch):
    import importlib

    from dropverify import targets
    from dropverify.errors import TargetUnavailable
    real = importlib.import_module

    def no_torch(name, *args, **kw):
        if name == "dropverify.targets.torch_nn":
            raise ImportError("No module named 'torch'")
        return real(name, *args, **kw)

    monkeypatch.setattr(importlib, "import_module", no_torch)
    with pytest.raises(TargetUnavailable, match=r'pip install -e "\.\[torch\]"'):
        targets.adapter_module("torch")
