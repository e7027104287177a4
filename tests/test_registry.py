"""Adding a check means one registry entry that declares everything else the harness needs;
these tests fail when an entry forgets a part: its diagnosis role and words, the mutant only
it is there to catch, its row in docs/checks.md, or a result name that maps back to it."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from dropverify.checknames import producing_check, result_names
from dropverify.checks import CHECKS, POOLED, ROLES, STRUCTURAL, WITHIN_CALL, CheckSpec, spec_for_result
from dropverify.mutants import all_mutants
from dropverify.mutants._sweep import SWEEP_MUTANTS

ROOT = Path(__file__).resolve().parents[1]
NAMES = [c.name for c in CHECKS]


MUTANTS = tuple(all_mutants()) + tuple(SWEEP_MUTANTS)


def _kills(spec: CheckSpec) -> list:
    """Mutants whose ``kills`` name a result of ``spec``."""
    return [m.name for m in MUTANTS if any(spec_for_result(k) is spec for k in m.kills)]


@pytest.mark.parametrize("name", NAMES)
def test_every_check_declares_its_role_and_result_names(name):
    spec = next(c for c in CHECKS if c.name == name)
    assert spec.role in ROLES
    assert spec.results, "no result names declared"
    for result in result_names(name):
        concrete = result.replace("axisK", "axis1")
        assert producing_check(concrete) == name, f"result {concrete!r} does not map back to {name}"


@pytest.mark.parametrize("name", NAMES)
def test_every_structural_check_says_its_cause_in_words(name):
    """A FAIL that is a cause of its own (structural roles) needs words for the root-cause line."""
    spec = next(c for c in CHECKS if c.name == name)
    if spec.role in (STRUCTURAL, WITHIN_CALL):
        assert spec.explain is not None, f"{name} is {spec.role} but has no explain words"
    for c in spec.consequences:
        assert spec_for_result(c) is not None, f"{name} lists consequence {c!r}, which no check produces"


@pytest.mark.parametrize("name", NAMES)
def test_every_check_has_a_mutant_it_must_kill(name):
    spec = next(c for c in CHECKS if c.name == name)
    assert _kills(spec), f"no mutant in dropverify/mutants lists {name} (or one of its results) in its kills"


def test_every_mutant_kill_names_a_check():
    """The converse: a kill that names no check (a typo, a renamed check) would never be tested."""
    for m in MUTANTS:
        for k in m.kills:
            assert spec_for_result(k) is not None, (m.name, k)


@pytest.mark.parametrize("name", NAMES)
def test_every_check_has_a_row_in_the_checks_page(name):
    page = ROOT / "docs" / "checks.md"
    assert page.exists(), "docs/checks.md is missing"
    assert re.search(rf"^\| `{re.escape(name)}` \|", page.read_text(encoding="utf-8"), flags=re.M), \
        f"docs/checks.md has no row '| `{name}` | ...'"


def test_pooled_checks_are_the_ones_the_diagnosis_withdraws():
    """The drift the review found: the diagnosis read hand-written name lists that no longer
    matched the checks. It now reads the roles; a DropConnect convention FAIL is a cause."""
    from dropverify.checks import role_of
    assert role_of("weight_mask_convention_exact") == STRUCTURAL
    assert role_of("drop_rate_matches_by_binomial") == POOLED
    assert role_of("masks_independent_along_axis2_by_cross_product_t_test") == WITHIN_CALL
    assert role_of("dropconnect_mask_per_sample") is None  # a mutant's name is not a check's


def test_seed_streams_are_derived_from_names_not_offsets():
    """No check draws from a hand-picked offset of the run's seed: each stream comes from the
    check's name (two checks never share one by accident)."""
    offsets = re.compile(r"ctx\.seed\s*\+|ctx\.rng\(|ctx\.probe\(|seed \+ \d")
    for path in (ROOT / "dropverify" / "checks").glob("*.py"):
        hits = [line for line in path.read_text(encoding="utf-8").splitlines() if offsets.search(line)]
        assert not hits, f"{path.name}: {hits}"
