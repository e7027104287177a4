"""The pytest plugin, driven through pytester (each run a subprocess, small budgets)."""
from __future__ import annotations

import json
import subprocess
import sys

pytest_plugins = ["pytester"]

LAYERS = '''
import numpy as np
from dropverify.variants import variant_class

Dropout = variant_class("dropout")


class Sticky(Dropout):
    """Draws the same mask on every call (an RNG that never advances)."""

    def draw_keep(self, shape):
        return np.random.default_rng(0).random(self.mask_shape(shape)) >= self.p


def good(p):
    return Dropout(p=p)


def sticky(p):
    return Sticky(p=p)


FEW = ["drop_rate_matches_by_binomial", "masks_fresh_across_calls_by_fisher", "invalid_p_rejected"]
'''


def _run(pytester, *args: str):
    pytester.makepyfile(mylayers=LAYERS)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


def test_fixture_passes_a_good_layer_and_fails_a_broken_one_with_seed_and_reproduction(pytester):
    pytester.makepyfile(test_layers='''
        import pytest
        from mylayers import FEW, good, sticky

        @pytest.mark.dropverify(seed=3, max_calls=400)
        def test_good(dropverify):
            report = dropverify(good, "dropout", p=0.2, shape=(16, 8, 4, 4), checks=FEW)
            assert report.ok and report.seed == 3

        @pytest.mark.dropverify(seed=3, max_calls=400)
        def test_sticky(dropverify):
            dropverify(sticky, "dropout", {"p": 0.2}, shape=(16, 8, 4, 4), checks=FEW)  # USER LINE

        @pytest.mark.dropverify(colour="red")
        def test_bad_marker(dropverify):
            pass
    ''')
    result = _run(pytester)
    result.assert_outcomes(passed=1, failed=1, errors=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines([
        "*# USER LINE",
        "E  *dropverify.CheckFailed: user:mylayers:sticky dropout(p=0.2): 2 FAIL; seed 3",
        "E  *cause: the same mask on later calls (lag 1): the RNG does not advance  *masks_fresh_across_calls_by_fisher*",
        "E  *FAIL masks_fresh_across_calls_by_fisher ?user:mylayers:sticky?: estimate 4.1540, CI 4.1540 .. 4.1540, "
        "expected 0.0000 ± 0.2000, p(Holm)=0, n=5 independent steps — identical masks (lag 1*",
        "E  *seed 3 (family-wise false-alarm rate 0.001)",
        "E  *reproduce: dropverify run mylayers:sticky --variant dropout --param p=0.2 --shape 16,8,4,4 --seed 3 "
        "--max-calls 400 --check drop_rate_matches_by_binomial --check masks_fresh_across_calls_by_fisher "
        "--check invalid_p_rejected",
        "*dropverify*",
        "2 verification(s) in 2 test(s), profile default, seed 3: 1 PASS, 1 FAIL",
        "check results: 4 PASS, 2 FAIL",
        "  FAIL * test_layers.py::test_sticky  user:mylayers:sticky dropout(p=0.2): PASS=1 FAIL=2",
        "    reproduce: dropverify run mylayers:sticky *",
    ])
    # __tracebackhide__: the traceback ends in the user's frame, no frame of the plugin or the API
    assert "pytest_plugin.py" not in out and "dropverify/api.py" not in out
    assert "unknown option(s) ['colour']" in out
    result.stdout.fnmatch_lines(["FAILED test_layers.py::test_sticky - dropverify.CheckFailed: *"])


def test_every_verification_counted_helper_and_api_included(pytester):
    pytester.makepyfile(test_mixed='''
        import dropverify
        from dropverify.checks import Settings
        from dropverify.testing import assert_honours_contract
        from mylayers import FEW, good

        SMALL = Settings(max_calls=1200)  # the shared stream holds 133 freshness steps of 9 calls

        def test_helper():
            assert_honours_contract(good, "dropout", {"p": 0.2}, shape=(16, 8, 4, 4), settings=SMALL, checks=FEW)

        def test_api_twice():
            for p in (0.1, 0.3):
                dropverify.verify("numpy:dropout", p=p, shape=(16, 8, 4, 4), settings=SMALL, checks=FEW).assert_ok()
    ''')
    result = _run(pytester)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*dropverify*",
                                 "3 verification(s) in 2 test(s), profile default, seed 20261126: 3 PASS",
                                 "check results: 9 PASS"])


SETTINGS_PROBE = '''
    import pytest
    from mylayers import good

    def test_settings(dropverify):
        report = dropverify(good, "dropout", p=0.2, shape=(8, 4), checks=["invalid_p_rejected"])
        s = report.run.settings
        print("SETTINGS", s.max_calls, s.power, s.alpha, s.seed)

    @pytest.mark.dropverify(max_calls=77, seed=5)
    def test_marker_wins(dropverify):
        report = dropverify(good, "dropout", p=0.2, shape=(8, 4), checks=["invalid_p_rejected"])
        s = report.run.settings
        print("MARKER", s.max_calls, s.power, s.alpha, s.seed)
'''


def test_profiles_options_and_marker_precedence(pytester):
    pytester.makepyfile(test_probe=SETTINGS_PROBE)
    quick = _run(pytester, "-s", "--dropverify-profile", "quick")
    quick.assert_outcomes(passed=2)
    quick.stdout.fnmatch_lines(["*SETTINGS 1000 0.9 0.001 20261126*", "*MARKER 77 0.9 0.001 5*",
                                "*profile quick*"])
    override = _run(pytester, "-s", "--dropverify-profile", "thorough", "--dropverify-max-calls", "500",
                    "--dropverify-seed", "9")
    override.stdout.fnmatch_lines(["*SETTINGS 500 0.999 0.0001 9*", "*MARKER 77 0.999 0.0001 5*"])
    pytester.makeini("[pytest]\ndropverify_profile = thorough\n")
    ini = _run(pytester, "-s")
    ini.stdout.fnmatch_lines(["*SETTINGS 100000 0.999 0.0001 20261126*"])
    bad = _run(pytester, "--dropverify-profile", "fast")
    assert bad.ret == 4  # usage error
    bad.stderr.fnmatch_lines(["*--dropverify-profile*invalid choice*'fast'*"])


