"""The speed-ups of `make bench` change no result.

Batched hand-offs to the target thread (several calls of one stream per dispatch) and the
cached DropBlock theory maps must leave every target call, its order and its output as they
were: every result's verdict, estimate, p-value, n and message is compared, exactly, with one
call per hand-off and no cache. No timing is asserted here (performance is measured in
``make bench``).
"""
from __future__ import annotations

import time

import pytest

from dropverify.checks import Settings
from dropverify.checks import _stream
from dropverify.runner import verify
from dropverify.targets import numpy_spec, reference_spec
from dropverify.variants import _dropblock_theory as theory
from dropverify.variants import variant_class

RATE = "drop_rate_matches_by_binomial"
BATCHED = [RATE, "drop_rate_per_position_by_binomial", "expectation_matches_by_t_test", "variance_matches_by_t_test",
           "drop_map_matches_theory_by_binomial", "gamma_matches_by_binomial", "block_rate_matches_by_t_test",
           "expected_depth_matches_by_t_test",
           # pair tests whose steps draw from one stream: the calls of several steps per dispatch
           "masks_independent_along_axes_by_fisher", "masks_independent_at_flat_offsets_by_fisher"]
"""The checks that draw calls in batches (CallCounter over one stream), run on the same
target as checks that reseed it and interleave two streams (small budget; `make bench`
compares every check of every reference variant)."""
SHARED = ["seed_streams_do_not_overlap_by_fisher", "same_seed_reproduces", "masks_fresh_across_calls_by_fisher"]


def _fingerprint(specs, settings, checks=None, batch=None, cache=True):
    old = _stream.STREAM_BATCH, theory.CACHE
    _stream.STREAM_BATCH, theory.CACHE = old[0] if batch is None else batch, cache
    try:
        run = verify(specs, settings, checks=checks)
    finally:
        _stream.STREAM_BATCH, theory.CACHE = old
    return [(r.target, r.check, r.verdict, repr(r.estimate), repr(r.p_value), repr(r.p_adjusted), r.n, r.message)
            for r in run.all_results()]


@pytest.mark.parametrize("variant,shape", [("dropout", (16, 8, 4, 4)), ("dropblock_2d", None),
                                           ("gaussian_dropout", (16, 8, 4, 4)), ("stochastic_depth_network", None)])
def test_batched_dispatch_and_theory_cache_change_no_result(variant, shape):
    # the dropout family on a small shape: the hand-offs are the same per call, the statistics cheaper
    specs = [reference_spec(variant) if shape is None else reference_spec(variant, shape=shape)]
    settings = Settings(seed=5, max_calls=200)
    one_by_one = _fingerprint(specs, settings, BATCHED + SHARED, batch=1, cache=False)
    batched = _fingerprint(specs, settings, BATCHED + SHARED)
    assert batched == one_by_one
    assert any(r[2] != "ERROR" for r in batched)


def _failing_at(call: int, how: str):
    Dropout = variant_class("dropout")

    class FailsLater(Dropout):
        calls = 0

        def _forward(self, x):
            self.calls += 1
            if self.calls == call:
                if how == "raise":
                    raise RuntimeError(f"kernel exploded at call {call}")
                return super()._forward(x)[:1]
            return super()._forward(x)

    return numpy_spec(f"broken:{how}", "dropout", lambda prm: FailsLater(**prm), {"p": 0.3})


@pytest.mark.parametrize("check", [RATE, "masks_fresh_across_calls_by_fisher", "masks_independent_along_axes_by_fisher"])
@pytest.mark.parametrize("how", ["raise", "shape"])
def test_a_failure_inside_a_batch_is_reported_where_one_call_at_a_time_reports_it(how, check):
    specs = [_failing_at(25, how), reference_spec("dropout")]
    settings = Settings(seed=2, max_calls=300)
    one_by_one = _fingerprint(specs, settings, checks=[check], batch=1)
    batched = _fingerprint(specs, settings, checks=[check])
    assert batched == one_by_one
    assert batched[0][2] == "ERROR" and ("kernel exploded" in batched[0][-1] or "output shape" in batched[0][-1])


def test_a_hang_inside_a_batch_is_an_error_within_the_per_call_limit():
    Dropout = variant_class("dropout")

    class HangsLater(Dropout):
        calls = 0

        def _forward(self, x):
            self.calls += 1
            if self.calls == 8:
                time.sleep(5)
            return super()._forward(x)

    specs = [numpy_spec("broken:hang", "dropout", lambda prm: HangsLater(**prm), {"p": 0.3}, shape=(4, 4))]
    run = verify(specs, Settings(seed=3, call_timeout_s=0.3), checks=[RATE])
    res = run.all_results()[0]
    assert res.verdict == "ERROR" and "did not return within 0.3 s" in res.message


def test_cached_theory_maps_equal_recomputed_ones_and_stay_unshared():
    for args in [(0.01, 3, (7, 9), "anywhere"), (0.2, 4, (5, 6, 3), "valid"), (1.0, 2, (3, 3), "valid")]:
        theory.CACHE = False
        try:
            fresh = theory.drop_probability_map(*args)
            counts = theory.coverage_counts(*args[1:])
        finally:
            theory.CACHE = True
        cached = theory.drop_probability_map(*args)
        assert cached.tobytes() == fresh.tobytes() and cached.dtype == fresh.dtype
        assert theory.coverage_counts(*args[1:]).tobytes() == counts.tobytes()
        cached[...] = -1  # a caller may write to its copy without touching the cache
        assert theory.drop_probability_map(*args).tobytes() == fresh.tobytes()


def _results(run):
    return [(t.spec_name, r.check, r.verdict, r.estimate, r.p_value, r.n, r.message) for t in run.targets
            for r in t.results]


def test_targets_shared_between_processes_give_the_same_results():
    # two built-in references run in a spawned worker or here, one spec with no built-in name (always here)
    # (a small shape for the two dropout layers: the default one costs ~5 s each way and tests nothing more here)
    small = (16, 8, 4, 4)
    own = numpy_spec("mine:dropout", "dropout", lambda prm: variant_class("dropout")(**prm), {"p": 0.3}, shape=small)
    specs = [reference_spec("dropout", shape=small), own, reference_spec("drop_path"),
             reference_spec("spatial_dropout_1d")]
    settings = Settings(seed=5, max_calls=200)
    one = verify(specs, settings)
    heard = []
    shared = verify(specs, settings, workers=2, progress=lambda label, done, total: heard.append((label, done, total)))
    assert own.ref is None and all(s.ref is not None for s in specs if s is not own)
    assert [t.spec_name for t in shared.targets] == [s.name for s in specs]
    assert _results(shared) == _results(one) and shared.m_statistical == one.m_statistical
    # one "done <seconds>: <target>: every check" per target as it finishes (the CLI's log prints it so)
    assert sorted(label.split(": ")[1] for label, _, _ in heard) == sorted(s.name for s in specs)
    assert [done for _, done, _ in heard] == [1, 2, 3, 4] and {total for _, _, total in heard} == {4}
    assert all(label.startswith("done ") and float(label[5:].split(":")[0]) >= 0 for label, _, _ in heard)
