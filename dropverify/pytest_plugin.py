"""pytest plugin (entry point ``pytest11``): the ``dropverify`` fixture, a marker, options,
settings profiles, a session summary that counts every verification, report folders.

    import pytest
    from mylayers import make

    @pytest.mark.dropverify(alpha=1e-4, seed=3)
    def test_my_dropout(dropverify):
        dropverify(make, "dropout", p=0.2)      # raises CheckFailed (an AssertionError) on FAIL/ERROR

Options (command line, or ``dropverify_profile`` in the ini file):

- ``--dropverify-profile quick|default|thorough`` — budget presets, like hypothesis'
  settings profiles (:data:`dropverify.settings.PROFILES`, the same as the CLI's ``--quick`` /
  ``--profile`` and ``dropverify.verify(profile=...)``); ``--dropverify-seed``, ``--dropverify-alpha``,
  ``--dropverify-max-calls`` override the profile, the marker overrides both.
- ``--dropverify-report DIR`` — write each verification's reports (Markdown, JSON, figures)
  into ``DIR/<test id>/``.

Every verification in the session — the fixture, ``dropverify.verify()`` and
``dropverify.testing.assert_honours_contract`` — is counted in the terminal summary, also
under pytest-xdist (the counts travel with each test's report to the controller).

Import-light: nothing heavy (numpy, scipy) is imported until a verification runs.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from .settings import PROFILES  # defined once, for the CLI, the Python API and this plugin (light: no numpy)


def _profile_opts(name: str) -> Dict[str, Any]:
    """The settings profile ``name`` sets (``dropverify.settings.PROFILES``); a time budget only where it has one."""
    return {k: v for k, v in PROFILES[name].values().items() if v is not None}


_ALLOWED = {"alpha", "power", "seed", "max_calls", "strict", "fault_fraction"}
_PROPERTY = "dropverify"


class _State:
    """Per-process state: the current test, verifications not yet attached to a test report,
    and (on the controller / a plain run) the aggregated records."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.nodeid: Optional[str] = None
        self.pending: List[Dict[str, Any]] = []
        self.records: List[Dict[str, Any]] = []
        self.written: Dict[str, int] = {}
        self.report_dir: Optional[str] = config.getoption("--dropverify-report")  # as given, for messages
        # resolved against the invocation directory, so a test that changes directory writes there too
        self.report_path = (Path(config.invocation_params.dir) / self.report_dir) if self.report_dir else None

    def observe(self, report: Any) -> None:
        """Observer of every finished verification in this process."""
        record = {"nodeid": self.nodeid or "(outside a test)", "label": report._label(),
                  "verdict": report.verdict, "counts": report.counts(), "seed": report.seed}
        if report.run is None:
            record["detail"] = f"{len(getattr(report.sweep, 'rows', ()))} configuration runs"
        if not report.ok:
            record["reproduce"] = report.reproduce
        if self.report_path is not None:
            key = _slug(self.nodeid or "session")
            self.written[key] = self.written.get(key, 0) + 1
            n = self.written[key]
            folder = key + (f"-{n}" if n > 1 else "")
            try:
                report.write(self.report_path / folder)
                record["report"] = folder
            except OSError as exc:  # the verification stands; the summary says the report is missing
                record["report_error"] = f"{self.report_dir}/{folder}: {exc}"
        self.pending.append(record)

    def take(self) -> List[Dict[str, Any]]:
        out, self.pending = self.pending, []
        return out

    # hooks of the registered state object (controller or plain run; xdist workers only send)
    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.when != "teardown" or hasattr(self.config, "workerinput"):
            return
        for name, value in getattr(report, "user_properties", ()):
            if name == _PROPERTY:
                self.records.append(json.loads(value))


def _slug(text: str) -> str:
    return re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9.-]", "_", text)).strip("_")[:120] or "test"


