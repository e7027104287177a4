"""Use dropverify from your own tests.

>>> from dropverify.testing import assert_honours_contract
>>> assert_honours_contract(lambda p: torch.nn.Dropout(p), "dropout", {"p": 0.1})  # doctest: +SKIP

Raises :class:`dropverify.CheckFailed` (an AssertionError) listing every FAIL/ERROR with its
numbers; INCONCLUSIVE results are reported but do not fail unless ``strict=True``.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence, Tuple

from .checks import Settings
from .errors import CheckFailed
from .runner import RunResult, verify


def verify_layer(factory: Callable[..., Any], variant: str, params: Optional[Mapping[str, Any]] = None, *,
                 shape: Optional[Tuple[int, ...]] = None, device: str = "cpu",
                 settings: Optional[Settings] = None, checks: Optional[Sequence[str]] = None) -> RunResult:
    """Verify the layer ``factory(**params)`` against ``variant``'s contract; returns the run."""
    from .targets.user import factory_spec
    spec = factory_spec(factory, variant, params, shape=shape, device=device)
    return verify([spec], settings or Settings(), checks=checks)


def assert_run_ok(run: RunResult, strict: bool = False) -> RunResult:
    """Raise CheckFailed with one line per FAIL/ERROR (and INCONCLUSIVE when ``strict``)."""
    bad = {"FAIL", "ERROR"} | ({"INCONCLUSIVE"} if strict else set())
    lines = [f"{r.verdict} {r.check}: {r.message}" for r in run.all_results() if r.verdict in bad]
    if lines:
        raise CheckFailed(f"{len(lines)} check(s) did not pass:\n" + "\n".join(lines))
    return run


def assert_honours_contract(factory: Callable[..., Any], variant: str, params: Optional[Mapping[str, Any]] = None,
                            *, strict: bool = False, **kwargs: Any) -> RunResult:
    """verify_layer + assert_run_ok: the one-liner for a test suite."""
    return assert_run_ok(verify_layer(factory, variant, params, **kwargs), strict=strict)


__all__ = ["verify_layer", "assert_run_ok", "assert_honours_contract"]
