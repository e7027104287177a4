"""Meta-tests: the harness must kill every mutant in the corpus and pass the correct
implementation on the same checks.

Every run uses the DEFAULT settings with the corpus' fixed seed and the checks each mutant
names (``checks_for(m.kills)``: its own run-level Holm split over those); the mutant and its
reference are separate runs. Certification from independent calls makes a full run of every
check cost ~10 s per target, so the run over ALL checks (exactly as a user's `dropverify
verify` of that one target) is `make quality`'s kill table (reports/quality.md).
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Dict, Tuple

import pytest

from dropverify.checks import FAIL, PASS, check_names
from dropverify.mutants import (BUG_CLASSES, CONTROLS, checks_for, FAMILIES, MUTANTS, Mutant, all_mutants, default_settings,
                                evaluate, kill_rate, kill_table, matching, mutant_spec, reference_spec_for,
                                run_one, torch_corpus)
from dropverify.variants import variant_names

SETTINGS = default_settings()
_RUNS: Dict[Tuple, object] = {}


def _mutant_row(m: Mutant) -> dict:
    key = ("mutant", m.framework, m.name)
    if key not in _RUNS:
        _RUNS[key] = evaluate(m, SETTINGS, checks_for(m.kills))
    return _RUNS[key]


def _reference_results(m: Mutant):
    """All results of the correct implementation at the mutant's variant/params/shape
    (numpy references are shared between mutants with the same configuration)."""
    chosen = tuple(checks_for(m.kills))
    if m.reference is None:
        key = ("reference", m.variant, tuple(sorted(m.params.items())), m.shape, chosen)
    else:
        key = ("reference", m.framework, m.name, chosen)
    if key not in _RUNS:
        _RUNS[key] = run_one(reference_spec_for(m), SETTINGS, list(chosen)).targets[0].results
    return _RUNS[key]


def _describe(results) -> str:
    return "\n".join(f"  {r.check}: {r.verdict}: {r.message}" for r in results)


_KNOWN_PREFIX = re.compile(
    r"^(masks_independent_along_axis\d+_by_(fisher|cross_product_t_test)"
    r"|masks_(fresh_across_calls|independent_across_seeds)_by_cross_product_t_test"
    r"|multiplier_values_exact\[\w+\]"
    r"|gradient_(uses_forward_mask|matches_finite_differences)\[\w+\])$")


# ------------------------------------------------------------------------------ the corpus itself

def test_corpus_size_names_and_metadata():
    mutants = all_mutants()
    assert len(MUTANTS) >= 40
    names = [m.name for m in mutants]
    assert len(names) == len(set(names)), [n for n, c in Counter(names).items() if c > 1]
    for m in mutants:
        assert m.bug_class in BUG_CLASSES, (m.name, m.bug_class)
        assert m.source and m.notes and m.kills, m.name
        assert m.variant in variant_names(), (m.name, m.variant)
        for prefix in m.kills:
            assert prefix in check_names() or _KNOWN_PREFIX.match(prefix), (m.name, prefix)
        spec = mutant_spec(m)
        assert spec.name == f"mutant:{m.name}" and spec.variant == m.variant


def test_every_family_and_required_bug_class_is_covered():
    covered = {m.variant for m in MUTANTS}
    for family, variants in FAMILIES.items():
        assert covered & set(variants), family
    classes = {m.bug_class for m in MUTANTS}
    missing = set(BUG_CLASSES) - classes
    assert not missing, missing


# ------------------------------------------------------------------------------ kills

def _kill_params():
    """Mutants with a documented harness blind spot (``known_gap``) are strict expected
    failures: the test turns red the day the harness catches them, so the gap gets closed
    in the corpus too."""
    return [pytest.param(m, id=m.name, marks=pytest.mark.xfail(strict=True, reason=f"harness gap: {m.known_gap}"))
            if m.known_gap else pytest.param(m, id=m.name) for m in all_mutants()]


@pytest.mark.parametrize("m", _kill_params())
def test_harness_kills_mutant(m: Mutant):
    row = _mutant_row(m)
    detail = "\n".join(f"  {d['check']}: {d['verdict']}: {d['message']}" for d in row["detections"])
    assert not row["missing"], f"{m.name}: no result named {row['missing']}"
    assert row["killed"], f"{m.name} survived; expected FAIL from {m.kills}:\n{detail}"


@pytest.mark.parametrize("m", all_mutants(), ids=lambda m: m.name)
def test_reference_passes_the_killing_checks(m: Mutant):
    results = _reference_results(m)
    for prefix in m.kills:
        hits = matching(results, prefix)
        assert hits, f"reference for {m.name}: no result named {prefix}"
        assert all(r.verdict == PASS for r in hits), \
            f"reference for {m.name} does not PASS {prefix}:\n{_describe(hits)}"


@pytest.mark.parametrize("m", CONTROLS, ids=lambda m: m.name)
def test_mutant_sampler_control_matches_reference(m: Mutant):
    """A zero-slip run of the DropBlock mutants' own sampler gets the reference's verdict on
    every check (PASS, except where the harness also fails the reference itself)."""
    got = {r.check: r.verdict for r in run_one(mutant_spec(m), SETTINGS).targets[0].results}
    want = {r.check: r.verdict for r in run_one(reference_spec_for(m), SETTINGS).targets[0].results}
    assert got == want, {k: (got.get(k), want.get(k)) for k in set(got) | set(want) if got.get(k) != want.get(k)}


def test_kill_table_rows():
    chosen = [MUTANTS[0]] + list(torch_corpus()[:1])
    rows = kill_table(SETTINGS, mutants=chosen, named_only=True)
    assert [r["name"] for r in rows] == [m.name for m in chosen]
    for row in rows:
        for key in ("name", "variant", "bug_class", "source", "expected", "verdicts", "n", "n_unit", "looks",
                    "killed", "seconds", "detections", "family"):
            assert key in row
        assert row["killed"] and row["flagged"] and set(row["verdicts"].values()) == {FAIL}
    assert kill_rate(rows) == 1.0


def test_torch_mutants_present_when_torch_is():
    pytest.importorskip("torch")
    pytest.importorskip("dropverify.targets.torch_nn")
    assert len(torch_corpus()) >= 5
