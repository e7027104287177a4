"""Profiles (quick / default / thorough) are defined once, in ``dropverify.settings.PROFILES``, and
mean the same in the CLI (``--quick``, ``--thorough``, ``--profile NAME``), in
``dropverify.verify(profile=...)`` and in the pytest plugin (``--dropverify-profile``); a
reproduction line carries every setting that changes results, so running it gives the same
numbers (issue 25)."""
from __future__ import annotations

import dataclasses
import json
import shlex

import pytest

import dropverify
from dropverify import cli, pytest_plugin
from dropverify.api import settings_for
from dropverify.cliargs import UsageError, settings_from_args
from dropverify.errors import InvalidArgument
from dropverify.reproduce import reproduce_command
from dropverify.settings import DEFAULT_PROFILE, LONG_HORIZON_CALLS, PROFILES, Settings, get_profile


def _cli_settings(argv):
    args = cli.build_parser().parse_args(argv)
    return settings_from_args(args)


def test_default_profile_is_settings_and_every_profile_is_bounded_by_calls():
    assert PROFILES[DEFAULT_PROFILE].settings() == Settings()
    for p in PROFILES.values():
        assert p.time_budget_s is None  # by calls: a time budget on a loaded machine starves checks
        assert p.long_horizon_calls == min(LONG_HORIZON_CALLS, p.max_calls)
    assert [p.max_calls for p in PROFILES.values()] == sorted(p.max_calls for p in PROFILES.values())


def test_long_horizon_calls_named_in_settings_are_the_checks_own():
    from dropverify.checks import longhorizon
    assert LONG_HORIZON_CALLS == longhorizon.HORIZON


@pytest.mark.parametrize("name", list(PROFILES))
def test_cli_api_and_pytest_profiles_make_the_same_settings(name):
    profile = get_profile(name)
    flags = {"quick": [["--quick"]], "thorough": [["--thorough"]]}.get(name, []) + [["--profile", name]]
    for extra in flags:
        assert _cli_settings(["run", "numpy:dropout", *extra]) == profile.settings(), extra
    assert settings_for(None, None, None, name) == profile.settings()
    assert Settings(**pytest_plugin._profile_opts(name)) == profile.settings()


def test_cli_default_is_the_default_profile_and_options_override_a_profile():
    assert _cli_settings(["run", "numpy:dropout"]) == Settings()
    s = _cli_settings(["run", "numpy:dropout", "--quick", "--max-calls", "300", "--time-budget", "7"])
    assert (s.max_calls, s.power, s.time_budget_s) == (300, PROFILES["quick"].power, 7.0)


def test_two_profiles_or_a_profile_and_settings_are_refused():
    with pytest.raises(UsageError, match="give one profile"):
        _cli_settings(["run", "numpy:dropout", "--quick", "--profile", "thorough"])
    with pytest.raises(InvalidArgument, match="give one"):
        dropverify.verify("numpy:dropout", profile="quick", settings=Settings())
    with pytest.raises(InvalidArgument, match="did you mean 'quick'"):
        dropverify.verify("numpy:dropout", profile="quik")


SETTINGS = [
    PROFILES["quick"].settings(seed=3),
    PROFILES["thorough"].settings(seed=0, fault_fraction=0.1),
    Settings(seed=7, alpha=0.01, time_budget_s=20.0).with_margins(rate=0.1, dependence=0.3),
]


@pytest.mark.parametrize("settings", SETTINGS, ids=["quick", "thorough", "budget+margins"])
def test_reproduce_line_parses_back_to_the_same_settings(settings):
    line = reproduce_command("torch:Dropout", "dropout", {"p": 0.3}, (16, 8), settings, "float32")
    argv = shlex.split(line)
    assert argv[:2] == ["dropverify", "run"]
    assert _cli_settings(argv[1:]) == settings, line


