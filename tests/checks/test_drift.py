"""Issue 22 item 3: shifted reuse at lags 1..K, and a drop rate that drifts over the stream.

Each new mutant is run against EVERY check, as a user's verify would: its own statistic FAILs,
the diagnosis names its cause first in words, and every other FAIL is listed as a consequence
of that cause (never a cause of its own). The statistics themselves are tested on synthetic
per-call rates (a steady but over-dispersed rate is no drift; a warm-up and a creep are named).
"""
from __future__ import annotations

import re

import numpy as np
import pytest

from dropverify.checks import Settings, drift, longhorizon
from dropverify.checks.drift import describe, drift_look, window_stats
from dropverify.mutants import MUTANTS, default_settings, mutant_spec, reference_spec_for
from dropverify.runner import verify

BY_NAME = {m.name: m for m in MUTANTS}

# mutant -> the cause line it must open with
CAUSES = {
    "interleaved_counters_lag2": "call t+2 reuses call t's draws shifted by 20000",
    "warm_up_rate_500": "warm-up: rate 0.1",
    "creeping_rate": "drop rate drifts from 0.3",
}


@pytest.mark.parametrize("name", sorted(CAUSES))
def test_each_stream_fault_is_caught_by_its_statistic_and_named_first(name):
    m = BY_NAME[name]
    t = verify([mutant_spec(m)], default_settings()).targets[0]
    failed = {r.check for r in t.results if r.verdict == "FAIL"}
    (own,) = m.kills
    assert own in failed, [r.message for r in t.results]
    causes = [c for c in t.root_causes if c.kind == "FAIL"]
    assert len(causes) == 1 and causes[0].summary.startswith(CAUSES[name]), [c.summary for c in causes]
    assert causes[0].evidence[0] == own and set(causes[0].evidence) == failed


def test_warm_up_and_creep_words_name_where_and_how_much():
    t = verify([mutant_spec(BY_NAME["warm_up_rate_500"])], default_settings()).targets[0]
    assert t.root_causes[0].summary.startswith("warm-up: rate 0.1") and "first 512 calls, then 0.3" in \
        t.root_causes[0].summary
    c = verify([mutant_spec(BY_NAME["creeping_rate"])], default_settings()).targets[0]
    words = c.root_causes[0].summary
    assert words.startswith("drop rate drifts from 0.30") and "(calls 0-511) to 0.41" in words \
        and words.endswith("(calls 3584-4095)"), words


def test_the_references_pass_the_new_statistics_at_the_mutants_configurations():
    for name in CAUSES:
        m = BY_NAME[name]
        run = verify([reference_spec_for(m)], default_settings(), checks=[longhorizon.SHIFT, drift.NAME])
        assert [r.verdict for r in run.all_results()] == ["PASS", "PASS"], [r.message for r in run.all_results()]


def test_the_lag_one_statistic_alone_misses_the_interleaved_generators(monkeypatch):
    """The fault the issue reported: call t+1 is fresh, so comparing consecutive calls passes."""
    spec = mutant_spec(BY_NAME["interleaved_counters_lag2"])
    monkeypatch.setattr(longhorizon, "SHIFT_LAGS", 1)
    (one,) = verify([spec], default_settings(), checks=[longhorizon.SHIFT]).all_results()
    assert one.verdict == "PASS" and one.details["pairs"] == longhorizon.SHIFT_PAIRS
    monkeypatch.undo()
    (eight,) = verify([spec], default_settings(), checks=[longhorizon.SHIFT]).all_results()
    assert eight.verdict == "FAIL" and eight.details["worst_lag"] == 2 and eight.details["worst_shift"] == -20000
    assert eight.details["pairs"] == sum(longhorizon.SHIFT_PAIRS + longhorizon.SHIFT_LAGS - k
                                         for k in range(1, longhorizon.SHIFT_LAGS + 1))


def test_a_frozen_mask_is_the_cause_and_the_drift_it_makes_a_consequence():
    t = verify([mutant_spec(BY_NAME["frozen_after_1000"])], default_settings()).targets[0]
    causes = [c for c in t.root_causes if c.kind == "FAIL"]
    assert len(causes) == 1 and causes[0].summary.startswith("mask frozen from call 999 on")


# ------------------------------------------------------------------------------ the statistic itself

def _look(x, alpha=1e-3, final=True):
    return drift_look(np.asarray(x, np.float64), alpha, 0.03, 0.99, final)


def test_a_steady_over_dispersed_rate_is_no_drift():
    """Per-call rates with 4x the binomial variance, independent across calls: the window test
    uses the within-window variance, so it does not FAIL (the dispersion check's business)."""
    rng = np.random.default_rng(0)
    n, p = 1024, 0.3
    fails = 0
    for _ in range(200):
        rate = np.clip(p + 2 * np.sqrt(p * (1 - p) / n) * rng.standard_normal(2000), 0, 1)
        x = rng.binomial(n, rate) / n
        fails += _look(x, alpha=0.05).rejects
    assert fails <= 20  # nominal 10 of 200; binomial upper 1e-3 quantile is about 22


