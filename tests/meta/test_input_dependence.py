"""Measured error rates of drop_rate_independent_of_input_by_stratum.

Calibration: on correct references (element-wise dropout, spatial dropout whose units share a
draw, Gaussian noise) the check alone at a nominal alpha of 0.05, 200 seeds: the FAIL count
must not be significantly above nominal (one-sided exact binomial test at 1e-3), and the
sequential p-value must be valid at 0.2 as well.

False passes: input-dependent layers whose stratum difference exceeds the margin
(``INPUT_ADVERSARIES``: just outside it, 1.2 x; on 10 % of calls only; Gaussian noise with a
sign-dependent mean), 200 seeds at alpha 0.05: the PASS count must not be significantly above
0.05. Within the margin (``INPUT_WITHIN_MARGIN``, 0.4 x): a PASS is right and a FAIL is a true
but small deviation, which must say that its estimate lies inside the margin.

Small shapes and bounded budgets, as tests/meta/test_calibration.py and test_false_pass.py;
the same at the default settings with 500 seeds is `make quality`. Deterministic: fixed seeds.
"""
from __future__ import annotations

import pytest
from scipy import stats as sps

from dropverify.checks import Settings
from dropverify.checks.inputs import NAME
from dropverify.mutants.adversaries import INPUT_ADVERSARIES, INPUT_WITHIN_MARGIN
from dropverify.runner import verify
from dropverify.targets import numpy_spec, reference_spec

SEEDS = 200
NOMINAL = 0.05
ADV_SHAPE = (16, 64)

FAMILIES = [
    ("dropout", {"p": 0.3}, (16, 8, 4, 4)),
    ("spatial_dropout_2d", {"p": 0.3}, (16, 16, 2, 2)),   # 256 units of 4 elements: 5 |x| bins
    ("gaussian_dropout", {"p": 0.3}, (16, 8, 4, 4)),
]


def _result(spec, seed: int, max_calls: int):
    run = verify([spec], Settings(seed=seed, alpha=NOMINAL, max_calls=max_calls), checks=[NAME])
    (r,) = [r for r in run.all_results() if r.statistical]
    assert r.verdict != "ERROR", r.message
    return r


@pytest.mark.parametrize("variant,params,shape", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_false_alarm_rate_at_or_below_nominal(variant, params, shape):
    spec = reference_spec(variant, params, shape=shape)
    results = [_result(spec, 10_000 + seed, 200) for seed in range(SEEDS)]
    fails = sum(r.verdict == "FAIL" for r in results)
    assert sps.binomtest(fails, SEEDS, NOMINAL, alternative="greater").pvalue > 1e-3, \
        f"{variant}: {fails}/{SEEDS} false alarms at nominal {NOMINAL}"
    small = sum(r.p_adjusted <= 0.2 for r in results)
    assert sps.binomtest(small, SEEDS, 0.2, alternative="greater").pvalue > 1e-3, (variant, small)


_BEYOND = [a for a in INPUT_ADVERSARIES if a.name in ("BoundarySignRate", "IntermittentSignRate", "GaussianSignMean")]


@pytest.mark.parametrize("adv", _BEYOND, ids=[a.name for a in _BEYOND])
def test_false_pass_rate_against_input_dependent_rates(adv):
    spec = numpy_spec(f"adversary:{adv.name}", adv.variant, adv.factory, dict(adv.params), shape=ADV_SHAPE)
    passes = 0
    for seed in range(SEEDS):
        r = _result(spec, 50_000 + seed, 3000)
        assert adv.deviation > r.margin  # outside the margin a PASS would certify
        passes += r.verdict == "PASS"
    excess = sps.binomtest(passes, SEEDS, NOMINAL, alternative="greater").pvalue
    assert excess > 1e-3, f"{adv.name}: {passes}/{SEEDS} false passes at nominal {NOMINAL}"


@pytest.mark.parametrize("adv", INPUT_WITHIN_MARGIN, ids=[a.name for a in INPUT_WITHIN_MARGIN])
def test_a_difference_inside_the_margin_is_certified_or_reported_as_small(adv):
    spec = numpy_spec(f"adversary:{adv.name}", adv.variant, adv.factory, dict(adv.params), shape=ADV_SHAPE)
    results = [_result(spec, 50_000 + seed, 3000) for seed in range(SEEDS)]
    assert all(adv.deviation < r.margin for r in results)
    fails = [r for r in results if r.verdict == "FAIL"]
    assert all(r.details.get("estimate_inside_margin") for r in fails), [r.message for r in fails]
    passes = sum(r.verdict == "PASS" for r in results)
    # nothing is missed: every run either certifies the margin or establishes the (small) deviation
    assert passes + len(fails) == SEEDS, (passes, len(fails))