def _bounded(kind: type, low: float, high: Optional[float], what: str) -> Any:
    """An option ``type``: ``kind(text)`` within [low, high] (``high`` None: no upper bound;
    floats strictly inside (low, high)); otherwise argparse's one-line usage error."""
    import argparse

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}, but should be {what}") from None
        inside = (low < value < high) if kind is float else (value >= low and (high is None or value <= high))
        if kind is float and value != value:  # NaN
            inside = False
        if not inside:
            raise argparse.ArgumentTypeError(f"{text}, but should be {what}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("dropverify", "dropverify: statistical checks of dropout layers")
    group.addoption("--dropverify-profile", choices=sorted(PROFILES), default=None,
                    help="budget preset of dropverify runs, as the CLI's --profile: "
                         + "; ".join(p.describe() for p in PROFILES.values())
                         + ". Default: the ini value dropverify_profile, else 'default'")
    group.addoption("--dropverify-seed", type=_bounded(int, 0, None, "an integer >= 0"), default=None,
                    help="master seed of dropverify runs. Default: dropverify.DEFAULT_SEED (20261126), as the CLI")
    group.addoption("--dropverify-alpha", type=_bounded(float, 0.0, 1.0, "a number in (0, 1)"), default=None,
                    help="family-wise false-alarm rate of each dropverify run. Default: the profile's")
    group.addoption("--dropverify-max-calls", type=_bounded(int, 4, None, "an integer >= 4"), default=None,
                    help="calls per statistical check. Default: the profile's")
    group.addoption("--dropverify-report", default=None, metavar="DIR",
                    help="write each verification's report (Markdown, JSON, figures) into DIR/<test id>/")
    parser.addini("dropverify_profile", "dropverify budget preset: quick, default or thorough", default="default")


def _profile(config: Any) -> str:
    name = config.getoption("--dropverify-profile") or config.getini("dropverify_profile") or "default"
    if name not in PROFILES:
        raise pytest.UsageError(f"dropverify_profile={name!r}, but should be one of {sorted(PROFILES)}")
    return name


def pytest_configure(config: Any) -> None:
    config.addinivalue_line("markers", "dropverify(alpha=, power=, seed=, max_calls=, fault_fraction=, strict=): "
                                       "settings of the dropverify fixture for this test")
    _profile(config)
    from . import _session
    state = _State(config)
    config._dropverify_state = state
    config.pluginmanager.register(state, "dropverify-state")
    _session.observers.append(state.observe)


def pytest_unconfigure(config: Any) -> None:
    state = getattr(config, "_dropverify_state", None)
    if state is not None:
        from . import _session
        if state.observe in _session.observers:
            _session.observers.remove(state.observe)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: Any, nextitem: Any):
    state = getattr(item.config, "_dropverify_state", None)
    if state is not None:
        state.nodeid = item.nodeid
    yield
    if state is not None:
        state.nodeid = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: Any, call: Any):
    """Attach this test's verifications to its teardown report (which xdist sends to the
    controller), as a ``user_properties`` entry."""
    state = getattr(item.config, "_dropverify_state", None)
    if state is not None and call.when == "teardown":
        for record in state.take():
            item.user_properties.append((_PROPERTY, json.dumps(record, sort_keys=True)))
    yield


def _settings_opts(request: Any) -> Dict[str, Any]:
    """Profile, then command-line options, then the marker (highest)."""
    config = request.config
    opts: Dict[str, Any] = _profile_opts(_profile(config))
    for key, flag in (("seed", "--dropverify-seed"), ("alpha", "--dropverify-alpha"),
                      ("max_calls", "--dropverify-max-calls")):
        value = config.getoption(flag)
        if value is not None:
            opts[key] = value
    marker = request.node.get_closest_marker("dropverify")
    if marker is not None:
        unknown = set(marker.kwargs) - _ALLOWED
        if unknown:
            pytest.fail(f"dropverify marker: unknown option(s) {sorted(unknown)}; allowed {sorted(_ALLOWED)}",
                        pytrace=False)
        opts.update(marker.kwargs)
    return opts


