"""Measured false-pass rate of drop_rate_independent_of_input_by_stratum against input-dependent
layers (dropverify.mutants.adversaries).

``INPUT_ADVERSARIES`` whose stratum difference exceeds the margin — just outside it (1.2 x), on
10 % of calls only, Gaussian noise with a sign-dependent mean — 200 seeds at alpha 0.05, at
most 3000 calls on a (16, 64) probe: the PASS count must not be significantly above 0.05
(one-sided exact binomial test at 1e-3). Within the margin (``INPUT_WITHIN_MARGIN``, 0.4 x): a
PASS is right and a FAIL is a true but small deviation, whose interval must not lie wholly
outside the margin. The gross adversaries (1.2 p / 0.8 p by sign, 1.5 p for small |x|) are in
`make quality`. Deterministic: fixed seeds.
"""
from __future__ import annotations

import pytest
from scipy import stats as sps

from dropverify.checks import Settings
from dropverify.checks.inputs import NAME
from dropverify.mutants.adversaries import INPUT_ADVERSARIES, INPUT_WITHIN_MARGIN
from dropverify.runner import verify
from dropverify.targets import numpy_spec

pytestmark = pytest.mark.slow  # 200-seed measurements: `make test-slow` (run by .ci/run)

SEEDS = 200
NOMINAL = 0.05
SHAPE = (16, 64)


def _result(spec, seed: int):
    run = verify([spec], Settings(seed=seed, alpha=NOMINAL, max_calls=3000), checks=[NAME])
    (r,) = [r for r in run.all_results() if r.statistical]
    assert r.verdict != "ERROR", r.message
    return r


_BEYOND = [a for a in INPUT_ADVERSARIES if a.name in ("BoundarySignRate", "IntermittentSignRate", "GaussianSignMean")]


@pytest.mark.parametrize("adv", _BEYOND, ids=[a.name for a in _BEYOND])
def test_false_pass_rate_against_input_dependent_rates(adv):
    spec = numpy_spec(f"adversary:{adv.name}", adv.variant, adv.factory, dict(adv.params), shape=SHAPE)
    passes = 0
    for seed in range(SEEDS):
        r = _result(spec, 50_000 + seed)
        assert adv.deviation > r.margin  # outside the margin a PASS would certify
        passes += r.verdict == "PASS"
    excess = sps.binomtest(passes, SEEDS, NOMINAL, alternative="greater").pvalue
    assert excess > 1e-3, f"{adv.name}: {passes}/{SEEDS} false passes at nominal {NOMINAL}"


@pytest.mark.parametrize("adv", INPUT_WITHIN_MARGIN, ids=[a.name for a in INPUT_WITHIN_MARGIN])
def test_a_difference_inside_the_margin_is_certified_or_established_never_called_large(adv):
    """0.4 x the margin: each run either certifies the margin (PASS) or establishes the true,
    small deviation (FAIL); a FAIL's interval never lies wholly outside the margin (that would
    claim a large deviation: probability <= alpha under the layer's true difference)."""
    spec = numpy_spec(f"adversary:{adv.name}", adv.variant, adv.factory, dict(adv.params), shape=SHAPE)
    results = [_result(spec, 50_000 + seed) for seed in range(SEEDS)]
    assert all(adv.deviation < r.margin for r in results)
    fails = [r for r in results if r.verdict == "FAIL"]
    passes = sum(r.verdict == "PASS" for r in results)
    assert passes + len(fails) == SEEDS, (passes, len(fails))
    called_large = [r for r in fails if r.ci[0] > r.margin or r.ci[1] < -r.margin]
    assert not called_large, [r.message for r in called_large]
