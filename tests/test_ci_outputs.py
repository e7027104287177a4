"""CI outputs: JUnit XML with the numbers, the GitHub job summary, JSON that follows the shipped
schema, and --strict."""
from __future__ import annotations

import json
import re
import textwrap
from xml.etree import ElementTree as ET

import pytest

from dropverify.cli import main
from dropverify.report import schema_path

jsonschema = pytest.importorskip("jsonschema")  # in the [dev] extra

LAYERS = textwrap.dedent('''
    from dropverify.variants import variant_class

    Dropout = variant_class("dropout")

    def rate30(p):
        """Claims dropout(p), drops 0.3 of the elements whatever p is."""
        return Dropout(p=0.3)
''')

# 30 calls: enough to establish the 0.3-vs-0.2 deviation, too few to certify the correct layer
# against a fault in 1 call in 20 (INCONCLUSIVE)
BASE = ["--variant", "dropout", "--param", "p=0.2", "--shape", "16,32", "--max-calls", "30",
        "--check", "drop_rate_matches_by_binomial", "--check", "multiplier_values_exact[transposed]"]


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "ci_layers.py").write_text(LAYERS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    return tmp_path


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(schema_path().read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_junit_summary_and_json_of_a_failing_run(project, validator, capsys):
    code = main(["run", "ci_layers:rate30", "numpy:dropout", *BASE, "--out", "rep", "--junit-xml", "ci/junit.xml",
                 "--summary", "ci/summary.md"])
    assert code == 1
    root = ET.parse(project / "ci" / "junit.xml").getroot()
    assert root.tag == "testsuites" and root.get("failures") == "4" and root.get("errors") == "0"
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert set(suites) == {"user:ci_layers:rate30", "numpy:dropout"}
    # one test case per target x check result (layouts of the values check included)
    bad = {c.get("name"): c for c in suites["user:ci_layers:rate30"].iter("testcase")}
    assert {"drop_rate_matches_by_binomial", "multiplier_values_exact[transposed]"} <= set(bad)
    failure = bad["drop_rate_matches_by_binomial"].find("failure")
    assert failure is not None and failure.get("type") == "FAIL"
    for needle in ("estimate 0.", "expected 0.2000 ± 0.0100", "p (Holm)", "MDD", "seed 20261126"):
        assert needle in failure.text, (needle, failure.text)
    estimate = float(re.search(r"estimate (\d\.\d+)", failure.text).group(1))
    assert abs(estimate - 0.3) < 0.01, failure.text  # the layer drops 30 %, not the contract's 20 %
    good = {c.get("name"): c for c in suites["numpy:dropout"].iter("testcase")}
    skipped = good["drop_rate_matches_by_binomial"].find("skipped")
    assert skipped is not None and skipped.get("message").startswith("INCONCLUSIVE")
    props = {p.get("name"): p.get("value") for p in suites["numpy:dropout"].iter("property")}
    assert props["params"] == "p=0.2" and props["probe_shape"] == "16x32" and props["command"].startswith("dropverify run")

    summary = (project / "ci" / "summary.md").read_text()
    assert summary.startswith("## dropverify: NOT OK")
    assert "| `user:ci_layers:rate30` | `dropout` | **FAIL** | 0 | 4 | 0 | 0 |" in summary
    assert "<details open><summary><code>user:ci_layers:rate30</code>: FAIL</summary>" in summary

    docs = [json.loads(p.read_text()) for p in sorted((project / "rep").glob("*.json"))]
    assert {d["kind"] for d in docs} == {"target", "index", "timings"}
    for doc in docs:
        validator.validate(doc)
        assert doc["schema_version"] == "1.1"
    index = next(d for d in docs if d["kind"] == "index")
    from importlib.metadata import version
    assert index["run"]["tool"] == {"name": "dropverify", "version": version("dropverify")}
    assert index["run"]["command"].startswith("dropverify run ci_layers:rate30 numpy:dropout --variant dropout")
    assert not index["ok"]


def test_schema_rejects_clock_values_and_missing_version(project, validator):
    assert main(["run", "numpy:dropout", *BASE, "--out", "rep", "--quiet"]) == 0
    doc = json.loads((project / "rep" / "numpy_dropout.json").read_text())
    validator.validate(doc)
    with_clock = json.loads(json.dumps(doc))
    with_clock["results"][0]["seconds"] = 1.5
    assert not validator.is_valid(with_clock)
    unversioned = dict(doc)
    del unversioned["schema_version"]
    assert not validator.is_valid(unversioned)
    wrong_verdict = json.loads(json.dumps(doc))
    wrong_verdict["verdict"] = "MAYBE"
    assert not validator.is_valid(wrong_verdict)


def test_strict_fails_inconclusive(project, capsys):
    args = ["run", "numpy:dropout", *BASE]
    assert main(args) == 0
    assert "INCONCLUSIVE drop_rate_matches_by_binomial [numpy:dropout]" in capsys.readouterr().out
    assert main([*args, "--strict", "--junit-xml", "strict.xml"]) == 1
    out = capsys.readouterr().out
    assert "NOT OK (--strict: INCONCLUSIVE fails)" in out
    case = next(c for c in ET.parse(project / "strict.xml").getroot().iter("testcase")
                if c.get("name") == "drop_rate_matches_by_binomial")
    assert case.find("failure").get("message").startswith("INCONCLUSIVE (--strict)")


def test_github_step_summary_is_appended_when_set(project, monkeypatch):
    step = project / "step_summary.md"
    step.write_text("## an earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    assert main(["run", "numpy:dropout", *BASE, "--quiet"]) == 0
    text = step.read_text()
    assert text.startswith("## an earlier step\n## dropverify: OK")
    assert "| `numpy:dropout` | `dropout` | _INCONCLUSIVE_ |" in text


def test_single_report_json_is_deterministic_and_timings_go_beside(project, monkeypatch):
    for name in ("a", "b"):  # the same command line in two folders
        (project / name).mkdir()
        monkeypatch.chdir(project / name)
        assert main(["run", "numpy:dropout", *BASE, "--report", "r.md", "--quiet"]) == 0
    assert (project / "a" / "r.json").read_bytes() == (project / "b" / "r.json").read_bytes()
    assert (project / "a" / "r.md").read_bytes() == (project / "b" / "r.md").read_bytes()
    timings = json.loads((project / "a" / "r.timings.json").read_text())
    assert timings["kind"] == "timings" and timings["targets"][0]["target"] == "numpy:dropout"
