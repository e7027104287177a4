"""Use dropverify from your own tests.

>>> from dropverify.testing import assert_honours_contract
>>> assert_honours_contract(lambda p: torch.nn.Dropout(p), "dropout", {"p": 0.1})  # doctest: +SKIP

Raises :class:`dropverify.CheckFailed` (an AssertionError) listing every FAIL/ERROR with its
numbers; INCONCLUSIVE results are reported but do not fail unless ``strict=True``.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence, Tuple

from .settings import Settings
from .errors import CheckFailed
from .results import failure_row
from .runner import RunResult


def verify_layer(factory: Callable[..., Any], variant: str, params: Optional[Mapping[str, Any]] = None, *,
                 shape: Optional[Tuple[int, ...]] = None, device: str = "cpu", seed: Optional[int] = None,
                 alpha: Optional[float] = None, settings: Optional[Settings] = None,
                 checks: Optional[Sequence[str]] = None) -> RunResult:
    """Verify the layer ``factory(**params)`` against ``variant``'s contract; returns the run
    (``dropverify.verify`` returns the same run inside a :class:`~dropverify.Report`).
    ``seed`` / ``alpha`` override ``settings`` (default seed: ``dropverify.DEFAULT_SEED``)."""
    from .api import verify as api_verify
    return api_verify(factory, variant, shape=shape, device=device, seed=seed, alpha=alpha, settings=settings,
                      checks=checks, **dict(params or {})).run


def assert_run_ok(run: RunResult, strict: bool = False) -> RunResult:
    """Raise CheckFailed with one line per FAIL/ERROR (and INCONCLUSIVE when ``strict``) and the seed."""
    __tracebackhide__ = True
    bad = {"FAIL", "ERROR"} | ({"INCONCLUSIVE"} if strict else set())
    lines = [failure_row(r) for r in run.all_results() if r.verdict in bad]
    if lines:
        raise CheckFailed(f"{len(lines)} check(s) did not pass:\n" + "\n".join(lines) +
                          f"\nseed {run.settings.seed} (family-wise false-alarm rate {run.settings.alpha:g})")
    return run


def assert_honours_contract(factory: Callable[..., Any], variant: str, params: Optional[Mapping[str, Any]] = None,
                            *, strict: bool = False, shape: Optional[Tuple[int, ...]] = None, device: str = "cpu",
                            seed: Optional[int] = None, alpha: Optional[float] = None,
                            settings: Optional[Settings] = None, checks: Optional[Sequence[str]] = None) -> RunResult:
    """The one-liner for a test suite: verify, then raise CheckFailed (an AssertionError)
    listing every FAIL/ERROR row, the seed and the reproduction command."""
    __tracebackhide__ = True
    from .api import verify as api_verify
    report = api_verify(factory, variant, shape=shape, device=device, seed=seed, alpha=alpha, settings=settings,
                        checks=checks, **dict(params or {}))
    report.assert_ok(strict=strict)
    return report.run


__all__ = ["verify_layer", "assert_run_ok", "assert_honours_contract"]