def test_report_dir_gets_each_verifications_report(pytester):
    pytester.makepyfile(test_rep='''
        from mylayers import good

        def test_one(dropverify):
            dropverify(good, "dropout", p=0.2, shape=(16, 8), checks=["invalid_p_rejected"])
            dropverify(good, "dropout", p=0.3, shape=(16, 8), checks=["invalid_p_rejected"])
    ''')
    result = _run(pytester, "--dropverify-report", "out")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["reports written under out (2 folder(s))"])
    first, second = pytester.path / "out" / "test_rep.py_test_one", pytester.path / "out" / "test_rep.py_test_one-2"
    for folder, p in ((first, 0.2), (second, 0.3)):
        index = json.loads((folder / "index.json").read_text())
        assert index["ok"] is True
        doc = json.loads((folder / "user_mylayers_good.json").read_text())
        assert doc["params"]["p"] == p and (folder / "user_mylayers_good.md").is_file()
    # a report folder that cannot be written: the tests still pass, the summary says so
    (pytester.path / "blocked").write_text("a file, not a folder")
    blocked = _run(pytester, "--dropverify-report", "blocked")
    blocked.assert_outcomes(passed=1)
    blocked.stdout.fnmatch_lines(["report NOT written: blocked/test_rep.py_test_one: *",
                                  "report NOT written: blocked/test_rep.py_test_one-2: *"])


def test_xdist_two_workers_aggregate_the_summary(pytester):
    pytester.makepyfile(test_par='''
        import pytest
        from mylayers import FEW, good, sticky

        @pytest.mark.parametrize("p", [0.1, 0.2, 0.3])
        def test_good(dropverify, p):
            dropverify(good, "dropout", p=p, shape=(16, 8, 4, 4), checks=FEW)

        def test_sticky(dropverify):
            dropverify(sticky, "dropout", p=0.2, shape=(16, 8, 4, 4), checks=FEW)
    ''')
    result = _run(pytester, "-n", "2", "--dropverify-profile", "quick")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*2 workers*",
                                 "4 verification(s) in 4 test(s), profile quick, seed 20261126: 3 PASS, 1 FAIL",
                                 "check results: 10 PASS, 2 FAIL",
                                 "  FAIL * test_par.py::test_sticky  user:mylayers:sticky dropout(p=0.2): PASS=1 FAIL=2"])


def test_plugin_import_is_light():
    code = "import dropverify.pytest_plugin, sys; print('numpy' in sys.modules, 'scipy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split()[1] == "False"


BAD_OPTIONS = [
    (["--dropverify-seed", "-1"], "argument --dropverify-seed: -1, but should be an integer >= 0"),
    (["--dropverify-seed", "x"], "argument --dropverify-seed: 'x', but should be an integer >= 0"),
    (["--dropverify-alpha", "5"], "argument --dropverify-alpha: 5, but should be a number in (0, 1)"),
    (["--dropverify-alpha", "0"], "argument --dropverify-alpha: 0, but should be a number in (0, 1)"),
    (["--dropverify-alpha", "nan"], "argument --dropverify-alpha: nan, but should be a number in (0, 1)"),
    (["--dropverify-max-calls", "2"], "argument --dropverify-max-calls: 2, but should be an integer >= 4"),
]


def test_out_of_range_options_are_one_line_usage_errors(pytester):
    """Issue 16: --dropverify-seed -1 / --dropverify-alpha 5 were accepted, then every
    verification ERRORed or raised; now pytest stops with a usage error (exit 4), one line."""
    pytester.makepyfile(test_probe=SETTINGS_PROBE)
    for args, line in BAD_OPTIONS:
        result = _run(pytester, *args)
        assert result.ret == 4, (args, result.stdout.str(), result.stderr.str())
        errors = [ln for ln in result.stderr.lines if "error:" in ln]
        assert len(errors) == 1 and errors[0].endswith(line), (args, result.stderr.str())
        assert "Traceback" not in result.stderr.str() + result.stdout.str()
    edge = _run(pytester, "-s", "--dropverify-seed", "0", "--dropverify-alpha", "0.5", "--dropverify-max-calls", "4")
    edge.assert_outcomes(passed=2)
    edge.stdout.fnmatch_lines(["*SETTINGS 4 0.99 0.5 0*"])


def test_out_of_range_marker_values_fail_the_test_in_one_line(pytester):
    pytester.makepyfile(test_marks='''
        import pytest
        from mylayers import good

        @pytest.mark.dropverify(seed=-1)
        def test_seed(dropverify):
            dropverify(good, "dropout", p=0.2, shape=(8, 4), checks=["invalid_p_rejected"])

        @pytest.mark.dropverify(alpha=5)
        def test_alpha(dropverify):
            dropverify(good, "dropout", p=0.2, shape=(8, 4), checks=["invalid_p_rejected"])
    ''')
    result = _run(pytester)
    result.assert_outcomes(errors=2)
    out = result.stdout.str()
    assert "dropverify marker: seed=-1, but should be an integer >= 0" in out
    assert "dropverify marker: alpha=5, but should be in (0, 1)" in out
    assert "verification(s)" not in out  # nothing ran
