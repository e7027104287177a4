"""The project config ([tool.dropverify]): validation with one-line errors naming the key,
discovery, and the shipped example project run end to end through the CLI."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dropverify.cli import main
from dropverify.config import find_config, load_config
from dropverify.errors import InvalidArgument

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "project"


def write(tmp_path: Path, body: str, name: str = "pyproject.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def test_example_config_loads():
    cfg = load_config(EXAMPLE / "pyproject.toml")
    assert [layer.target for layer in cfg.layers] == ["mylayers:make_dropout", "mylayers:make_channel_dropout"]
    assert cfg.layers[0].shapes == ((64, 32), (8, 16, 5, 5)) and cfg.layers[0].params == {"p": 0.1}
    assert cfg.layers[1].dtypes == ("float32",) and "invalid_p_rejected" in cfg.layers[1].waive
    assert cfg.settings == {"seed": 20261126, "alpha": 1e-3, "max_calls": 4000}
    assert cfg.out_dir() == EXAMPLE / "dropverify-reports"
    assert len(cfg.layers[0].configurations()) == 2


GOOD_LAYER = '[[tool.dropverify.layers]]\ntarget = "numpy:dropout"\n'
BAD_CONFIGS = [
    ("[tool.dropverify]\nspeed = 3\n" + GOOD_LAYER, "[tool.dropverify].speed is not a dropverify key"),
    ("[tool.dropverify]\nseed = 'x'\n" + GOOD_LAYER, "[tool.dropverify].seed = 'x', but should be an integer"),
    ("[tool.dropverify]\nstrict = 1\n" + GOOD_LAYER, "strict = 1, but should be true or false"),
    ("[tool.dropverify]\nmargins = { speed = 1 }\n" + GOOD_LAYER, "margins.speed is not a margin"),
    ("[tool.dropverify]\nmargins = { rate = -1 }\n" + GOOD_LAYER, "margins.rate = -1, but should be a positive"),
    ("[tool.dropverify]\nchecks = ['bogus']\n" + GOOD_LAYER, "names 'bogus', which is not a check"),
    ("[tool.dropverify]\nseed = 1\n", "layers is missing"),
    ('[[tool.dropverify.layers]]\nvariant = "dropout"\n', "layers[0].target = None, but should be MODULE:FACTORY"),
    (GOOD_LAYER + "colour = 'red'\n", "layers[0].colour is not a layer key"),
    (GOOD_LAYER + "shape = [0, 4]\n", "layers[0].shape = [0, 4], but every size should be at least 1"),
    (GOOD_LAYER + "shape = [4, 'a']\n", "should be a list of positive integers"),
    (GOOD_LAYER + "shape = [4]\nshapes = [[4]]\n", "has both shape and shapes"),
    (GOOD_LAYER + "dtype = 'int8'\n", "layers[0].dtype = 'int8', but should be one of float16"),
    (GOOD_LAYER + "params = 3\n", "layers[0].params = 3, but should be a table"),
    (GOOD_LAYER + "waive = { bogus_check = 'why' }\n", "layers[0].waive.bogus_check is not a check name"),
    (GOOD_LAYER + "waive = { invalid_p_rejected = '' }\n", "waive.invalid_p_rejected needs a reason"),
    (GOOD_LAYER + "sweep = 'yes'\n", "layers[0].sweep = 'yes', but should be true or false"),
    (GOOD_LAYER + "device = 'tpu'\n", "layers[0].device = 'tpu', but should be 'cpu' or 'cuda'"),
    ("[tool.dropverify\n", "is not valid TOML"),
]


@pytest.mark.parametrize("body,needle", BAD_CONFIGS, ids=[n[:40] for _, n in BAD_CONFIGS])
def test_config_mistakes_are_one_line_naming_file_and_key(tmp_path, body, needle):
    path = write(tmp_path, body)
    with pytest.raises(InvalidArgument) as info:
        load_config(path)
    assert needle in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("body,needle", [
    ('[tool.dropverify]\n[[tool.dropverify.layers]]\ntarget = "numpy:dropout"\nparams = { p = 3 }\n',
     "p=3, but should be a number in [0, 1]"),
    ('[tool.dropverify]\n[[tool.dropverify.layers]]\ntarget = "mylayers_missing:make"\nvariant = "dropout"\n',
     "cannot import module 'mylayers_missing'"),
    ('[tool.dropverify]\n[[tool.dropverify.layers]]\ntarget = "numpy:dropout"\nshape = [2, 2, 2, 2, 2, 2]\n',
     "input rank=6"),
    ('[tool.dropverify]\n[[tool.dropverify.layers]]\ntarget = "numpy:dropout"\n'
     '[[tool.dropverify.layers]]\ntarget = "numpy:dropout"\n', "numpy:dropout is listed twice"),
    ('[tool.dropverify]\n[[tool.dropverify.layers]]\ntarget = "numpy:dropout"\nsweep = true\n',
     "does not sweep yet"),
])
def test_config_target_mistakes_exit_2_before_sampling(tmp_path, body, needle, capsys, monkeypatch):
    import dropverify.runner as runner
    monkeypatch.setattr(runner, "verify", lambda *a, **k: pytest.fail("sampling started"))
    path = write(tmp_path, body)
    assert main(["verify", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len([ln for ln in err if "error" in ln]) == 1 and needle in err[-1], err


def test_target_options_with_a_config_are_refused(capsys):
    assert main(["verify", "--config", str(EXAMPLE / "pyproject.toml"), "--dtype", "float32"]) == 2
    assert "--dtype applies to --target; the config lists each layer's own" in capsys.readouterr().err


def test_find_config_walks_up_to_the_repository_root(tmp_path):
    (tmp_path / ".git").mkdir()
    write(tmp_path, "[project]\nname = 'x'\n")  # a pyproject without [tool.dropverify] is skipped
    assert find_config(tmp_path) is None
    sub = tmp_path / "src" / "pkg"
    sub.mkdir(parents=True)
    path = write(tmp_path, "[tool.dropverify]\n" + GOOD_LAYER, "dropverify.toml")
    assert find_config(sub) == path


def test_dropverify_toml_uses_the_top_level_table(tmp_path):
    path = write(tmp_path, "seed = 7\n" + GOOD_LAYER.replace("tool.dropverify.", ""), "dropverify.toml")
    cfg = load_config(path)
    assert cfg.settings == {"seed": 7} and cfg.layers[0].target == "numpy:dropout"


def run_cli(*args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    proc = subprocess.run([sys.executable, "-m", "dropverify", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600, env=env)
    return proc.returncode, proc.stdout, proc.stderr


FAST = ["--max-calls", "300", "--check", "drop_rate_matches_by_binomial", "--check", "invalid_p_rejected",
        "--check", "multiplier_values_exact"]


def test_example_project_end_to_end(tmp_path):
    """`dropverify verify` with no target arguments, run inside the example project, verifies
    its three configurations in one family; the waiver shows in the report with its reason."""
    project = tmp_path / "project"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("__pycache__", "dropverify-reports"))
    code, out, err = run_cli("verify", *FAST, "--junit-xml", "ci/junit.xml", cwd=project)
    assert code == 0, out + err
    reports = project / "dropverify-reports"   # the config's `out`
    index = json.loads((reports / "index.json").read_text())
    names = [t["target"] for t in index["targets"]]
    assert names == ["user:mylayers:make_dropout[64x32]", "user:mylayers:make_dropout[8x16x5x5]",
                     "user:mylayers:make_channel_dropout[float32]"]
    assert all(t["verdict"] == "PASS" for t in index["targets"]), index["targets"]
    # one family: the three drop-rate results share alpha = 1e-3 (from the config)
    assert index["run"]["statistical_results"] == 3 and index["run"]["settings"]["alpha"] == 1e-3
    assert index["run"]["settings"]["seed"] == 20261126 and index["run"]["settings"]["max_calls"] == 300
    channel = json.loads((reports / "user_mylayers_make_channel_dropout_float32.json").read_text())
    assert channel["not_applicable"]["invalid_p_rejected"].startswith("waived in pyproject.toml: ChannelDropout clips")
    assert "invalid_p_rejected" not in {r["check"] for r in channel["results"]}
    assert "waived in pyproject.toml" in (reports / "user_mylayers_make_channel_dropout_float32.md").read_text()
    junit = (project / "ci" / "junit.xml").read_text()
    assert junit.count("<testsuite ") == 3 and 'message="not applicable: waived in pyproject.toml' in junit
    progress = [ln for ln in err.splitlines() if ln.startswith("dropverify: [")]  # one per check (the waived not run)
    assert "3 configuration(s) from" in err and len(progress) == 8 and progress[-1].startswith("dropverify: [8/8] ")
    assert sum(": invalid_p_rejected " in ln for ln in progress) == 2
    # the waiver is needed: without it the clipping layer FAILs the check it waives
    code, out, err = run_cli("run", "mylayers:make_channel_dropout", "--variant", "spatial_dropout_2d",
                             "--shape", "16,8,6,6", "--check", "invalid_p_rejected", cwd=project)
    assert code == 1 and "cause: invalid_p_rejected: invalid p accepted=[-0.1, 1.5]" in out, out + err


def test_result_level_waiver_moves_only_that_result(tmp_path):
    path = write(tmp_path, """
        [tool.dropverify]
        max_calls = 200
        checks = ["multiplier_values_exact"]

        [[tool.dropverify.layers]]
        target = "numpy:dropout"
        params = { p = 0.2 }
        shape = [8, 4]
        waive = { "multiplier_values_exact[strided]" = "we never feed strided views" }
    """)
    out = tmp_path / "rep"
    assert main(["verify", "--config", str(path), "--out", str(out), "--quiet"]) == 0
    doc = json.loads((out / "numpy_dropout.json").read_text())
    checks = {r["check"] for r in doc["results"]}
    assert "multiplier_values_exact[contiguous]" in checks and "multiplier_values_exact[strided]" not in checks
    assert doc["not_applicable"]["multiplier_values_exact[strided]"] == \
        "waived in pyproject.toml: we never feed strided views (it was PASS)"


def test_per_layer_margins_apply_to_that_layer_only(tmp_path):
    path = write(tmp_path, """
        [tool.dropverify]
        max_calls = 300
        checks = ["drop_rate_matches_by_binomial"]
        margins = { rate = 0.1 }

        [[tool.dropverify.layers]]
        target = "numpy:dropout"
        params = { p = 0.2 }
        shape = [16, 32]
        margins = { rate = 0.2 }

        [[tool.dropverify.layers]]
        target = "numpy:spatial_dropout_1d"
        params = { p = 0.2 }
    """)
    out = tmp_path / "rep"
    assert main(["verify", "--config", str(path), "--out", str(out), "--quiet"]) == 0
    own = json.loads((out / "numpy_dropout.json").read_text())["results"][0]
    run_wide = json.loads((out / "numpy_spatial_dropout_1d.json").read_text())["results"][0]
    assert own["margin"] == pytest.approx(0.2 * 0.2) and run_wide["margin"] == pytest.approx(0.1 * 0.2)


def test_strict_in_the_config_fails_inconclusive(tmp_path, capsys):
    body = """
        [tool.dropverify]
        max_calls = 30
        checks = ["drop_rate_matches_by_binomial"]
        {strict}
        [[tool.dropverify.layers]]
        target = "numpy:dropout"
        params = {{ p = 0.2 }}
        shape = [16, 32]
    """
    lenient = write(tmp_path, body.format(strict=""), "dropverify.toml")
    assert main(["verify", "--config", str(lenient), "--out", str(tmp_path / "a"), "--quiet"]) == 0
    strict = write(tmp_path, body.format(strict="strict = true"), "strict.toml")
    assert main(["verify", "--config", str(strict), "--out", str(tmp_path / "b"), "--quiet"]) == 1
    assert "NOT OK (--strict: INCONCLUSIVE fails)" in capsys.readouterr().out


MISSPELT = [
    ("[tool.dropverfy]\nseed = 1\n", " (found [tool.dropverfy] in pyproject.toml: a misspelling?)"),
    ("[tools.dropverify]\nseed = 1\n", " (found [tools.dropverify] in pyproject.toml: a misspelling?)"),
    ("[tool.drop-verify]\nseed = 1\n", " (found [tool.drop-verify] in pyproject.toml: a misspelling?)"),
    ("[dropverify]\nseed = 1\n", " (found [dropverify] in pyproject.toml: a misspelling?)"),
    ("[tool.black]\nline-length = 100\n", ""),
]


@pytest.mark.parametrize("body,hint", MISSPELT, ids=[b.split("]")[0][1:] for b, _ in MISSPELT])
def test_verify_with_no_or_a_misspelt_table_is_a_usage_error_not_the_references(tmp_path, monkeypatch, capsys,
                                                                                  body, hint):
    """Issue 16: a misspelt or absent [tool.dropverify] used to verify the reference variants
    silently (exit 0); now it is exit 2 naming the file and the near miss, before any sampling."""
    import dropverify.runner as runner
    (tmp_path / ".git").mkdir()
    write(tmp_path, "[project]\nname = 'x'\n" + body)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(runner, "verify", lambda *a, **k: pytest.fail("sampling started"))
    assert main(["verify"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"dropverify: error: pyproject.toml has no [tool.dropverify] table{hint}: list your layers under "
                   "[tool.dropverify], or pass --reference to verify the reference variants")
    assert main(["verify", "--config", "pyproject.toml"]) == 2
    assert capsys.readouterr().err.strip() == ("dropverify: error: pyproject.toml has no [tool.dropverify] table"
                                               + hint.replace(" in pyproject.toml", ""))


def test_misspelt_dropverify_toml_is_named(tmp_path, monkeypatch, capsys):
    (tmp_path / ".git").mkdir()
    write(tmp_path, "seed = 1\n" + GOOD_LAYER.replace("tool.dropverify.", ""), "dropverfy.toml")
    monkeypatch.chdir(tmp_path)
    assert main(["verify"]) == 2
    assert "(found dropverfy.toml: a misspelling?)" in capsys.readouterr().err


def test_reference_flag_verifies_the_references_beside_a_pyproject_without_the_table(tmp_path, monkeypatch):
    import dropverify.cli as cli
    (tmp_path / ".git").mkdir()
    write(tmp_path, "[project]\nname = 'x'\n")
    monkeypatch.chdir(tmp_path)
    planned = []
    monkeypatch.setattr(cli, "_execute", lambda plan, args, command: planned.append(plan) or 0)
    from dropverify.variants import variant_names
    assert main(["verify", "--reference"]) == 0
    assert [s.name for s in planned[0].specs] == [f"numpy:{v}" for v in variant_names()]
    assert main(["verify", "--reference", "--variant", "dropout"]) == 0
    assert [s.name for s in planned[1].specs] == ["numpy:dropout"]


def test_make_verify_passes_reference():
    """The repository's own pyproject.toml has no [tool.dropverify]: `make verify` says --reference."""
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    line = next(ln for ln in makefile.splitlines() if "$(DV) verify " in ln)
    assert "--reference" in line.split()
