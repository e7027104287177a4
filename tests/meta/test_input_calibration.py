"""Measured false-alarm rate of drop_rate_independent_of_input_by_stratum on correct references.

Element-wise dropout, spatial dropout whose units share a draw (256 units of 4 elements: 5 |x|
bins), Gaussian noise: the check alone at a nominal alpha of 0.05, 200 seeds, at most 200
calls; the FAIL count must not be significantly above nominal (one-sided exact binomial test
at 1e-3), and the sequential p-value must be valid at 0.2 as well. The same at the default
settings with 500 seeds is `make quality`. Deterministic: fixed seeds. False passes against
input-dependent layers: tests/meta/test_input_false_pass.py.
"""
from __future__ import annotations

import pytest
from scipy import stats as sps

from dropverify.checks import Settings
from dropverify.checks.inputs import NAME
from dropverify.runner import verify
from dropverify.targets import reference_spec

pytestmark = pytest.mark.slow  # 200-seed measurements: `make test-slow` (run by .ci/run)

SEEDS = 200
NOMINAL = 0.05

FAMILIES = [
    ("dropout", {"p": 0.3}, (16, 8, 4, 4)),
    ("spatial_dropout_2d", {"p": 0.3}, (16, 16, 2, 2)),   # 256 units of 4 elements: 5 |x| bins
    ("gaussian_dropout", {"p": 0.3}, (16, 8, 4, 4)),
]


@pytest.mark.parametrize("variant,params,shape", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_false_alarm_rate_at_or_below_nominal(variant, params, shape):
    spec = reference_spec(variant, params, shape=shape)
    results = []
    for seed in range(SEEDS):
        run = verify([spec], Settings(seed=10_000 + seed, alpha=NOMINAL, max_calls=200), checks=[NAME])
        (r,) = [r for r in run.all_results() if r.statistical]
        assert r.verdict != "ERROR", r.message
        results.append(r)
    fails = sum(r.verdict == "FAIL" for r in results)
    assert sps.binomtest(fails, SEEDS, NOMINAL, alternative="greater").pvalue > 1e-3, \
        f"{variant}: {fails}/{SEEDS} false alarms at nominal {NOMINAL}"
    small = sum(r.p_adjusted <= 0.2 for r in results)
    assert sps.binomtest(small, SEEDS, 0.2, alternative="greater").pvalue > 1e-3, (variant, small)
