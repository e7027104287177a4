"""`make bench`'s harness-overhead measurement (benchmarks/run.py): CPU over every thread and per
check, and nothing left patched after it (the bench itself is `make bench`; this runs it tiny)."""
from __future__ import annotations

from benchmarks.run import harness_overhead
from dropverify.checknames import producing_check
from dropverify.checks import Settings, engine
from dropverify.runner import verify
from dropverify.targets import reference_spec


def test_overhead_counts_every_check_thread_and_changes_no_result():
    specs = [reference_spec("dropout", {"p": 0.3}, shape=(8, 16))]
    settings = Settings(seed=3, max_calls=200)
    run_check = engine.run_check
    r = harness_overhead(specs, settings, batch=engine.stream_batch(), cache=True)
    assert engine.run_check is run_check  # the timing wrapper is removed again
    plain = verify(specs, settings)
    assert r["fingerprint"] == [(x.target, x.check, x.verdict, repr(x.estimate), repr(x.p_value), x.n)
                                for x in plain.all_results()]
    # every check that produced a result was timed: the shared-stream ones (threads of their own) and the others
    assert {producing_check(x.check) for x in plain.all_results()} <= set(r["per_check"])
    assert {"drop_rate_matches_by_binomial", "multiplier_values_exact"} <= set(r["per_check"])
    assert all(v >= 0 for v in r["per_check"].values())
    assert r["process_cpu"] >= r["main_cpu"] > 0 and 0 <= r["harness_cpu"] <= r["process_cpu"]
    assert r["target"] > 0 and r["spent"]["forward"][0] > 0


def test_per_call_floor_reports_each_shape_with_its_calls():
    from benchmarks.run import per_call_floor
    rows = per_call_floor(((4, 8),))
    assert [r["shape"] for r in rows] == [(4, 8)] and rows[0]["elements"] == 32
    assert rows[0]["calls"] > 100 and rows[0]["target"] > 0 and 0 < rows[0]["harness"] <= rows[0]["cpu"]
