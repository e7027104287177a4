"""Sweeps: the covering design covers, seeds depend on the configuration only (so 1 worker,
2 worker processes and Dask give identical rows), the alpha spending sums to at most its
share, the reports carry a runnable reproduction, and the single-configuration default is no
longer p = 0.5. The corner-case mutants are in tests/meta/test_sweep_mutants.py."""
from __future__ import annotations

import itertools
import json
import math
import shutil
import subprocess
import sys
import time

import pytest

from dropverify.checks import Settings
from dropverify.sweep import covering, run_sweep, write_sweep
from dropverify.sweep.driver import ALPHA_B, build_space, shrink_starts, spent_alpha
from dropverify.sweep.space import Axis, Config, Space

SMALL = {"dtype": "float64", "layout": "contiguous", "shape": (8, 4, 4)}


def _space(sizes):
    axes = [Axis(f"a{i}", tuple(range(n))) for i, n in enumerate(sizes)]
    return Space(axes, Config(p=0.1))


@pytest.mark.parametrize("sizes", [(7, 4, 3, 4, 2), (3, 3), (5, 2, 2, 2, 2, 2)])
def test_strength_one_covers_every_value_and_two_every_pair(sizes):
    space = _space(sizes)
    rows1 = [dict(c.params) for c in covering(space, 1)]
    for i, n in enumerate(sizes):
        assert {r[f"a{i}"] for r in rows1} == set(range(n))
    rows2 = [dict(c.params) for c in covering(space, 2)]
    for i, j in itertools.combinations(range(len(sizes)), 2):
        seen = {(r[f"a{i}"], r[f"a{j}"]) for r in rows2}
        assert seen == set(itertools.product(range(sizes[i]), range(sizes[j])))
    assert dict(covering(space, 2)[0].params) == {f"a{i}": 0 for i in range(len(sizes))}  # all-simplest first


def test_alpha_spending_sums_below_its_share():
    total = sum(spent_alpha(1e-3 * ALPHA_B, i) for i in range(1, 200_000))
    assert total <= 1e-3 * ALPHA_B
    assert total > 0.999 * 1e-3 * ALPHA_B


def test_shrinking_starts_from_the_strongest_failure_of_each_kind():
    """One start per distinct set of failing checks, exact FAILs and small p-values first: the
    weak, small failure (a 1.6 % biased mean at p = 0.9 on one sample) is not shrunk ahead of a
    layer that drops nothing at p = 0.001."""
    def row(index, p, shape, fails):
        results = [{"check": c, "verdict": "FAIL", "p_value": pv, "statistical": pv is not None} for c, pv in fails]
        results.append({"check": "eval_mode_deterministic_and_exact", "verdict": "PASS", "p_value": None,
                        "statistical": False})
        return {"index": index, "config": Config(p=p, shape=shape), "results": results}
    weak = row(0, 0.9, (1, 8, 4, 4), [("expectation_matches_by_t_test", 1e-5)])
    strong = row(1, 0.001, (13, 7, 3, 3), [("drop_rate_matches_by_binomial", 1e-40), ("masks_fresh", 1e-9)])
    strong_big = row(2, 0.999, (16, 8, 4, 3), [("drop_rate_matches_by_binomial", 1e-30), ("masks_fresh", 1e-8)])
    exact = row(3, 0.3, (64, 8, 4, 4), [("multiplier_values_exact", None)])
    assert shrink_starts([weak, strong, strong_big]) == [strong["config"], weak["config"]]
    assert shrink_starts([weak, strong, exact], limit=3) == [exact["config"], strong["config"], weak["config"]]
    assert shrink_starts([weak], limit=2) == [weak["config"]]


def test_configuration_seed_depends_on_configuration_and_master_only():
    a = Config(p=0.1, dtype="float16", shape=(4, 4))
    assert a.seed(5) == Config(p=0.1, dtype="float16", shape=(4, 4)).seed(5)
    assert a.seed(5) != a.seed(6) and a.seed(5) != Config(p=0.3, dtype="float16", shape=(4, 4)).seed(5)


def test_space_of_a_torch_layer_has_every_axis():
    pytest.importorskip("torch")
    space = build_space("torch:Dropout", None, {})
    names = {a.name: a.values for a in space.axes}
    assert 0.001 in names["p"] and 0.999 in names["p"] and 0.5 not in names["p"]
    assert set(names["dtype"]) == {"float16", "bfloat16", "float32", "float64"}
    assert "transposed" in names["layout"] and "channels_last" in names["layout"]
    assert any(s[0] == 1 for s in names["shape"])          # batch 1
    assert any(s[-1] != s[-2] for s in names["shape"] if len(s) == 4)  # a non-square map


def _rows(result):
    return [(r["config"].key(), r["verdict"], r["seed"], r["alpha"],  # repr: nan == nan
             tuple((x["check"], x["verdict"], repr(x["estimate"]), repr(x["p_value"])) for x in r["results"]))
            for r in result.rows]


_TINY = dict(fixed=SMALL, strength=1, search=0, large=False, max_calls=300)


def test_one_worker_and_two_worker_processes_give_identical_rows():
    s = Settings(seed=11)
    one = run_sweep("numpy:dropout", None, s, workers=1, **_TINY)
    two = run_sweep("numpy:dropout", None, s, workers=2, **_TINY)
    assert _rows(one) == _rows(two)
    assert one.verdict != "FAIL" and len(one.rows) == len(build_space("numpy:dropout", None, SMALL).axis("p").values)


