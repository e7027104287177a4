"""A corpus of realistic broken dropout implementations the harness must catch.

Each :class:`Mutant` is a small layer with one deliberate slip (mostly a subclass of the
numpy reference), the public case it models, its bug class (a row of bug-classes.md) and the
checks that must FAIL it (``kills``, name prefixes). :func:`kill_table` runs the harness on
every mutant and reports what it caught and how many samples it needed; the meta-tests in
``tests/meta/test_mutants.py`` also require the correct reference to PASS the same checks.

``MUTANTS`` holds the numpy mutants; :func:`torch_corpus` the ``nn.Module`` ones (they import
torch, so they load only on demand); :func:`all_mutants` both.
"""
from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..checks import ERROR, FAIL, CheckResult, Settings
from ..settings import DEFAULT_SEED
from ..errors import InvalidArgument
from ..runner import RunResult, verify
from ..targets import TargetSpec, numpy_spec, reference_spec
from ._core import BUG_CLASSES, Mutant
from .numpy_mutants import CONTROLS, FAMILIES, MUTANTS, family_of

def default_settings() -> Settings:
    """Default harness settings with the corpus' fixed seed."""
    return Settings(seed=DEFAULT_SEED)


def torch_corpus() -> Tuple[Mutant, ...]:
    """The ``nn.Module`` mutants; empty when torch (or the torch adapter) is unavailable."""
    try:
        from .torch_mutants import MUTANTS as torch_list
    except ImportError:
        return ()
    return tuple(torch_list)


def all_mutants() -> Tuple[Mutant, ...]:
    return tuple(MUTANTS) + torch_corpus()


def mutant_spec(m: Mutant) -> TargetSpec:
    """The target spec of a mutant, named ``mutant:<name>``."""
    kw: Dict[str, Any] = {"description": m.notes}
    if m.shape is not None:
        kw["shape"] = tuple(m.shape)
    if m.framework == "torch":
        from ..targets.torch_nn import torch_spec
        return torch_spec(m.target_name, m.variant, m.factory, m.params, **kw)
    return numpy_spec(m.target_name, m.variant, m.factory, m.params, **kw)


def spec_by_name(target: str) -> TargetSpec:
    """The spec of ``mutant:NAME`` (sweep corner cases first, then the numpy and torch corpus);
    InvalidArgument for an unknown NAME."""
    name = target.partition(":")[2]
    from ._sweep import SWEEP_MUTANTS
    for m in tuple(SWEEP_MUTANTS) + tuple(all_mutants()):
        if m.name == name:
            return mutant_spec(m)
    raise InvalidArgument(f"target={target!r}: no mutant called {name!r}")


def reference_spec_for(m: Mutant) -> TargetSpec:
    """A correct implementation at the mutant's variant, parameters and probe shape: the
    mutant's own ``reference`` factory (same framework) or else the numpy reference."""
    kw: Dict[str, Any] = {}
    if m.shape is not None:
        kw["shape"] = tuple(m.shape)
    if m.reference is None:
        return reference_spec(m.variant, m.params, **kw)
    if m.framework == "torch":
        from ..targets.torch_nn import torch_spec
        return torch_spec(f"reference:{m.name}", m.variant, m.reference, m.params, **kw)
    return numpy_spec(f"reference:{m.name}", m.variant, m.reference, m.params, **kw)


def _stem(name: str) -> str:
    """A check or result name without its layout suffix and its "_by_<test>" tail."""
    name = name.split("[")[0]
    if name.startswith("masks_independent_along_axis"):
        return "masks_independent_along_axes"
    return name.split("_by_")[0]


def checks_for(kills: Sequence[str]) -> List[str]:
    """The registry checks whose results the kill prefixes name (a result name like
    ``masks_independent_along_axis1_by_fisher`` comes from ``masks_independent_along_axes_by_fisher``;
    ``multiplier_values_exact[strided]`` from ``multiplier_values_exact``)."""
    from ..checks import CHECKS
    stems = {_stem(k) for k in kills}
    chosen = [c.name for c in CHECKS if _stem(c.name) in stems]
    missing = stems - {_stem(c) for c in chosen}
    if missing:
        raise KeyError(f"kill prefixes name no registered check: {sorted(missing)}")
    return chosen


def matching(results: Sequence[CheckResult], prefix: str) -> List[CheckResult]:
    """Results whose check name starts with ``prefix``."""
    return [r for r in results if r.check.startswith(prefix)]