def test_reproduce_line_of_a_setting_without_an_option_is_a_python_call():
    s = dataclasses.replace(PROFILES["quick"].settings(seed=3), max_units=50_000)
    line = reproduce_command("numpy:dropout", "dropout", {"p": 0.3}, (16, 8), s)
    assert line.startswith("dropverify.verify('numpy:dropout'") and "max_units=50000" in line
    assert "max_calls=1000" in line and "power=0.9" in line


CHECKS = ["drop_rate_matches_by_binomial", "masks_fresh_across_calls_by_fisher", "multiplier_values_exact"]


def test_running_the_reproduce_line_gives_the_same_numbers(tmp_path, capsys):
    """The pytest fixture's settings (quick profile, its seed) through ``dropverify.verify``; its
    reproduce line run by the CLI writes the same results, number for number."""
    settings = dataclasses.replace(Settings(**pytest_plugin._profile_opts("quick")), seed=5, alpha=0.01,
                                   max_calls=400).with_margins(rate=0.1)
    report = dropverify.verify("numpy:dropout", shape=(16, 8), settings=settings, checks=CHECKS, p=0.3)
    argv = shlex.split(report.reproduce)
    assert argv[:2] == ["dropverify", "run"] and "--power" in argv and "--margin" in argv, report.reproduce
    out = tmp_path / "r.md"
    assert cli.main(argv[1:] + ["--report", str(out), "--quiet"]) == 0, capsys.readouterr()
    doc = json.loads(out.with_suffix(".json").read_text())
    api = report.to_dict()["targets"][0]
    assert doc["run"]["settings"] == api["run"]["settings"]
    assert doc["results"] == api["results"] and len(doc["results"]) >= len(CHECKS)
    assert any(r.get("n") for r in doc["results"])  # statistical results with samples were compared


def test_python_reproduce_line_runs_to_the_same_numbers():
    s = dataclasses.replace(PROFILES["quick"].settings(seed=4), max_calls=300, max_units=40_000)
    report = dropverify.verify("numpy:dropout", shape=(16, 8), settings=s, checks=CHECKS[:2], p=0.2)
    assert report.reproduce.startswith("dropverify.verify(")
    again = eval(report.reproduce[: -len(".assert_ok()")], {"dropverify": dropverify})  # noqa: S307 - our own line
    assert again.to_dict()["targets"][0]["results"] == report.to_dict()["targets"][0]["results"]


def test_usage_doc_lists_every_profile_as_defined():
    from pathlib import Path
    text = (Path(__file__).resolve().parents[1] / "docs" / "usage.md").read_text(encoding="utf-8")
    for p in PROFILES.values():
        assert p.describe() in text, p.describe()


def test_quick_profile_at_the_default_shape_gives_every_statistical_check_samples():
    """Defined by calls, not seconds: however loaded the machine, no check is left at n = 0
    (timings: benchmarks/issue25_api.py -> reports/issue25/api.md)."""
    report = dropverify.verify("numpy:dropout", profile="quick", p=0.3)
    stats = [r for r in report.to_dict()["targets"][0]["results"] if r["statistical"]]
    assert len(stats) >= 10
    empty = [r["check"] for r in stats if not r["n"] or r["estimate"] is None]
    assert not empty, empty
    assert report.run.settings.time_budget_s is None and report.run.settings.max_calls == PROFILES["quick"].max_calls


def test_sweep_reproduce_line_carries_the_sweeps_other_settings():
    from types import SimpleNamespace

    from dropverify.sweep.report import reproduce_command as sweep_line
    from dropverify.sweep.space import Config
    settings = PROFILES["quick"].settings(time_budget_s=30.0).with_margins(rate=0.1)
    result = SimpleNamespace(target="numpy:dropout", variant="dropout", settings=settings, max_calls=4000)
    row = {"config": Config(p=0.2, shape=(16, 8)), "seed": 11, "alpha": 1e-4, "max_calls": 4000,
           "results": [{"check": "drop_rate_matches_by_binomial"}]}
    argv = shlex.split(sweep_line(result, row))
    expected = dataclasses.replace(settings, seed=11, alpha=1e-4, max_calls=4000)
    assert _cli_settings(argv[1:]) == expected, argv
