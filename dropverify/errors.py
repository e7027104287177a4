"""Exception hierarchy: one root, each subclass also inherits the matching builtin."""
from __future__ import annotations

from typing import Iterable, List, Sequence, Tuple


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


def did_you_mean(word: str, choices: Iterable[str], n: int = 3) -> str:
    """``"; did you mean 'dropout'?"`` naming the choices closest to ``word``
    (:func:`difflib.get_close_matches`, case-insensitive, cutoff 0.6; else the choices that
    contain ``word``, for a long name given by its start), or ``""`` if none is close."""
    import difflib
    options = list(dict.fromkeys(choices))
    lowered = {c.lower(): c for c in options}
    close = [lowered[c] for c in difflib.get_close_matches(word.lower(), list(lowered), n=n, cutoff=0.6)]
    if not close and len(word) >= 3:
        close = [c for c in options if word.lower() in c.lower()][:n]
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(c) for c in close) + "?"


def unknown_choice(name: str, value: str, choices: Sequence[str], extra: str = "") -> InvalidArgument:
    """``variant='dropot', but should be one of: a, b, ...; did you mean 'dropout'?`` (one line;
    ``extra`` goes after the list, before the suggestion)."""
    return InvalidArgument(f"{name}={value!r}, but should be one of: {', '.join(choices)}{extra}"
                           f"{did_you_mean(value, choices)}")


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
