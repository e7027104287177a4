"""Decoded masks of the shared stream, computed once per output and read by every check.

Every ``shares_stream`` check reads the same output objects (``._shared``), and most of them
decode each one (``ctx.dropped`` / ``ctx.decode``): the decode is a pure function of the
contract, its parameters, the inputs and the output, so the first reader's answer is every
reader's. Promises: :class:`DecodeMemo` returns the very value ``compute()`` returned for the
same (kind, inputs object, output object), only for an output marked read-only (the shared
hub marks the outputs it hands out so, so it cannot change between two reads), and hands its
arrays out read-only (a reader that wrote into a decoded mask would change what the others
read: it fails loudly instead). Other outputs are decoded afresh each time, as before.
"""
from __future__ import annotations

import weakref
from typing import Any, Callable, Dict, Tuple

import numpy as np

KEEP = 512
"""Entries kept at most (readers of the shared stream lag one another by at most one batch)."""


def _freeze(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        value.flags.writeable = False
    elif hasattr(value, "__dataclass_fields__"):
        for name in value.__dataclass_fields__:
            _freeze(getattr(value, name))
    return value


class DecodeMemo:
    """(kind, inputs, output) -> decoded value, for read-only outputs (see the module docstring)."""

    def __init__(self) -> None:
        self._entries: Dict[Tuple[str, int, int], Tuple[Any, Any, Any, Tuple[Any, ...]]] = {}

    def get(self, kind: str, owner: Tuple[Any, ...], inputs: Any, y: Any, compute: Callable[[], Any]) -> Any:
        """``compute()``, or what it returned for this very ``inputs`` and read-only ``y`` before,
        asked by the same ``owner`` objects (the context's contract and parameters: a copy of a
        context with other parameters shares no entry)."""
        if not isinstance(y, np.ndarray) or y.flags.writeable:
            return compute()
        key = (kind, id(inputs), id(y))
        hit = self._entries.get(key)
        if hit is not None and hit[0] is inputs and hit[1]() is y and len(hit[3]) == len(owner) \
                and all(a is b for a, b in zip(hit[3], owner)):
            return hit[2]
        value = _freeze(compute())
        if len(self._entries) >= KEEP:
            self._entries = {k: v for k, v in self._entries.items() if v[1]() is not None}
            if len(self._entries) >= KEEP:
                self._entries = dict(list(self._entries.items())[KEEP // 2:])
        self._entries[key] = (inputs, weakref.ref(y), value, tuple(owner))
        return value
