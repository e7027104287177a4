"""pytest plugin (entry point ``pytest11``): a ``dropverify`` fixture, a marker, options.

Import-light: nothing heavy is imported until the fixture is used.

    @pytest.mark.dropverify(alpha=1e-4, seed=3)
    def test_my_dropout(dropverify):
        dropverify(lambda p: MyDropout(p), "dropout", {"p": 0.2})   # raises CheckFailed on FAIL/ERROR
"""
from __future__ import annotations

from typing import Any, Dict, List

import pytest

_ALLOWED = {"alpha", "power", "seed", "max_calls", "strict"}
_RUNS: List[Any] = []


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("dropverify", "dropverify: statistical checks of dropout layers")
    group.addoption("--dropverify-seed", type=int, default=20261126,
                    help="master seed of dropverify runs. Default: %(default)r")
    group.addoption("--dropverify-alpha", type=float, default=1e-3,
                    help="family-wise false-alarm rate of each dropverify run. Default: %(default)r")
    group.addoption("--dropverify-max-calls", type=int, default=20000,
                    help="calls per statistical check. Default: %(default)r")


def pytest_configure(config: Any) -> None:
    config.addinivalue_line("markers", "dropverify(alpha=, power=, seed=, max_calls=, strict=): settings of the "
                                       "dropverify fixture for this test")


@pytest.fixture
def dropverify(request: Any):
    """Callable ``(factory, variant, params=None, **kw) -> RunResult`` that fails the test
    (CheckFailed) when any check FAILs or ERRORs."""
    from .checks import Settings
    from .testing import assert_run_ok, verify_layer

    opts: Dict[str, Any] = {"seed": request.config.getoption("--dropverify-seed"),
                            "alpha": request.config.getoption("--dropverify-alpha"),
                            "max_calls": request.config.getoption("--dropverify-max-calls")}
    strict = False
    marker = request.node.get_closest_marker("dropverify")
    if marker is not None:
        unknown = set(marker.kwargs) - _ALLOWED
        if unknown:
            raise pytest.UsageError(f"dropverify marker: unknown option(s) {sorted(unknown)}; allowed {sorted(_ALLOWED)}")
        strict = bool(marker.kwargs.get("strict", False))
        opts.update({k: v for k, v in marker.kwargs.items() if k != "strict"})

    def check(factory: Any, variant: str, params: Any = None, **kwargs: Any):
        run = verify_layer(factory, variant, params, settings=Settings(**opts), **kwargs)
        _RUNS.append(run)
        return assert_run_ok(run, strict=strict)

    return check


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _RUNS:
        return
    counts: Dict[str, int] = {}
    for run in _RUNS:
        for r in run.all_results():
            counts[r.verdict] = counts.get(r.verdict, 0) + 1
    terminalreporter.write_sep("-", "dropverify")
    terminalreporter.write_line(f"{len(_RUNS)} run(s): " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