@pytest.mark.slow  # ~20 s (a local cluster and a scheduler process start): `make test-slow`, run by .ci/run
def test_dask_local_cluster_and_a_real_scheduler_give_the_same_rows(tmp_path):
    pytest.importorskip("distributed")
    s = Settings(seed=11)
    serial = run_sweep("numpy:dropout", None, s, workers=1, **_TINY)
    local = run_sweep("numpy:dropout", None, s, workers=2, scheduler="local", **_TINY)
    assert _rows(serial) == _rows(local)
    dask = shutil.which("dask", path=str(__import__("pathlib").Path(sys.executable).parent))
    if dask is None:
        pytest.skip("the dask command is not installed beside this python")
    sched_file = tmp_path / "scheduler.json"
    sched = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                              "--scheduler-file", str(sched_file)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    workers = None
    try:
        for _ in range(300):
            if sched_file.exists() and sched_file.stat().st_size:
                break
            time.sleep(0.1)
        address = json.loads(sched_file.read_text())["address"]
        workers = subprocess.Popen([dask, "worker", address, "--nworkers", "2", "--nthreads", "1",
                                    "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        remote = run_sweep("numpy:dropout", None, s, workers=2, scheduler=address, **_TINY)
        assert _rows(serial) == _rows(remote)
    finally:
        for proc in (workers, sched):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)


def test_report_has_table_figure_json_and_a_runnable_reproduction(tmp_path):
    from dropverify.cli import main
    result = run_sweep("mutant:sweep_float16_no_rescale", None, Settings(seed=3),
                       fixed={"layout": "contiguous", "shape": (8, 4, 4)}, strength=1, search=0, large=False,
                       max_calls=300, shrink_rounds=2)
    assert result.verdict == "FAIL" and result.minimal and result.minimal[0]["confirmed"]
    assert result.minimal[0]["config"].dtype == "float16"
    paths = write_sweep(result, tmp_path / "sweep.md")
    text = (tmp_path / "sweep.md").read_text()
    assert "## Configurations x properties" in text and "## Minimal failing configurations" in text
    assert (tmp_path / "sweep.png").stat().st_size > 1000
    data = json.loads((tmp_path / "sweep.json").read_text())
    assert data["verdict"] == "FAIL" and data["minimal_failing"][0]["config"]["dtype"] == "float16"
    assert not list(tmp_path.glob("*.tmp")) and len(paths) == 4  # + the untracked sweep.timings.json
    command = data["minimal_failing"][0]["reproduce"].split()
    assert command[:3] == ["dropverify", "run", "mutant:sweep_float16_no_rescale"]
    assert "--max-calls 300" in data["minimal_failing"][0]["reproduce"]
    assert main(command[1:] + ["--quiet"]) == 1  # the reproduction FAILs again


def test_default_single_run_is_not_blind_to_a_scale_by_one_over_p_or_a_keep_drop_swap():
    """No options: the default p is asymmetric, so 1/p != 1/(1-p) and a swap changes the rate."""
    from dropverify.variants import get_contract
    from dropverify.mutants import all_mutants, mutant_spec
    from dropverify.runner import verify
    assert get_contract("dropout").validate_params({})["p"] != 0.5
    wanted = {"dropout_scale_p": "multiplier_values_exact", "dropout_keep_drop_swapped": "drop_rate_matches_by_binomial"}
    for m in all_mutants():
        if m.name in wanted:
            spec = mutant_spec(m)
            spec = type(spec)(**{**spec.__dict__, "params": {}})  # no parameters given: the contract's defaults
            run = verify([spec], Settings(), checks=[wanted[m.name]])
            assert any(r.verdict == "FAIL" for r in run.targets[0].results), m.name


def test_sweep_cli_refuses_bad_input_before_sampling(capsys):
    from dropverify.cli import main
    assert main(["run", "numpy:dropout", "numpy:spatial_dropout_2d", "--sweep"]) == 2
    assert "--sweep takes one TARGET" in capsys.readouterr().err
    assert main(["run", "numpy:dropout", "--sweep", "--workers", "0"]) == 2
    assert main(["run", "numpy:dropout", "--workers", "2"]) == 2
    assert main(["run", "numpy:dropout", "--sweep", "--param", "p=1.5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 3 and "Traceback" not in err


@pytest.mark.parametrize("args,needle", [
    (["--junit-xml", "{tmp}/j.xml"], "--junit-xml applies to runs without --sweep"),
    (["--summary", "{tmp}/s.md"], "--summary applies to runs without --sweep"),
    (["--report", "{tmp}/s.txt"], "--report '{tmp}/s.txt', but should end in .md"),
    (["--report", "{file}/s.md"], "is a file, not a folder"),
])
def test_sweep_cli_refuses_outputs_it_cannot_write_before_sampling(args, needle, tmp_path, capsys, monkeypatch):
    """--junit-xml / --summary were silently ignored by --sweep, and an unwritable --report
    failed only after the whole sweep had run."""
    import dropverify.sweep as sweep_pkg
    from dropverify.cli import main
    monkeypatch.setattr(sweep_pkg, "run_sweep", lambda *a, **k: pytest.fail("sampling started"))
    (tmp_path / "f").write_text("x")
    fill = {"{tmp}": str(tmp_path), "{file}": str(tmp_path / "f")}
    args = [a.replace("{tmp}", fill["{tmp}"]).replace("{file}", fill["{file}"]) for a in args]
    assert main(["run", "numpy:dropout", "--sweep", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert needle.replace("{tmp}", str(tmp_path)) in err and "\n" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]
