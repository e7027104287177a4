"""Measured false-alarm rates of the statistical checks on correct references.

Each check is run alone (so its whole alpha is the run's) at a nominal alpha of 0.05 — large
enough that 200 seeds measure the rate — on the correct reference; the number of FAILs must
not be significantly above nominal (one-sided exact binomial test at 1e-3). Deterministic:
fixed seeds. The full calibration at default settings (500 seeds per family) is
`make quality` (reports/quality.md).
"""
from __future__ import annotations

import pytest
from scipy import stats as sps

from dropverify.checks import Settings
from dropverify.runner import verify
from dropverify.targets import reference_spec

pytestmark = pytest.mark.slow  # 200-seed measurements: `make test-slow` (run by .ci/run)

SEEDS = 200
NOMINAL = 0.05

FAMILIES = [
    ("dropout", {"p": 0.3}, (16, 8, 4, 4), "drop_rate_matches_by_binomial"),
    ("dropout", {"p": 0.3}, (16, 8, 4, 4), "expectation_matches_by_t_test"),
    ("gaussian_dropout", {"p": 0.3}, (16, 8, 4, 4), "variance_matches_by_t_test"),
    ("spatial_dropout_2d", {"p": 0.3}, (16, 8, 4, 4), "masks_fresh_across_calls_by_fisher"),
    ("dropblock_2d", {"p": 0.2, "block_size": 3}, (8, 4, 9, 7), "drop_map_matches_theory_by_binomial"),
]


@pytest.mark.parametrize("variant,params,shape,check", FAMILIES, ids=[f[3] + "-" + f[0] for f in FAMILIES])
def test_false_alarm_rate_at_or_below_nominal(variant, params, shape, check):
    spec = reference_spec(variant, params, shape=shape)
    fails = 0
    p_values = []
    for seed in range(SEEDS):
        run = verify([spec], Settings(seed=10_000 + seed, alpha=NOMINAL, max_calls=400), checks=[check])
        (result,) = [r for r in run.all_results() if r.statistical]
        assert result.verdict != "ERROR", result.message
        fails += result.verdict == "FAIL"
        p_values.append(result.p_adjusted)
    excess = sps.binomtest(fails, SEEDS, NOMINAL, alternative="greater").pvalue
    assert excess > 1e-3, f"{check}: {fails}/{SEEDS} false alarms at nominal {NOMINAL}"
    # the sequential p-value is valid: P(p <= a) <= a, here at a = 0.2 as well
    small = sum(p <= 0.2 for p in p_values)
    assert sps.binomtest(small, SEEDS, 0.2, alternative="greater").pvalue > 1e-3
