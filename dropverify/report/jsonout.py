"""The JSON twin of a report: the same results, for machines."""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Dict

import numpy as np

from ..runner import RunResult, TargetRun


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
        return v if math.isfinite(v) else str(v)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if callable(obj):
        return getattr(obj, "__name__", repr(obj))
    return obj


def run_header(run: RunResult) -> Dict[str, Any]:
    return {"settings": _clean(run.settings), "statistical_results": run.m_statistical,
            "alpha_per_result": run.alpha_each, "environment": run.environment}


def target_json(run: RunResult, target: TargetRun) -> str:
    doc = {"target": target.spec_name, "variant": target.variant, "verdict": target.verdict,
           "counts": target.counts(), "params": _clean(target.params), "probe_shape": list(target.shape),
           "contract": _clean(target.contract), "conventions": list(target.conventions),
           "description": target.description, "run": run_header(run),
           "not_applicable": dict(target.not_applicable),
           "root_causes": [c.to_dict() for c in target.root_causes],
           "results": [_clean(r) for r in target.results]}
    return json.dumps(doc, indent=1, sort_keys=True, allow_nan=False) + "\n"


def index_json(run: RunResult) -> str:
    doc = {"run": run_header(run), "ok": run.ok,
           "targets": [{"target": t.spec_name, "variant": t.variant, "verdict": t.verdict, "counts": t.counts()}
                       for t in run.targets]}
    return json.dumps(doc, indent=1, sort_keys=True, allow_nan=False) + "\n"
