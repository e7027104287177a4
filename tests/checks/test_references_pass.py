"""Every reference variant honours its own contract under the default settings (the same run
as `make verify`, seed fixed): no FAIL, no ERROR, and every statistical margin certified."""
from __future__ import annotations

import pytest

from dropverify.checks import Settings
from dropverify.runner import verify
from dropverify.targets import reference_targets


@pytest.fixture(scope="module")
def run():
    return verify(reference_targets(), Settings(seed=20261126))


def test_every_reference_passes_every_applicable_check(run):
    bad = [f"{r.target}: {r.check}: {r.verdict}: {r.message}" for r in run.all_results() if r.verdict != "PASS"]
    assert not bad, "\n".join(bad)


def test_every_variant_is_covered_by_the_statistical_and_exact_families(run):
    for target in run.targets:
        checks = {r.check.split("[")[0] for r in target.results}
        assert "same_seed_reproduces" in checks and "p_zero_is_exact_identity" in checks
        assert "eval_mode_deterministic_and_exact" in checks
        assert any(r.statistical for r in target.results), target.spec_name
        if target.variant.startswith("dropblock"):
            assert {"drop_map_matches_theory_by_binomial", "gamma_matches_by_binomial",
                    "dropped_set_is_union_of_blocks"} <= checks


def test_results_state_error_rates_and_detectable_deviation(run):
    for r in run.all_results():
        if r.statistical:
            assert r.alpha == pytest.approx(run.alpha_each)
            assert r.power == 0.99 and r.mdd is not None and r.margin is not None and r.n
            assert r.p_adjusted is not None and r.p_adjusted >= r.p_value
            assert r.ci[0] <= r.estimate <= r.ci[1]
