"""Measured false-pass rates of the certifying checks against faults that strike whole calls.

A PASS certifies "the deviation is within the margin" with false-pass probability at most
the check's alpha. The adversaries (dropverify.mutants.adversaries) deviate by MORE than the
margin, but only on some calls (the review's cases: a rate of 0.8 or 1.0 on some calls at
p = 0.5, a stale mask reused on some calls), which pooled within-call statistics cannot see.
Each check runs alone at alpha = 0.05 over 200 seeds; the number of PASSes must not be
significantly above 0.05 (one-sided exact binomial test at 1e-3). Deterministic: fixed seeds.
"""
from __future__ import annotations

import pytest
from scipy import stats as sps

from dropverify.checks import Settings
from dropverify.mutants.adversaries import ADVERSARIES
from dropverify.runner import verify
from dropverify.targets import numpy_spec

pytestmark = pytest.mark.slow  # 200-seed measurements: `make test-slow` (run by .ci/run)

SEEDS = 200
NOMINAL = 0.05
SHAPE = (16, 64)


@pytest.mark.parametrize("adv", ADVERSARIES, ids=[a.name for a in ADVERSARIES])
def test_false_pass_rate_against_call_level_faults(adv):
    spec = numpy_spec(f"adversary:{adv.name}", "dropout", adv.factory, dict(adv.params), shape=SHAPE)
    passes = 0
    for seed in range(SEEDS):
        run = verify([spec], Settings(seed=50_000 + seed, alpha=NOMINAL, max_calls=3000), checks=[adv.check])
        (result,) = [r for r in run.all_results() if r.statistical]
        assert result.verdict != "ERROR", result.message
        assert adv.deviation > result.margin  # outside the margin a PASS would certify
        passes += result.verdict == "PASS"
    excess = sps.binomtest(passes, SEEDS, NOMINAL, alternative="greater").pvalue
    assert excess > 1e-3, f"{adv.check} vs {adv.name}: {passes}/{SEEDS} false passes at nominal {NOMINAL}"