def test_a_creep_is_detected_and_a_steady_reference_certified():
    rng = np.random.default_rng(1)
    n, t = 1024, 4096
    steady = rng.binomial(n, 0.3, t) / n
    look = _look(steady)
    assert not look.rejects and look.certifies and look.ci.high <= 0.03
    creep = rng.binomial(n, 0.3 * (1 + 0.4 * np.arange(t) / t)) / n  # window deviation ~0.05 > margin 0.03
    look = _look(creep)
    assert look.rejects and not look.certifies and look.ci.low > 0.03
    small = rng.binomial(n, 0.3 * (1 + 0.1 * np.arange(t) / t)) / n  # inside the margin, still detected
    look = _look(small)
    assert look.rejects and 0.01 < look.estimate < 0.03
    assert not _look(steady, final=False).certifies  # a PASS needs every call of the stream read


def test_words_for_a_step_warm_up_and_a_step_change():
    rng = np.random.default_rng(2)
    n = 4096
    warm = rng.binomial(n, np.where(np.arange(4096) < 500, 0.01, 0.3)) / n
    assert describe(warm, 1e-3).startswith("warm-up: rate 0.0")
    assert "over the first 512 calls, then 0.3" in describe(warm, 1e-3)
    step = rng.binomial(n, np.where(np.arange(4096) < 2048, 0.3, 0.35)) / n
    m = re.match(r"drop rate drifts from (0\.\d+) \(calls (\d+)-\d+\) to (0\.\d+) \(calls (\d+)-\d+\)$",
                 describe(step, 1e-3))
    assert m and abs(float(m[1]) - 0.3) < 0.005 and abs(float(m[3]) - 0.35) < 0.005, describe(step, 1e-3)
    assert int(m[2]) < 2048 <= int(m[4])


def test_window_stats_are_the_one_way_anova_pieces():
    x = np.arange(20, dtype=np.float64) % 3
    w = window_stats(x, 4)
    assert list(w["sizes"]) == [5, 5, 5, 5] and w["df"] == 16
    assert np.allclose(w["means"], [x[i:i + 5].mean() for i in range(0, 20, 5)])
    within = sum(((x[i:i + 5] - x[i:i + 5].mean()) ** 2).sum() for i in range(0, 20, 5))
    assert np.isclose(w["s2"], within / 16)
    assert np.isclose(w["dev"].sum() * 5, 0.0)


def test_the_drift_check_reads_the_whole_horizon_before_it_passes():
    from dropverify.targets import reference_spec
    spec = reference_spec("dropout", {"p": 0.3}, shape=(16, 64))
    (r,) = verify([spec], Settings(seed=5, max_calls=600), checks=[drift.NAME]).all_results()
    assert r.verdict == "PASS" and r.n == 600 and r.details["calls"] == 600
    assert r.margin == pytest.approx(2 * 0.05 * 0.3)


# ------------------------------------------------------------------------------ the diagnosis

def _result(check, verdict="FAIL", **details):
    from dropverify.results import CheckResult
    return CheckResult(check=check, target="t", variant="dropout", verdict=verdict, text=check, details=details)


def test_drift_explains_pooled_and_dependence_fails_but_never_identical_masks():
    from dropverify.diagnosis import diagnose
    out = [_result(drift.NAME, pattern="drop rate drifts from 0.3 (calls 0-511) to 0.4 (calls 3584-4095)"),
           _result("per_call_rate_dispersion_by_chi_square"),
           _result("masks_independent_along_axis0_by_fisher"),
           _result("masks_independent_along_axis1_by_fisher", identical="every pair"),
           _result("masks_independent_across_seeds_by_fisher")]
    _, causes = diagnose(out, "(N, C, H, W)")
    assert causes[0].summary.startswith("drop rate drifts from 0.3")
    assert causes[0].evidence == (drift.NAME, "per_call_rate_dispersion_by_chi_square",
                                  "masks_independent_along_axis0_by_fisher")
    rest = {c for cause in causes[1:] for c in cause.evidence}
    assert {"masks_independent_along_axis1_by_fisher", "masks_independent_across_seeds_by_fisher"} <= rest


def test_a_warm_up_also_explains_the_checks_that_read_the_first_calls_after_seeding():
    from dropverify.diagnosis import diagnose
    out = [_result(drift.NAME, pattern="warm-up: rate 0.01 over the first 512 calls, then 0.3"),
           _result("masks_independent_across_seeds_by_fisher")]
    _, causes = diagnose(out, "(N, C, H, W)")
    assert len(causes) == 1 and causes[0].evidence == (drift.NAME, "masks_independent_across_seeds_by_fisher")


def test_no_drift_cause_when_another_cause_lists_the_drift_as_its_consequence():
    from dropverify.checks.drift import drift_cause
    from dropverify.diagnosis import consequences
    out = [_result(drift.NAME, pattern="drop rate drifts"), _result(longhorizon.REPEAT, pattern="mask frozen")]
    assert drift_cause(out, consequences) is None
    assert drift_cause(out[:1], consequences) == ("drop rate drifts", (drift.NAME,))