def killed_by(results: Sequence[CheckResult], kills: Sequence[str]) -> bool:
    """True when every prefix matches at least one result and all those results FAIL."""
    for prefix in kills:
        hits = matching(results, prefix)
        if not hits or any(r.verdict != FAIL for r in hits):
            return False
    return True


def run_one(spec: TargetSpec, settings: Optional[Settings] = None,
            checks: Optional[Sequence[str]] = None) -> RunResult:
    """The harness on one target alone (its own Holm family), every check unless ``checks``."""
    return verify([spec], settings or default_settings(), checks=checks)


def evaluate(m: Mutant, settings: Optional[Settings] = None,
             checks: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """One row of the kill table: run the harness on ``m`` and read its expected checks.

    Keys: name, framework, family, variant, params, shape, bug_class, source, notes,
    expected (the kill prefixes), verdicts ({result name: verdict} of the expected checks),
    detections (per expected result: check, verdict, statistical, n, n_unit, looks, message),
    n / n_unit / looks (of the statistical expected result that FAILed on the fewest
    samples; None where only exact checks were expected), killed (bool: every expected
    result FAILs), flagged (bool: the run has any FAIL or ERROR, i.e. the target is not
    certified even where the expected check missed), known_gap (the documented blind spot,
    or ""), other_failures (names of unexpected FAIL/ERROR results), seconds.
    """
    t0 = time.perf_counter()
    run = run_one(mutant_spec(m), settings, checks)
    seconds = time.perf_counter() - t0
    results = run.targets[0].results
    detections = []
    for prefix in m.kills:
        for r in matching(results, prefix):
            detections.append({"check": r.check, "verdict": r.verdict, "statistical": r.statistical,
                               "n": r.n, "n_unit": r.n_unit, "looks": r.looks, "message": r.message})
    missing = [p for p in m.kills if not matching(results, p)]
    stat_kills = [d for d in detections if d["statistical"] and d["verdict"] == FAIL and d["n"] is not None]
    best = min(stat_kills, key=lambda d: d["n"]) if stat_kills else None
    expected_names = {d["check"] for d in detections}
    return {
        "name": m.name, "framework": m.framework, "family": family_of(m.variant), "variant": m.variant,
        "params": dict(run.targets[0].params), "shape": tuple(run.targets[0].shape),
        "bug_class": m.bug_class, "source": m.source, "notes": m.notes,
        "expected": tuple(m.kills),
        "verdicts": {d["check"]: d["verdict"] for d in detections},
        "missing": missing,
        "detections": detections,
        "n": best["n"] if best else None,
        "n_unit": best["n_unit"] if best else None,
        "looks": best["looks"] if best else None,
        "killed": killed_by(results, m.kills),
        "flagged": any(r.verdict in (FAIL, ERROR) for r in results),
        "known_gap": m.known_gap,
        "other_failures": sorted(r.check for r in results
                                 if r.verdict in (FAIL, ERROR) and r.check not in expected_names),
        "seconds": seconds,
    }


def kill_table(settings: Optional[Settings] = None, mutants: Optional[Sequence[Mutant]] = None,
               checks: Optional[Sequence[str]] = None, named_only: bool = False) -> List[Dict[str, Any]]:
    """Run the harness on every mutant (default: :func:`all_mutants`, every check, each
    mutant alone so its Holm family is its own run; ``named_only``: only the checks each
    mutant names) and return one :func:`evaluate` row per mutant, in corpus order."""
    settings = settings or default_settings()
    chosen = all_mutants() if mutants is None else tuple(mutants)
    return [evaluate(m, settings, checks_for(m.kills) if named_only else checks) for m in chosen]


def kill_rate(rows: Sequence[Dict[str, Any]]) -> float:
    """Fraction of rows with killed=True (nan for no rows)."""
    return sum(bool(r["killed"]) for r in rows) / len(rows) if rows else float("nan")


__all__ = ["BUG_CLASSES", "checks_for", "CONTROLS", "DEFAULT_SEED", "FAMILIES", "MUTANTS", "Mutant", "all_mutants",
           "default_settings", "evaluate", "family_of", "kill_rate", "kill_table", "killed_by", "matching",
           "mutant_spec", "reference_spec_for", "run_one", "spec_by_name", "torch_corpus"]
