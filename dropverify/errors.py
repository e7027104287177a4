"""Exception hierarchy: one root, each subclass also inherits the matching builtin."""
from __future__ import annotations


class DropverifyError(Exception):
    """Root of every exception dropverify raises on purpose."""


class InvalidArgument(DropverifyError, ValueError):
    """A parameter, shape, dtype or option is outside what the callee accepts."""


class TargetUnavailable(DropverifyError, ImportError):
    """A target needs a framework (torch, keras, ...) that is not installed."""


class CheckFailed(DropverifyError, AssertionError):
    """Raised by the pytest helpers when a verification verdict is FAIL or ERROR."""


def out_of_range(name: str, value: object, allowed: str) -> InvalidArgument:
    """Build the one-line message used everywhere: ``p=1.5, but should be in [0, 1]``."""
    return InvalidArgument(f"{name}={value!r}, but should be {allowed}")
