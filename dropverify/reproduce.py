"""Reproduction lines: the ``dropverify run`` command (and the ``dropverify.verify(...)`` call)
that repeats a run. One builder, :func:`run_command`, serves the Python API's reports
(:func:`reproduce_command`) and the sweep's minimal failing configurations
(:func:`dropverify.sweep.report.reproduce_command`)."""
from __future__ import annotations

import dataclasses
import shlex
from typing import Any, Callable, List, Mapping, Optional, Sequence

from .settings import Settings


NO_OPTION = ("max_units", "min_units_per_sample", "call_timeout_s")
"""Settings that change results but have no command-line option (``shared_stream`` changes none)."""


def _api_literal(v: Any) -> str:
    return repr(v) if isinstance(v, str) else f"{v}"


def run_command(target: str, variant: Optional[str], params: Mapping[str, Any], *,
                shape: Optional[Sequence[int]] = None, dtype: Optional[str] = None, layout: Optional[str] = None,
                device: Optional[str] = None, options: Sequence[str] = (), checks: Sequence[str] = (),
                literal: Callable[[Any], str] = _api_literal, quote: bool = False) -> str:
    """``dropverify run TARGET [--variant V] [--param K=V ...] [--shape ..] [--dtype ..] [--layout ..]
    [--device ..] OPTIONS [--check C ...]``: a part is written only where it is given (``device``:
    only other than cpu); parameter values as ``literal`` writes them; every word shell-quoted
    where ``quote``."""
    argv = ["dropverify", "run", target]
    if variant is not None:
        argv += ["--variant", variant]
    for k, v in params.items():
        argv += ["--param", f"{k}={literal(v)}"]
    if shape is not None:
        argv += ["--shape", ",".join(str(int(s)) for s in shape)]
    for flag, value in (("--dtype", dtype), ("--layout", layout)):
        if value is not None:
            argv += [flag, value]
    if device is not None and device != "cpu":
        argv += ["--device", device]
    argv += list(options)
    for c in checks:
        argv += ["--check", c]
    return " ".join(shlex.quote(a) for a in argv) if quote else " ".join(argv)


def settings_flags(settings: Settings) -> List[str]:
    """The CLI words that set ``settings``: ``--seed`` always, the others (time budget included)
    where not the default profile's, which is the command line's default too (``Settings()``)."""
    from .settings import MARGIN_FIELDS
    base = Settings()
    out = ["--seed", str(settings.seed)]
    for name, flag in (("alpha", "--alpha"), ("power", "--power"), ("max_calls", "--max-calls"),
                       ("fault_fraction", "--fault-fraction"), ("time_budget_s", "--time-budget")):
        if getattr(settings, name) != getattr(base, name):
            value = getattr(settings, name)
            out += [flag, "0" if value is None else repr(value)]
    for short, fld in MARGIN_FIELDS.items():
        if getattr(settings, fld) != getattr(base, fld):
            out += ["--margin", f"{short}={getattr(settings, fld)!r}"]
    return out


def settings_kwargs(settings: Settings) -> List[str]:
    """``field=value`` for each setting other than the default (seed and alpha aside)."""
    base = Settings()
    return [f"{f.name}={getattr(settings, f.name)!r}" for f in dataclasses.fields(Settings)
            if f.name not in ("seed", "alpha") and getattr(settings, f.name) != getattr(base, f.name)]


def reproduce_command(target: str, variant: str, params: Mapping[str, Any], shape: Optional[Sequence[int]],
                      settings: Settings, dtype: str = "float64", layout: str = "contiguous",
                      device: str = "cpu", checks: Optional[Sequence[str]] = None) -> str:
    """The ``dropverify run`` command line that repeats a run of a named target; the
    ``dropverify.verify(...)`` call instead where a setting that changes results has no option
    (``max_units``, ``min_units_per_sample``, ``call_timeout_s``)."""
    if any(getattr(settings, f) != getattr(Settings(), f) for f in NO_OPTION):
        return reproduce_python(repr(target), variant, params, shape, settings, dtype, layout, device, checks)
    return run_command(target, variant, params, shape=shape or None,
                       dtype=None if dtype == "float64" else dtype,
                       layout=None if layout == "contiguous" else layout, device=device,
                       options=settings_flags(settings), checks=checks or ())


def reproduce_python(name: str, variant: str, params: Mapping[str, Any], shape: Optional[Sequence[int]],
                     settings: Settings, dtype: str = "float64", layout: str = "contiguous",
                     device: str = "cpu", checks: Optional[Sequence[str]] = None) -> str:
    """The ``dropverify.verify(...)`` call that repeats a run of a callable or layer object."""
    args = [name, repr(variant)]
    if shape:
        args.append(f"shape={tuple(int(s) for s in shape)!r}")
    args.append(f"seed={settings.seed}")
    if settings.alpha != Settings().alpha:
        args.append(f"alpha={settings.alpha!r}")
    for k, v in (("dtype", dtype), ("layout", layout), ("device", device)):
        if v != {"dtype": "float64", "layout": "contiguous", "device": "cpu"}[k]:
            args.append(f"{k}={v!r}")
    if checks:
        args.append(f"checks={list(checks)!r}")
    extra = settings_kwargs(settings)
    if extra:
        args.append(f"settings=dropverify.Settings({', '.join(extra)})")
    args += [f"{k}={v!r}" for k, v in params.items()]
    return f"dropverify.verify({', '.join(args)}).assert_ok()"


__all__ = ["reproduce_command", "reproduce_python", "run_command", "settings_flags", "settings_kwargs"]
