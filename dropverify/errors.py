"""Exception hierarchy: one root, each subclass also inherits the matching builtin."""
from __future__ import annotations

from typing import Iterable, List, Tuple


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


def key_value_pairs(items: Iterable[str], flag: str, form: str, example: str) -> List[Tuple[str, str]]:
    """``KEY=VALUE`` strings of a repeatable CLI flag -> [(key, value text)]; a missing ``=``,
    an empty key or a repeated key raises :class:`InvalidArgument` naming ``flag``."""
    pairs: List[Tuple[str, str]] = []
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidArgument(f"{flag} {item!r}, but should be {form}, e.g. {example}")
        if key in dict(pairs):
            raise InvalidArgument(f"{flag} {key} given twice")
        pairs.append((key, value))
    return pairs
