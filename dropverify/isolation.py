"""Targets that need their own process: a spec whose ``env`` differs from this process's
environment (Keras 3 fixes its backend at first import: ``KERAS_BACKEND=jax``) runs in a
spawned worker started with that environment, one worker per distinct environment.

The worker rebuilds the spec from its ``ref`` (the built-in name and position), applies the
parent's parameters, shape, dtype, layout and waivers (:func:`portable`, :func:`rebuild`). What
it runs is the caller's: the runner submits its own module-level functions (they count the
statistical results first, so one Holm family spans every process, then run the checks with
the run's alpha and each spec's position in the run, so its seeds are those of an in-process
run). This module never imports the runner.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Dict, Mapping, Tuple

from .targets._base import TargetSpec


def is_foreign(spec: TargetSpec) -> bool:
    """True when ``spec`` needs an environment this process does not have."""
    return any(os.environ.get(k) != v for k, v in (spec.env or {}).items())


def portable(spec: TargetSpec) -> Dict[str, Any]:
    """What a worker needs to rebuild ``spec`` (picklable)."""
    from .errors import InvalidArgument
    if spec.ref is None:
        raise InvalidArgument(f"{spec.name} needs {dict(spec.env)} in its process but has no built-in name "
                              "to rebuild it from; start the process with that environment")
    return {"ref": tuple(spec.ref), "name": spec.name, "params": dict(spec.params), "shape": spec.shape,
            "dtype": spec.dtype, "layout": spec.layout, "not_applicable": dict(spec.not_applicable),
            "margins": dict(getattr(spec, "margins", None) or {}), "inputs": spec.inputs}


def rebuild(item: Mapping[str, Any]) -> TargetSpec:
    """The spec :func:`portable` described, rebuilt in this process from its built-in name."""
    from .targets import get_target
    name, k = item["ref"]
    spec = get_target(name)[k]
    spec = dataclasses.replace(spec, name=item["name"], params=item["params"], shape=item["shape"],
                               dtype=item["dtype"], layout=item["layout"], not_applicable=item["not_applicable"],
                               inputs=item.get("inputs"))
    if item["margins"]:
        from .config import with_margins
        spec = with_margins(spec, item["margins"])
    return spec


def _set_env(env: Mapping[str, str]) -> None:
    os.environ.update(env)


class Isolated:
    """The worker pools of one run, one per environment (closed by :meth:`close`)."""

    def __init__(self) -> None:
        self.pools: Dict[Tuple[Tuple[str, str], ...], Any] = {}

    def pool(self, env: Mapping[str, str]):
        import concurrent.futures as cf
        import multiprocessing as mp
        key = tuple(sorted(env.items()))
        if key not in self.pools:
            self.pools[key] = cf.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), initializer=_set_env,
                                                     initargs=(dict(env),))
        return self.pools[key]

    def call(self, env: Mapping[str, str], fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in the worker of ``env`` (``fn``: a module-level function, picklable
        by name), waiting for its result."""
        return self.pool(env).submit(fn, *args).result()

    def close(self) -> None:
        for p in self.pools.values():
            p.shutdown(wait=True)
        self.pools.clear()