class Verifier:
    """The ``dropverify`` fixture's value: call it like :func:`dropverify.verify`."""

    def __init__(self, opts: Dict[str, Any], strict: bool, profile: str) -> None:
        self.opts, self.strict, self.profile = opts, strict, profile

    def __call__(self, target: Any, variant: Optional[str] = None, params: Optional[Dict[str, Any]] = None,
                 **kwargs: Any) -> Any:
        """Verify, then fail the test (CheckFailed) on any FAIL or ERROR; returns the Report."""
        __tracebackhide__ = True
        from .api import verify
        from .settings import Settings
        report = verify(target, variant, settings=Settings(**self.opts), **{**dict(params or {}), **kwargs})
        report.assert_ok(strict=self.strict)
        return report

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in sorted(self.opts.items()))
        return f"<dropverify fixture: profile {self.profile}, {shown}{', strict' if self.strict else ''}>"


@pytest.fixture
def dropverify(request: Any) -> Verifier:
    """Callable ``(target, variant=None, params=None, **kw) -> Report`` (arguments as
    :func:`dropverify.verify`; ``params`` a dict or keywords) that fails the test with
    :class:`~dropverify.CheckFailed` — failing rows, seed, reproduction command — when any
    check FAILs or ERRORs (INCONCLUSIVE too with ``strict=True`` on the marker)."""
    opts = _settings_opts(request)
    strict = bool(opts.pop("strict", False))
    opts.setdefault("seed", _default_seed())
    from .settings import Settings
    from .errors import InvalidArgument
    try:
        Settings(**opts).validate()
    except (InvalidArgument, TypeError) as exc:  # a marker value out of range or of the wrong type
        pytest.fail(f"dropverify marker: {exc}", pytrace=False)
    return Verifier(opts, strict, _profile(request.config))


def _default_seed() -> int:
    from .settings import DEFAULT_SEED
    return DEFAULT_SEED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: Any, config: Any) -> None:
    state = getattr(config, "_dropverify_state", None)
    if state is None or hasattr(config, "workerinput"):
        return
    state.records.extend(state.take())  # verifications outside any test
    records = state.records
    if not records:
        return
    by_verdict: Dict[str, int] = {}
    checks: Dict[str, int] = {}
    for rec in records:
        by_verdict[rec["verdict"]] = by_verdict.get(rec["verdict"], 0) + 1
        for k, v in rec["counts"].items():
            checks[k] = checks.get(k, 0) + v
    seeds = sorted({rec["seed"] for rec in records if rec.get("seed") is not None})
    tests = len({rec["nodeid"] for rec in records})
    order = ("PASS", "INCONCLUSIVE", "FAIL", "ERROR")
    tr = terminalreporter
    tr.write_sep("-", "dropverify")
    tr.write_line(f"{len(records)} verification(s) in {tests} test(s), profile {_profile(config)}, seed "
                  f"{', '.join(map(str, seeds))}: " +
                  ", ".join(f"{by_verdict[v]} {v}" for v in order if by_verdict.get(v)))
    if any(checks.values()):
        tr.write_line("check results: " + ", ".join(f"{checks[v]} {v}" for v in order if checks.get(v)))
    for rec in records:
        if rec["verdict"] != "PASS":
            counts = " ".join(f"{k}={rec['counts'][k]}" for k in order if rec["counts"].get(k)) or rec.get("detail", "")
            tr.write_line(f"  {rec['verdict']:<12} {rec['nodeid']}  {rec['label']}: {counts}")
            if rec.get("reproduce"):
                tr.write_line(f"    reproduce: {rec['reproduce']}")
    written = [rec["report"] for rec in records if rec.get("report")]
    if written:
        tr.write_line(f"reports written under {state.report_dir} ({len(written)} folder(s))")
    for rec in records:
        if rec.get("report_error"):
            tr.write_line(f"report NOT written: {rec['report_error']}")
