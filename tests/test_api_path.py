"""One path (issue 25): ``dropverify.verify()`` and every ``dropverify`` command reach the runner
through :mod:`dropverify.pipeline` (names from tables, resolution, capabilities, runner), and the
checks package keeps its names where they are defined (``checks/_core.py`` re-exports none)."""
from __future__ import annotations

import ast
import inspect
import os
from pathlib import Path

import pytest

import dropverify
from dropverify import cli, pipeline
from dropverify.checks import _core
from dropverify.settings import PROFILES

PACKAGE = Path(dropverify.__file__).resolve().parent


@pytest.fixture
def calls(monkeypatch):
    """Record every run_configurations call and return an empty run instead of sampling."""
    seen = []
    real = pipeline.run_configurations

    def record(specs, settings, checks=None, progress=None, *, flags=False, ready=None, workers=1):
        seen.append({"names": [s.name for s in specs], "settings": settings, "checks": checks, "flags": flags,
                     "workers": workers})
        return real(specs, settings, checks=["p_zero_is_exact_identity"], progress=progress, flags=flags,
                    ready=ready, workers=workers)
    monkeypatch.setattr(pipeline, "run_configurations", record)
    import dropverify.api as api
    monkeypatch.setattr(api, "run_configurations", record)
    return seen


def test_cli_and_verify_reach_the_runner_through_the_same_function(calls, tmp_path, capsys):
    report = dropverify.verify("numpy:dropout", shape=(8, 4), profile="quick", seed=3, p=0.3)
    assert cli.main(["run", "numpy:dropout", "--shape", "8,4", "--quick", "--seed", "3", "--param", "p=0.3",
                     "--quiet"]) == 0, capsys.readouterr()
    assert cli.main(["verify", "--reference", "--variant", "dropout", "--quick", "--quiet",
                     "--out", str(tmp_path)]) == 0, capsys.readouterr()
    assert len(calls) == 3
    api_call, run_call, verify_call = calls
    assert api_call["settings"] == run_call["settings"] == PROFILES["quick"].settings(seed=3)
    assert verify_call["settings"] == PROFILES["quick"].settings()
    assert api_call["names"] == run_call["names"] == ["numpy:dropout"]
    assert not api_call["flags"] and run_call["flags"]  # only the messages differ: --layout X / layout='X'
    # the API runs in one process unless given jobs; the command line's run of ONE configuration forks the checks
    # off the shared stream into a second process where there are 2 cores (the same results: tests/test_forked.py)
    assert api_call["workers"] == 1
    assert run_call["workers"] == verify_call["workers"] == (2 if (os.cpu_count() or 1) >= 2 else 1)
    assert report.ok


def test_cli_imports_no_runner_and_resolves_no_target_itself():
    tree = ast.parse((PACKAGE / "cli.py").read_text(encoding="utf-8"))
    tree.body = [n for n in tree.body if not (isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")]
    imported = {(node.module or "") for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "runner" not in imported and "naming" not in imported, imported
    source = inspect.getsource(cli)
    assert "run_configurations" in source and "resolve_configuration" in source


def test_core_of_the_checks_reexports_nothing():
    tree = ast.parse(inspect.getsource(_core))
    defined = {n.name for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    assert set(_core.__all__) <= defined, set(_core.__all__) - defined
    for path in sorted((PACKAGE / "checks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "_core" and node.level == 1:
                names = {a.name for a in node.names}
                assert names <= set(_core.__all__), f"{path.name} imports {sorted(names - set(_core.__all__))} " \
                                                     "from _core, which does not define them"
