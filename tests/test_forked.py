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


def _runs_logged(monkeypatch, tmp_path, die_in_child=None):
    """Log (pid, check) of every check run (by either process) to a file; ``die_in_child``: the
    child dies ('dies') or raises ('raises') at its first check instead of running it."""
    log = tmp_path / "ran.txt"
    parent = os.getpid()
    real = runner._run_one

    def spy(ctx, check, plan):
        if os.getpid() != parent and die_in_child == "dies":
            os._exit(3)
        if os.getpid() != parent and die_in_child == "raises":
            raise RuntimeError("broken child")
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {check.name}\n")
        return real(ctx, check, plan)
    monkeypatch.setattr(runner, "_run_one", spy)
    return lambda: [tuple(line.split()) for line in log.read_text().splitlines()] if log.exists() else []


def test_the_child_and_this_process_share_the_rest(monkeypatch, tmp_path):
    assert forked.fork_unsafe("cpu") == ""  # else every split test here would pass without a fork
    ran = _runs_logged(monkeypatch, tmp_path)
    claimed = []
    real_fork, real_shared = runner._fork_rest, engine.run_shared

    def fork(*args):
        got = real_fork(*args)
        claimed.append(got[1])  # (child, claims)
        return got

    def shared(*args):  # the shared stream starts once the child has claimed its first check
        for _ in range(3000):
            if claimed and claimed[-1].taken.value > 0:
                break
            __import__("time").sleep(0.01)
        return real_shared(*args)
    monkeypatch.setattr(runner, "_fork_rest", fork)
    monkeypatch.setattr(engine, "run_shared", shared)
    spec = reference_spec("drop_path")
    settings = Settings(seed=2, max_calls=100)
    two = verify([spec], settings, workers=2)
    runs = ran()
    pids = {pid for pid, _ in runs}
    names = [name for _, name in runs]
    assert pids - {str(os.getpid())}, "the child ran no check"
    assert len(names) == len(set(names)) == claimed[0].n  # every check off the stream once, in one process
    monkeypatch.setattr(runner, "_fork_rest", real_fork)
    monkeypatch.setattr(engine, "run_shared", real_shared)
    assert _fingerprint(two) == _fingerprint(verify([spec], settings))


@pytest.mark.parametrize("how", ["dies", pytest.param("raises", marks=pytest.mark.slow)])
def test_a_failed_child_has_its_checks_run_here(monkeypatch, tmp_path, how):
    spec = reference_spec("spatial_dropout_1d")
    settings = Settings(seed=4, max_calls=100)
    one = verify([spec], settings)
    ran = _runs_logged(monkeypatch, tmp_path, how)
    two = verify([spec], settings, workers=2)
    assert _fingerprint(two) == _fingerprint(one)
    assert {pid for pid, _ in ran()} == {str(os.getpid())}  # what the child had claimed ran here


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


def _small_net():
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(16, 32)
            self.drop = torch.nn.Dropout(0.2)

        def forward(self, x):
            return torch.nn.functional.dropout(self.drop(self.lin(x)).relu(), 0.1, self.training)
    torch.manual_seed(0)
    return Net(), torch.randn(8, 16)


def test_a_scan_shares_each_site_between_two_processes(monkeypatch):
    """A scan's sites have no built-in name (no spawned process can rebuild them): with jobs = 2
    each site's configuration is split in turn, with the same results as one process."""
    pytest.importorskip("torch")
    from dropverify.errors import InvalidArgument
    from dropverify.modelscan.api import scan
    settings = Settings(seed=3, max_calls=200)
    one = scan(*_small_net(), settings=settings)
    forks = []
    real = forked.fork_call
    monkeypatch.setattr(forked, "fork_call", lambda fn: forks.append(1) or real(fn))
    two = scan(*_small_net(), settings=settings, jobs=2)
    sited = [t for t in one.run.targets if t.stream]  # the sites whose shared stream ran
    assert len(sited) == 2 and len(forks) == len(sited)
    assert _fingerprint(two.run) == _fingerprint(one.run)
    assert two.scan.sites == one.scan.sites and two.run.m_statistical == one.run.m_statistical
    with pytest.raises(InvalidArgument, match="jobs="):
        scan(*_small_net(), jobs=0)


def test_the_scan_command_takes_jobs(monkeypatch, capsys):
    from dropverify.cli import main
    import dropverify.modelscan.api as api
    seen = []

    def fake(model, inputs, **kw):
        seen.append(kw["jobs"])
        raise SystemExit(0)
    monkeypatch.setattr(api, "scan", fake)
    for argv, cores, jobs in ((["--jobs", "1"], 2, 1), ([], 2, 2), ([], 1, 1)):
        monkeypatch.setattr(os, "cpu_count", lambda: cores)
        with pytest.raises(SystemExit):
            main(["scan", "examples/scan/scan_models.py:correct", "--shape", "8,5,16", "--quiet"] + argv)
    assert seen == [1, 2, 1]
    assert main(["scan", "examples/scan/scan_models.py:correct", "--shape", "8,5,16", "--jobs", "0"]) == 2
    assert "--jobs 0, but should be at least 1" in capsys.readouterr().err


class _CarriesOver:
    """Dropout whose draws continue from call to call whatever the seed (its own generator, made
    once): the seed checks FAIL it, and a check's numbers would depend on the calls before it."""

    def __init__(self, p):
        self.p, self.training, self.rng = p, True, None
        self._own = __import__("numpy").random.default_rng(0)

    def forward(self, x):
        if not self.training:
            return x
        return x * (self._own.random(x.shape) >= self.p) / (1 - self.p)


def test_a_layer_that_ignores_the_seed_gives_the_same_numbers_in_one_or_two_processes():
    """Each check off the shared stream runs on a freshly built instance, so nothing carries over
    from the checks before it, whichever process ran them."""
    from dropverify.targets import numpy_spec
    spec = numpy_spec("mine:carries_over", "dropout", lambda prm: _CarriesOver(**prm), {"p": 0.3},
                      shape=(16, 8, 4, 4))
    settings = Settings(seed=6, max_calls=200)
    one = verify([spec], settings)
    assert any(r.check == "same_seed_reproduces" and r.verdict == "FAIL" for r in one.all_results())
    assert _fingerprint(verify([spec], settings, workers=2)) == _fingerprint(one)
    assert _fingerprint(verify([spec], settings, workers=2)) == _fingerprint(one)
