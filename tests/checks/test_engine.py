"""The engine's public seam (issue 25): run state on the context, not in module globals; the
shared stream's outputs read-only and decoded once for all readers, with the same results."""
from __future__ import annotations

import time

import numpy as np
import pytest

from dropverify.checks import CheckContext, _memo, _stream, _worker, engine
from dropverify.runner import verify
from dropverify.settings import Settings
from dropverify.targets import reference_spec


def _ctx(settings: Settings = Settings()) -> CheckContext:
    spec = reference_spec("dropout", {"p": 0.3}, shape=(8, 16))
    return CheckContext(spec=spec, contract=spec.resolved_contract(), params=spec.resolved_params(), shape=(8, 16),
                        settings=settings, alpha_each=1e-3, seed=1)


def test_no_run_state_in_module_globals():
    for module, name in ((_stream, "DEADLINE"), (_stream, "LATEST"), (_worker, "CUTOFF"), (_worker, "HUNG")):
        assert not hasattr(module, name), f"{module.__name__}.{name} is back"


def test_a_configuration_scope_lives_on_the_context_and_is_cleared_after():
    ctx = _ctx()
    assert ctx.scope.cutoff is None and ctx.scope.hung is None
    with engine.configuration(ctx, cutoff=time.perf_counter() - 1.0, shared_deadline=5.0) as scope:
        assert ctx.scope is scope and scope.hung == "" and scope.deadline == 5.0
        engine.set_share(ctx, (1.0, 2.0))
        assert (ctx.scope.deadline, ctx.scope.latest) == (1.0, 2.0)
        with pytest.raises(engine.BudgetExhausted):  # past the cutoff no call starts
            ctx.call(ctx.target, ctx.seeds("x").probe())
    assert ctx.scope.cutoff is None and ctx.scope.deadline is None and _worker.bound_scope() is None


def test_run_check_binds_the_scope_for_calls_made_without_the_context():
    """A check that calls ``guarded`` itself (gradients, edges, ...) obeys its configuration's cutoff."""
    ctx = _ctx()
    seen = []

    class Spec:
        name = "probe_check"

        @staticmethod
        def statistical(ctx):
            return 0

        @staticmethod
        def run(ctx):
            seen.append(_worker.bound_scope())
            engine.guarded(lambda: None, 1.0, "forward")
            return []

    with engine.configuration(ctx, cutoff=time.perf_counter() - 1.0, shared_deadline=None):
        out = engine.run_check(Spec, ctx)
    assert seen and seen[0] is not None and seen[0].cutoff is not None
    assert out[0].verdict == "INCONCLUSIVE" and "time budget ended" in out[0].message
    assert _worker.bound_scope() is None


def test_the_memo_decodes_a_read_only_output_once_and_hands_out_read_only_arrays():
    ctx = _ctx()
    inputs = ctx.seeds("m").probe()
    y = ctx.call(ctx.target, inputs)
    fresh = ctx.contract.decode_dropped(inputs, y, ctx.params)
    assert ctx.dropped(inputs, y) is not ctx.dropped(inputs, y)  # writable output: decoded afresh
    y.flags.writeable = False
    first = ctx.dropped(inputs, y)
    assert ctx.dropped(inputs, y) is first and np.array_equal(first, fresh) and not first.flags.writeable
    other = CheckContext(**{**ctx.__dict__, "params": {"p": 0.5}})  # a copy with other parameters shares nothing
    assert other.dropped(inputs, y) is not first
    with pytest.raises(ValueError):
        first[0] = True


def test_the_memo_keeps_results_identical(monkeypatch):
    """Same seed, same results (check, verdict, estimate, p-value, n) with and without the memo."""
    spec = reference_spec("dropout", {"p": 0.3}, shape=(4, 32))

    def fingerprint():
        run = verify([spec], Settings(seed=5, max_calls=300))
        return [(r.check, r.verdict, repr(r.estimate), repr(r.p_value), r.n) for r in run.all_results()]

    calls = {"get": 0, "compute": 0}
    original = _memo.DecodeMemo.get

    def counting(self, kind, owner, inputs, y, compute):
        calls["get"] += 1
        return original(self, kind, owner, inputs, y, lambda: (calls.__setitem__("compute", calls["compute"] + 1),
                                                               compute())[1])

    monkeypatch.setattr(_memo.DecodeMemo, "get", counting)
    with_memo = fingerprint()
    assert calls["compute"] < calls["get"] / 2, calls  # the shared stream's readers share their decodes
    monkeypatch.setattr(_memo.DecodeMemo, "get", lambda self, kind, owner, inputs, y, compute: compute())
    assert fingerprint() == with_memo
    assert len(with_memo) > 20


def test_a_process_forked_after_a_run_calls_its_targets_at_once():
    """fork() copies only the forking thread: a child of a process that already ran a target
    (its worker thread alive in the parent) starts a worker of its own instead of handing calls
    to a thread it does not have (before: every call waited out its limit)."""
    import multiprocessing as mp
    import time

    from dropverify.checks._worker import guarded

    assert guarded(lambda: 1, 5.0, "forward") == 1  # the parent's worker thread exists now
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        t0 = time.perf_counter()
        assert pool.apply(_call_in_child) == 2
        assert time.perf_counter() - t0 < 4.0  # far below the 5 s limit a dead worker would cost


def _call_in_child() -> int:
    from dropverify.checks._worker import guarded
    return guarded(lambda: 2, 5.0, "forward")
