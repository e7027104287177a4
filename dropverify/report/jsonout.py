"""The JSON twin of a report: the same results, for machines.

The report JSON (``kind`` "target" or "index") is a function of the run's seed, settings,
targets, harness and command line only: the same seed gives the same bytes on any machine, so
committed reports change only when results do. Every float is written to
:data:`FLOAT_DIGITS` significant digits (the last bits of a float differ between BLAS and libm
builds); the command line omits where the outputs went (``--out``, ``--report``, ...); the
versions of the libraries under test are stated (they determine results), the machine is not.
Wall-clock facts (timestamp, seconds per check) and the machine (platform, Python, numpy,
scipy ...: ``environment``) go to a separate ``timings.json`` (``kind`` "timings") that stays
out of version control.
Every document carries ``schema_version`` and follows ``dropverify/report/schema.json``.
"""
from __future__ import annotations

import dataclasses
import json
import math
from datetime import datetime, timezone
from typing import Any, Dict, Optional

import numpy as np

from ..provenance import tool_version  # re-exported: the version every report states
from ..runner import RunResult, TargetRun

SCHEMA_VERSION = "1.1"
_VOLATILE = ("seconds",)  # result fields that depend on the clock, kept out of the tracked JSON
FLOAT_DIGITS = 6
"""Significant digits of every float in a report JSON (a flip of the 6th digit between two
machines needs them to differ by ~1e-6 relative; they differ by ~1e-15)."""


def _clean(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _clean(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return float(f"{v:.{FLOAT_DIGITS}g}") if math.isfinite(v) else str(v)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if callable(obj):
        return getattr(obj, "__name__", repr(obj))
    return obj


def fixed_precision(doc: Any) -> Any:
    """A JSON-ready document with every float to :data:`FLOAT_DIGITS` significant digits (and
    numpy scalars / arrays / dataclasses made plain), for byte-identical files on any machine."""
    return _clean(doc)


def _result(r: Any) -> Dict[str, Any]:
    doc = _clean(r)
    doc["message"], doc["summary"] = r.message, r.summary  # the rendered text, beside the fields it comes from
    for key in _VOLATILE:
        doc.pop(key, None)
    return doc


def libraries(run: RunResult) -> Dict[str, str]:
    """Versions of the third-party libraries the run's targets come from (``torch``, ``timm``
    ...; none for the numpy references and mutants): they determine results, the machine does
    not. A user factory or a scan site may use any framework: every one loaded is named."""
    from ..targets import BY_NAME, THIRDPARTY, framework_packages
    prefixes = {t.spec_name.partition(":")[0] for t in run.targets}
    if prefixes - set(BY_NAME) - {"mutant"}:
        used = THIRDPARTY
    else:
        used = tuple(p for p in THIRDPARTY if p in prefixes)
    # the local build tag (2.14.1+cu130 / +cpu) names the wheel, not the CPU kernels the checks run
    return {k: run.environment[k].split("+")[0] for k in framework_packages(used) if k in run.environment}


def run_header(run: RunResult, command: Optional[str] = None) -> Dict[str, Any]:
    """Settings, Holm family size, libraries under test, harness fingerprint, tool version and
    command line of the run (nothing of the machine: see :func:`timings_dict`)."""
    from ..provenance import harness_fingerprint
    return {"settings": _clean(run.settings), "statistical_results": run.m_statistical,
            "alpha_per_result": _clean(run.alpha_each), "libraries": libraries(run),
            "harness": harness_fingerprint(), "tool": {"name": "dropverify", "version": tool_version()},
            "command": command}


def _dump(doc: Dict[str, Any]) -> str:
    return json.dumps(doc, indent=1, sort_keys=True, allow_nan=False) + "\n"


def target_dict(run: RunResult, target: TargetRun, command: Optional[str] = None) -> Dict[str, Any]:
    """The JSON document of one target (deterministic: no clock values)."""
    return {"schema_version": SCHEMA_VERSION, "kind": "target",
            "target": target.spec_name, "variant": target.variant, "verdict": target.verdict,
            "counts": target.counts(), "params": _clean(target.params), "probe_shape": list(target.shape),
            "contract": _clean(target.contract), "conventions": list(target.conventions),
            "description": target.description, "run": run_header(run, command),
            "not_applicable": dict(target.not_applicable),
            "root_causes": [c.to_dict() for c in target.root_causes],
            "results": [_result(r) for r in target.results]}


def target_json(run: RunResult, target: TargetRun, command: Optional[str] = None) -> str:
    return _dump(target_dict(run, target, command))


def index_dict(run: RunResult, command: Optional[str] = None) -> Dict[str, Any]:
    """The JSON document of a whole run: one line per target (deterministic: no clock values)."""
    return {"schema_version": SCHEMA_VERSION, "kind": "index", "run": run_header(run, command), "ok": run.ok,
            "targets": [{"target": t.spec_name, "variant": t.variant, "verdict": t.verdict, "counts": t.counts(),
                         "params": _clean(t.params), "probe_shape": list(t.shape)}
                        for t in run.targets]}


def index_json(run: RunResult, command: Optional[str] = None) -> str:
    return _dump(index_dict(run, command))


def timings_dict(run: RunResult, command: Optional[str] = None,
                 timestamp: Optional[str] = None) -> Dict[str, Any]:
    """Wall-clock facts of a run: when it finished, how long each target and check took, and the
    machine it ran on (``environment``: Python, platform, numpy, scipy, every framework loaded)."""
    stamp = timestamp or datetime.now(timezone.utc).isoformat(timespec="seconds")
    return {"schema_version": SCHEMA_VERSION, "kind": "timings", "timestamp": stamp, "command": command,
            "tool": {"name": "dropverify", "version": tool_version()}, "environment": dict(run.environment),
            "seconds": round(run.seconds, 3),
            "targets": [{"target": t.spec_name, "seconds": round(t.seconds, 3),
                         "checks": [{"check": r.check, "seconds": round(float(r.seconds), 3)} for r in t.results]}
                        for t in run.targets]}


def timings_json(run: RunResult, command: Optional[str] = None, timestamp: Optional[str] = None) -> str:
    return _dump(timings_dict(run, command, timestamp))


__all__ = ["FLOAT_DIGITS", "SCHEMA_VERSION", "fixed_precision", "index_dict", "libraries", "index_json", "run_header", "target_dict", "target_json",
           "timings_dict", "timings_json", "tool_version"]
