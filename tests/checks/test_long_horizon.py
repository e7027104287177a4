"""The long-horizon statistics and the one shared stream of calls (issue 16).

Each new statistic is tested against a broken layer that only it (and the consequences its
cause explains) catches, with the cause line in words; the correct reference passes; the
shared stream is deterministic, draws each call once for every check, and honours the call
and time budgets.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

from dropverify.checks import Settings, _worker, dispersion, longhorizon
from dropverify.checks.longhorizon import _repeat_pattern
from dropverify.mutants import MUTANTS, default_settings, mutant_spec, reference_spec_for
from dropverify.runner import verify
from dropverify.targets import numpy_spec, reference_spec
from dropverify.variants.dropout import Dropout

BY_NAME = {m.name: m for m in MUTANTS}

# mutant -> (cause line it must produce, FAILs its cause explains beside its own check)
LONG_HORIZON = {
    "mask_bank_256": ("masks repeat with period 256 calls", set()),
    "frozen_after_1000": ("mask frozen from call 999 on", {"drop_rate_steady_over_stream_by_windows"}),
    "shared_draw_at_lag_96": ("elements 96 apart share one draw",
                              {dispersion.NAME, "masks_independent_along_axis2_by_fisher",
                               "masks_independent_at_flat_offsets_by_fisher"}),
    "shifted_counter_4000": ("call t+1 reuses call t's draws shifted by 4000", {"masks_fresh_across_calls_by_fisher"}),
    "over_dispersed_rate": ("per-call rate over-dispersed", set()),
}


@pytest.mark.parametrize("name", sorted(LONG_HORIZON))
def test_only_its_statistic_catches_each_long_horizon_fault(name):
    """Run EVERY check, as a user's verify would: the fault's own check FAILs with the cause
    in words, and nothing FAILs that the cause does not explain (the short-horizon checks
    that look at a few lags, offsets and the mean rate all miss it)."""
    m = BY_NAME[name]
    words, consequences = LONG_HORIZON[name]
    run = verify([mutant_spec(m)], default_settings())
    t = run.targets[0]
    failed = {r.check for r in t.results if r.verdict == "FAIL"}
    (own,) = m.kills
    assert own in failed, [r.message for r in t.results]
    assert failed - {own} <= consequences, failed
    causes = [c for c in t.root_causes if c.kind == "FAIL"]
    assert len(causes) == 1 and causes[0].summary.startswith(words), [c.summary for c in causes]
    assert set(causes[0].evidence) == failed


def test_the_reference_passes_the_long_horizon_checks_at_the_mutants_configurations():
    for name in LONG_HORIZON:
        m = BY_NAME[name]
        run = verify([reference_spec_for(m)], default_settings(), checks=list(m.kills))
        assert [r.verdict for r in run.all_results()] == ["PASS"], (name, [r.message for r in run.all_results()])


@pytest.mark.parametrize("hashes,words", [
    ([b"a", b"b", b"c", b"a", b"b", b"c", b"a"], "masks repeat with period 3 calls (call t equals call t - 3)"),
    ([b"a", b"b", b"c", b"c", b"c", b"c"], "mask frozen from call 2 on"),
    ([b"a", b"b", b"c", b"d", b"b"], "1 of 5 calls repeat an earlier call's mask (call 4 = call 1)"),
    ([b"a", b"b", b"c"], ""),
])
def test_repeat_pattern_words(hashes, words):
    _, text = _repeat_pattern(hashes)
    assert text.startswith(words) and (bool(text) == bool(words))


def test_under_dispersion_is_named():
    class FixedCount(Dropout):
        """Exactly round(n p) units dropped per call (sampling without replacement)."""

        def draw_keep(self, shape):
            n = int(np.prod(shape))
            keep = np.ones(n, bool)
            keep[self.rng.permutation(n)[:round(n * self.p)]] = False
            return keep.reshape(shape)

    spec = numpy_spec("fixed-count", "dropout", lambda prm: FixedCount(**prm), {"p": 0.3}, shape=(16, 64))
    run = verify([spec], Settings(seed=3), checks=[dispersion.NAME])
    (r,) = run.all_results()
    assert r.verdict == "FAIL" and r.estimate == 0.0
    assert run.targets[0].root_causes[0].summary.startswith("per-call rate under-dispersed")


# ------------------------------------------------------------------------------ the shared stream

STREAM_CHECKS = ["drop_rate_matches_by_binomial", "expectation_matches_by_t_test",
                 "masks_fresh_across_calls_by_fisher", dispersion.NAME, longhorizon.REPEAT]


def _forward_calls() -> int:
    return _worker.target_time().get("forward", (0, 0.0))[0]


def test_one_stream_feeds_every_check_and_is_deterministic():
    spec = reference_spec("dropout", {"p": 0.3}, shape=(16, 64))
    settings = Settings(seed=11, max_calls=3000)
    _worker.reset_target_time()
    first = verify([spec], settings, checks=STREAM_CHECKS)
    calls = _forward_calls()
    second = verify([spec], settings, checks=STREAM_CHECKS)
    key = lambda run: [(r.check, r.verdict, r.estimate, r.p_value, r.n) for r in run.all_results()]  # noqa: E731
    assert key(first) == key(second)
    # every check read the same stream: the target was called as often as the longest reader needed
    longest = max(int(r.details.get("calls") or 0) for r in first.all_results())
    assert longest == 3000  # the hash reads the whole horizon (bounded by max_calls here)
    assert calls <= longest + 5, calls


def test_max_calls_bounds_the_stream_and_the_report_says_so():
    spec = reference_spec("dropout", {"p": 0.3}, shape=(16, 64))
    _worker.reset_target_time()
    run = verify([spec], Settings(seed=11, max_calls=120), checks=[longhorizon.REPEAT, dispersion.NAME])
    assert _forward_calls() <= 120
    rep = next(r for r in run.all_results() if r.check == longhorizon.REPEAT)
    assert rep.details["calls"] == 120 and "a period longer than 120 calls could hide" in rep.message


def test_time_budget_ends_the_stream_with_inconclusive_verdicts_that_say_why():
    class SlowDropout(Dropout):
        def draw_keep(self, shape):
            time.sleep(0.005)
            return super().draw_keep(shape)

    spec = numpy_spec("slow", "dropout", lambda prm: SlowDropout(**prm), {"p": 0.01}, shape=(16, 64))
    t0 = time.perf_counter()
    run = verify([spec], Settings(seed=5, time_budget_s=2.0), checks=["drop_rate_matches_by_binomial",
                                                                        longhorizon.REPEAT])
    assert time.perf_counter() - t0 < 30
    rate = next(r for r in run.all_results() if r.check == "drop_rate_matches_by_binomial")
    assert rate.verdict == "INCONCLUSIVE" and "time budget" in rate.details.get("budget", "")
