"""Observers of finished verifications (import-light: the pytest plugin registers here
without importing numpy or scipy). ``dropverify.verify()`` and the ``dropverify.testing``
helpers notify every observer with the :class:`~dropverify.api.Report` of each run."""
from __future__ import annotations

from typing import Any, Callable, List

observers: List[Callable[[Any], None]] = []


def notify(report: Any) -> None:
    """Call every registered observer with ``report``; an observer's error is its own bug
    and is not allowed to hide the verification's result, so it propagates."""
    for fn in list(observers):
        fn(report)
