"""Measured error rates of the neighbour strata of drop_rate_independent_of_input_by_stratum and
the naming of negative dependence (issue 22 item 5).

200 seeds of each do not fit 90 s on one core (the check now holds ~37 contrasts); these use
fewer seeds and small probes, and `benchmarks/issue22_inputs.py` writes the 200-seed numbers
(reports/issue22/inputs.md). Nominal alpha 0.05 for the input check; counts must not be
significantly above nominal (one-sided exact binomial test at 1e-3). Deterministic: fixed seeds.
"""
from __future__ import annotations

import pytest
from scipy import stats as sps

from dropverify.checks import Settings
from dropverify.checks.inputs import NAME
from dropverify.mutants._inputs import BoundaryNeighbourSignRate
from dropverify.mutants._negative import NeverTwiceInARow
from dropverify.runner import verify
from dropverify.targets import numpy_spec, reference_spec

pytestmark = pytest.mark.slow

NOMINAL = 0.05


def _input_result(spec, seed: int, max_calls: int):
    (r,) = [r for r in verify([spec], Settings(seed=seed, alpha=NOMINAL, max_calls=max_calls),
                              checks=[NAME]).all_results() if r.statistical]
    assert r.verdict != "ERROR", r.message
    return r


def test_false_alarm_rate_with_neighbour_strata_at_or_below_nominal():
    spec = reference_spec("dropout", {"p": 0.3}, shape=(4, 64))
    seeds = 60
    fails = sum(_input_result(spec, 10_000 + s, 60).verdict == "FAIL" for s in range(seeds))
    assert sps.binomtest(fails, seeds, NOMINAL, alternative="greater").pvalue > 1e-3, f"{fails}/{seeds}"


def test_false_pass_rate_just_beyond_the_margin_on_the_neighbour_sign():
    """p (1 +- 0.03) by the sign of x[i+1]: 1.2 x the rate margin, invisible to the own strata."""
    spec = numpy_spec("adversary:BoundaryNeighbourSignRate", "dropout",
                      lambda prm: BoundaryNeighbourSignRate(**prm), {"p": 0.3}, shape=(16, 64))
    seeds = 50
    results = [_input_result(spec, 50_000 + s, 3000) for s in range(seeds)]
    assert all(2 * 0.03 * 0.3 > r.margin for r in results)
    passes = sum(r.verdict == "PASS" for r in results)
    assert sps.binomtest(passes, seeds, NOMINAL, alternative="greater").pvalue > 1e-3, f"{passes}/{seeds}"
    named = [r for r in results if r.verdict == "FAIL"]
    assert all("x[i+1]" in r.details["worst_lane"] for r in named), [r.details["worst_lane"] for r in named]


def test_never_twice_in_a_row_is_named_negative_dependence_on_every_seed():
    spec = numpy_spec("mutant:never_twice_in_a_row", "dropout", lambda prm: NeverTwiceInARow(**prm), {"p": 0.3},
                      shape=(16, 64))
    for s in range(60):
        target = verify([spec], Settings(seed=70_000 + s), checks=["masks_fresh_across_calls_by_fisher"]).targets[0]
        (r,) = target.results
        assert r.verdict == "FAIL", r.message
        cause = target.root_causes[0].summary
        assert cause.startswith("a unit dropped at call t is rarely dropped at call t+1 (relative risk"), cause
        assert not r.ci[0] <= r.expected <= r.ci[1], r.message
