"""One configuration in two processes (``workers`` > 1): the checks that do not read the shared
stream run in a forked child meanwhile, with the same results as one process running them in
turn; a child that dies or raises has its part run here; no fork where it is unsafe or with a
time budget."""
import dataclasses
import os
import sys

import pytest

from dropverify import forked, runner
from dropverify.checks import Settings, engine
from dropverify.runner import verify
from dropverify.targets import reference_spec

pytestmark = pytest.mark.skipif("fork" not in __import__("multiprocessing").get_all_start_methods(),
                                reason="no fork on this platform")


@pytest.fixture(autouse=True)
def _frameworks_of_other_tests_allowed(monkeypatch):
    # another test file in this pytest worker may have imported jax or tensorflow (idle here: the forked
    # children below run numpy references only); the refusal itself is tested with modules set below
    monkeypatch.setattr(forked, "FORK_UNSAFE_MODULES",
                        tuple(m for m in forked.FORK_UNSAFE_MODULES if m not in sys.modules))


def _fingerprint(run):
    return [(t.spec_name, t.not_applicable, t.stream, tuple((r.check, r.verdict, repr(r.estimate), repr(r.p_value),
                                                            r.n, r.text, r.details.get("calls"))
                                                           for r in t.results)) for t in run.targets]


@pytest.mark.parametrize("variant", ["dropout", pytest.param("dropblock_2d", marks=pytest.mark.slow),
                                     pytest.param("zoneout", marks=pytest.mark.slow),
                                     pytest.param("word_embedding_dropout", marks=pytest.mark.slow)])
def test_the_split_configuration_gives_the_same_results(variant):
    spec = reference_spec(variant)
    if variant == "dropout":  # a smaller probe than the default (64, 32, 8, 8): the same code paths
        spec = dataclasses.replace(spec, shape=(8, 16, 8, 8))
    settings = Settings(seed=11, max_calls=300)
    engine.reset_target_time()
    one = verify([spec], settings)
    calls_one = engine.target_time()["forward"][0]
    engine.reset_target_time()
    two = verify([spec], settings, workers=2)
    calls_two = engine.target_time()["forward"][0]  # the child's calls are added to this process's count
    assert _fingerprint(two) == _fingerprint(one)
    assert two.m_statistical == one.m_statistical
    assert calls_two == calls_one


def test_the_child_really_runs_the_rest(monkeypatch):
    assert forked.fork_unsafe("cpu") == ""  # else every split test here would pass without a fork
    parent = os.getpid()
    ran_in = []
    real = runner._run_rest

    def spy(*args, **kw):
        ran_in.append(os.getpid())
        return real(*args, **kw)
    monkeypatch.setattr(runner, "_run_rest", spy)
    verify([reference_spec("drop_path")], Settings(seed=2, max_calls=100), workers=2)
    # the child's own list is lost with it: here only the parent's appends show, and it made none
    assert ran_in == [] and os.getpid() == parent


@pytest.mark.parametrize("how", ["dies", pytest.param("raises", marks=pytest.mark.slow)])
def test_a_failed_child_has_its_part_run_here(monkeypatch, how):
    spec = reference_spec("spatial_dropout_1d")
    settings = Settings(seed=4, max_calls=100)
    one = verify([spec], settings)
    parent = os.getpid()
    real = runner._run_rest

    def broken(*args, **kw):
        if os.getpid() != parent:
            if how == "dies":
                os._exit(3)
            raise RuntimeError("broken child")
        return real(*args, **kw)
    monkeypatch.setattr(runner, "_run_rest", broken)
    two = verify([spec], settings, workers=2)
    assert _fingerprint(two) == _fingerprint(one)


def test_forked_get_says_why_a_child_gave_nothing():
    with pytest.raises(forked.ForkFailed, match="died"):
        forked.fork_call(lambda: os._exit(5)).get()
    with pytest.raises(forked.ForkFailed, match="raised: ValueError: no"):
        forked.fork_call(lambda: (_ for _ in ()).throw(ValueError("no"))).get()
    with pytest.raises(forked.ForkFailed, match="could not be sent back"):
        forked.fork_call(lambda: (lambda: 1)).get()  # a lambda does not pickle
    assert forked.fork_call(lambda: {"a": [1, 2]}).get() == {"a": [1, 2]}


def test_no_fork_where_unsafe_or_with_a_time_budget(monkeypatch):
    assert "cuda" in forked.fork_unsafe("cuda")
    monkeypatch.setattr(forked, "FORK_UNSAFE_MODULES", ("jax", "tensorflow"))
    monkeypatch.setitem(sys.modules, "jax", object())
    assert "jax is imported" in forked.fork_unsafe("cpu")
    monkeypatch.delitem(sys.modules, "jax")

    def refused():
        raise AssertionError("forked although it should not")
    monkeypatch.setattr(forked, "fork_call", lambda fn: refused())
    spec = reference_spec("drop_path")
    verify([spec], Settings(seed=1, max_calls=100, time_budget_s=30.0), workers=2)
    monkeypatch.setitem(sys.modules, "tensorflow", object())
    verify([spec], Settings(seed=1, max_calls=100), workers=2)


@pytest.mark.parametrize("argv, cores, jobs", [
    (["run", "numpy:dropout"], 2, 2),            # one configuration, two cores: its second process
    (["run", "numpy:dropout"], 1, 1),            # one core: no second process
    (["run", "numpy:dropout", "numpy:zoneout"], 4, 1),  # several: spawned processes only when asked
    (["run", "numpy:dropout", "--jobs", "1"], 2, 1),
    (["run", "numpy:dropout", "numpy:zoneout", "--jobs", "3"], 2, 3),
])
def test_the_command_line_default_jobs(monkeypatch, tmp_path, argv, cores, jobs):
    import dropverify.pipeline as pipeline
    from dropverify.cli import main
    seen = []

    def fake(specs, settings, checks=None, progress=None, flags=False, ready=None, workers=1):
        seen.append(workers)
        raise SystemExit(0)
    monkeypatch.setattr(pipeline, "run_configurations", fake)
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    with pytest.raises(SystemExit):
        main(argv + ["--quiet", "--out", str(tmp_path / "out")])
    assert seen == [jobs]


def test_the_api_takes_jobs():
    import dropverify
    from dropverify.errors import InvalidArgument
    one = dropverify.verify("numpy:drop_path", seed=3, settings=Settings(max_calls=150))
    two = dropverify.verify("numpy:drop_path", seed=3, settings=Settings(max_calls=150), jobs=2)
    assert _fingerprint(two.run) == _fingerprint(one.run)
    for bad in (0, 1.5, True):
        with pytest.raises(InvalidArgument, match="jobs="):
            dropverify.verify("numpy:drop_path", jobs=bad)
