"""The statistical layer: exact tests against scipy, design functions against simulation."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from dropverify.stats import (SequentialPlan, binomial_look, binomial_mdd, binomial_n_for,
                              holm, mean_look, mean_mdd, mean_n_for, position_binomial_look, t_test_power)


def test_binomial_look_is_scipy_exact_test_with_clopper_pearson():
    look = binomial_look(480, 1000, 0.5, alpha=1e-3, margin=0.05, power=0.99)
    ref = sps.binomtest(480, 1000, 0.5)
    ci = ref.proportion_ci(confidence_level=1 - 1e-3, method="exact")
    assert look.p_value == pytest.approx(ref.pvalue)
    assert (look.ci.low, look.ci.high) == pytest.approx((ci.low, ci.high))
    assert look.certifies is False  # 0.5 ± 0.05 does not contain the 99.9 % CI at n = 1000
    assert binomial_look(5000, 10000, 0.5, 1e-3, 0.05, 0.99).certifies


def test_binomial_mdd_has_the_stated_power_by_simulation():
    n, p0, alpha, power = 20000, 0.3, 1e-4, 0.99
    d = binomial_mdd(n, p0, alpha, power)
    rng = np.random.default_rng(0)
    k = rng.binomial(n, p0 + d, size=4000)
    pvals = np.array([sps.binomtest(int(x), n, p0).pvalue for x in k[:1500]])
    detected = float(np.mean(pvals <= alpha))
    assert 0.975 <= detected  # stated power 0.99; the arcsine approximation errs by < 1.5 %
    assert binomial_n_for(d, p0, alpha, power) == pytest.approx(n, rel=0.02)


def test_t_test_power_matches_simulation_and_mdd_inverts_it():
    # statsmodels' TTestPower.solve_power returns effect 1.265 here (power 0.938): we solve it ourselves
    assert t_test_power(20, 1.265, 1e-3) == pytest.approx(0.9383, abs=2e-3)
    d = mean_mdd(20, 1.0, 1e-3, 0.99)
    assert t_test_power(20, d, 1e-3) == pytest.approx(0.99, abs=1e-6)
    rng = np.random.default_rng(1)
    x = rng.normal(d, 1.0, size=(20000, 20))
    p = sps.ttest_1samp(x, 0.0, axis=1).pvalue
    assert float(np.mean(p <= 1e-3)) == pytest.approx(0.99, abs=0.004)
    n = mean_n_for(0.1, 1.0, 1e-4, 0.99)
    assert t_test_power(n, 0.1, 1e-4) >= 0.99
    assert n <= 1.02 * ((sps.norm.isf(5e-5) + sps.norm.isf(0.01)) / 0.1) ** 2  # not wastefully large
    small = mean_n_for(1.0, 1.0, 1e-4, 0.99)  # small n: the t penalty matters and is paid
    assert t_test_power(small, 1.0, 1e-4) >= 0.99 > t_test_power(small - 3, 1.0, 1e-4)


def test_mean_look_decides_constant_samples_exactly():
    assert mean_look([1.0] * 10, 1.0, 1e-3, 0.1, 0.99).p_value == 1.0
    assert mean_look([1.0] * 10, 1.2, 1e-3, 0.1, 0.99).p_value == 0.0


def test_position_tests_match_scipy_per_position():
    counts = np.array([3, 10, 40])
    q = np.array([0.01, 0.05, 0.2])
    pvals, lo, hi, mdd = position_binomial_look(counts, 200, q, 1e-3, 0.99)
    for c, qq, p in zip(counts, q, pvals):
        ref = sps.binomtest(int(c), 200, qq)
        assert p >= ref.pvalue - 1e-12  # doubling is conservative
        ci = ref.proportion_ci(1 - 1e-3, method="exact")
        assert (lo[list(counts).index(c)], hi[list(counts).index(c)]) == pytest.approx((ci.low, ci.high), rel=1e-6)


def test_sequential_plan_spends_alpha_over_looks():
    plan = SequentialPlan.geometric(1e-3, 0.99, 800)
    assert plan.looks == (100, 200, 400, 800)
    assert plan.alpha_per_look == pytest.approx(2.5e-4)
    assert plan.sequential_p([0.5, 1e-4]) == pytest.approx(4e-4)


def test_holm_matches_statsmodels_and_controls_order():
    reject, adj = holm([0.01, 0.04, 0.03, 0.5], alpha=0.05)
    assert list(reject) == [True, False, False, False]
    assert adj[0] == pytest.approx(0.04)
    assert math.isclose(adj[1], 0.09) and math.isclose(adj[2], 0.09)


def test_mean_mdd_fast_path_errs_on_the_safe_side():
    """From n = 100 mean_mdd uses t quantiles; it must never understate the exact MDD solved on
    the noncentral t, and stay within 2.5 %."""
    from scipy.optimize import brentq

    from dropverify.stats import mean_mdd, t_test_power
    for n in (100, 150, 300, 1000, 5000):
        for alpha in (1e-2, 1e-4, 1e-6, 1e-8):
            exact = brentq(lambda d: t_test_power(n, d, alpha) - 0.99, 0.0, 5.0, xtol=1e-12)
            ratio = mean_mdd(n, 1.0, alpha, 0.99) / exact
            assert 1.0 <= ratio <= 1.025, (n, alpha, ratio)


def test_running_pearson_equals_scipy_on_pooled_batches():
    """Merged batch moments give pearsonr's r and two-sided p-value on the concatenated data."""
    from scipy import stats as sps
    from dropverify.stats import RunningPearson
    rng = np.random.default_rng(7)
    for shift, rho in ((0.0, 0.0), (1e6, 0.05), (-3.0, 0.9)):
        running, us, vs = RunningPearson(), [], []
        for size in (5, 1, 300, 17, 2000):
            u = rng.normal(shift, 1.0, size)
            v = rho * (u - shift) + math.sqrt(1 - rho * rho) * rng.normal(size=size)
            batch_r = running.add(u, v); us.append(u); vs.append(v)
            if size > 2:  # the batch's own r, which the pair test uses as its per-step sample
                assert batch_r == pytest.approx(sps.pearsonr(u, v).statistic, rel=1e-9, abs=1e-12)
            ref = sps.pearsonr(np.concatenate(us), np.concatenate(vs))
            assert running.r == pytest.approx(ref.statistic, rel=1e-9, abs=1e-12)
            assert running.p_value() == pytest.approx(ref.pvalue, rel=1e-6, abs=1e-300)


def test_running_pearson_constant_or_tiny_input_is_not_evidence():
    from dropverify.stats import RunningPearson
    running = RunningPearson()
    running.add(np.full(50, 0.1), np.arange(50.0))
    assert running.p_value() == 1.0
    tiny = RunningPearson()
    tiny.add(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.5]))
    assert tiny.p_value() == 1.0
