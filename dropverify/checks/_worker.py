"""The target thread: every call into target code runs on one persistent worker thread.

Promises: :func:`guarded` runs a function there under a wall-clock limit and turns any
exception or hang into :class:`TargetError`; :data:`TARGET_TIME` and :data:`DISPATCHES`
count the time spent inside target code and the hand-offs. It imports nothing from the
other check modules (they build on it).
"""
from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple


class TargetError(Exception):
    """The target raised, hung, or returned an output of the wrong shape or dtype."""


class BudgetExhausted(Exception):
    """The configuration's call or time budget is spent (or the check's share of it) before the
    check drew all the calls it planned: the check evaluates what it has (its last look), or, with
    nothing to evaluate, is INCONCLUSIVE "not assessed". Never a :class:`TargetError`: a check that
    reads a TargetError as the target's answer (an invalid p rejected) must not read this one so."""


class TargetHung(Exception):
    """A call of the running configuration hung earlier (past ``call_timeout_s``): the target is
    not called again in this configuration (its abandoned thread may still run target code), so
    every later check is an ERROR at once instead of waiting out the limit again."""


class _Worker:
    """One persistent daemon thread that runs target code, so frameworks keep their thread
    pools warm between calls (a fresh thread per call costs OpenMP start-up every time).
    A call that hangs past its limit abandons the worker; the next call starts a new one.

    Hand-off: one job slot and two raw locks (``wake`` released by the caller, ``done`` by the
    worker), cheaper than a Queue plus an Event per call; callers are serialised by
    :data:`_DISPATCH`."""

    def __init__(self) -> None:
        import _thread
        self.wake = _thread.allocate_lock()
        self.wake.acquire()
        self.job: Any = None
        self.progress = 0.0  # perf_counter of the last finished call of a batch
        self.abandoned = False  # set when a call hung: a batch in progress stops after that call
        self.thread = threading.Thread(target=self._loop, daemon=True, name="dropverify-target")
        self.thread.start()

    def _loop(self) -> None:
        _LOCAL.worker = self
        while True:
            self.wake.acquire()
            fn, box, done, what, batch = self.job
            self.job = None
            t0 = time.perf_counter()
            try:
                box.append(fn(_record) if batch else fn())
            except BaseException as exc:  # noqa: BLE001 - any failure of foreign code is reported
                box.append(_Failed(exc))
            if not batch:
                _record(what, time.perf_counter() - t0)
            done.release()


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_WORKER: Optional[_Worker] = None
_WORKER_LOCK = threading.Lock()
_DISPATCH = threading.Lock()
_LOCAL = threading.local()


def _after_fork_in_child() -> None:
    """A forked child has only the thread that forked: the target thread, and any lock another
    thread held, did not come along. Start afresh (a new worker on the first call) instead of
    handing calls to a thread that does not exist (each would wait out its limit)."""
    global _WORKER, _WORKER_LOCK, _DISPATCH
    _WORKER, _WORKER_LOCK, _DISPATCH = None, threading.Lock(), threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

TARGET_TIME: Dict[str, List[float]] = {}
"""Per kind of guarded call ("forward", "backward", "seed", "build", ...): [calls, seconds spent
inside the target's own code] (measured in the worker thread; for ``make bench``)."""


def _record(what: str, seconds: float) -> None:
    acc = TARGET_TIME.get(what)
    if acc is None:
        acc = TARGET_TIME[what] = [0, 0.0]
    acc[0] += 1
    acc[1] += seconds


def _progress() -> None:
    w = getattr(_LOCAL, "worker", None)
    if w is not None:
        w.progress = time.perf_counter()


@dataclass
class RunScope:
    """What one configuration's run shares with its checks (held by ``CheckContext.scope``; the
    runner sets it through :mod:`dropverify.checks.engine`; a context made elsewhere has an empty
    one: no limits). All times are ``time.perf_counter()`` values; None: no limit.

    * ``cutoff``: no call into target code STARTS after it (the configuration's time budget):
      :func:`guarded` raises :class:`BudgetExhausted` instead, and a batch stops before its next
      call. A call already running may finish within its limit, so a configuration ends within
      its budget plus ``call_timeout_s``.
    * ``hung``: ``""`` inside a configuration the runner runs, then why a call hung once one did
      (set by :func:`guarded`); while non-empty, :func:`guarded` raises :class:`TargetHung` at
      once. None outside a run (a check called on its own is never blocked by an earlier hang).
    * ``deadline``: when the running check's share of the time budget ends (a
      ``CallCounter`` draws no more calls past it, once the check has made its first look);
      ``latest``: when it stops even before its first look.
    * ``hub``: the shared stream's driver while the shared-stream checks run (``._shared``)."""

    cutoff: Optional[float] = None
    hung: Optional[str] = None
    deadline: Optional[float] = None
    latest: Optional[float] = None
    hub: Any = None

    def cutoff_passed(self) -> bool:
        """True once :attr:`cutoff` has passed: no new call into target code may start."""
        return self.cutoff is not None and time.perf_counter() > self.cutoff


_BOUND = threading.local()


def bound_scope() -> Optional[RunScope]:
    """The run scope of the check running in this thread (bound by :func:`bind_scope` while the
    engine runs a check), for code that calls the target without its context at hand."""
    return getattr(_BOUND, "scope", None)


@contextmanager
def bind_scope(scope: Optional[RunScope]) -> Iterator[None]:
    """Bind ``scope`` to this thread while the block runs (the previous binding is restored)."""
    before = getattr(_BOUND, "scope", None)
    _BOUND.scope = scope
    try:
        yield
    finally:
        _BOUND.scope = before


def cutoff_passed(scope: Optional[RunScope] = None) -> bool:
    """True once the cutoff of ``scope`` (default: this thread's bound scope) has passed."""
    scope = scope if scope is not None else bound_scope()
    return scope is not None and scope.cutoff_passed()


DISPATCHES = [0]
"""Hand-offs to the worker thread so far (one per guarded call or batch)."""


def target_time() -> Dict[str, Tuple[int, float]]:
    """A copy of :data:`TARGET_TIME`: calls and seconds inside target code, per kind of call."""
    return {k: (int(v[0]), float(v[1])) for k, v in TARGET_TIME.items()}


def add_target_time(spent: Dict[str, Tuple[int, float]], hand_offs: int = 0) -> None:
    """Add calls and seconds measured elsewhere (a forked child's :func:`target_time`)."""
    for what, (calls, seconds) in spent.items():
        acc = TARGET_TIME.setdefault(what, [0, 0.0])
        acc[0] += int(calls)
        acc[1] += float(seconds)
    DISPATCHES[0] += int(hand_offs)


def reset_target_time() -> None:
    TARGET_TIME.clear()
    DISPATCHES[0] = 0


def _target_error(what: str, exc: BaseException) -> TargetError:
    return TargetError(f"{what} raised {type(exc).__name__}: {exc}".splitlines()[0][:300])


def guarded(fn: Callable[..., Any], timeout_s: float, what: str, batch: bool = False,
            scope: Optional[RunScope] = None) -> Any:
    """Run ``fn`` with a wall-clock limit; any exception or a hang raises TargetError.

    ``batch``: ``fn(record)`` makes several calls; the limit applies to each of them (the
    clock restarts whenever one finishes). ``scope``: the configuration's :class:`RunScope`
    (default: the one bound to this thread, :func:`bound_scope`): past its cutoff nothing starts
    (:class:`BudgetExhausted`); after a hang in this configuration nothing starts either
    (:class:`TargetHung`)."""
    global _WORKER
    if getattr(_LOCAL, "worker", None) is not None:  # already on the target thread
        return fn(_record) if batch else fn()
    scope = scope if scope is not None else bound_scope()
    if scope is not None and scope.hung:
        raise TargetHung(f"not called: an earlier call of this configuration hung ({scope.hung})")
    if scope is not None and scope.cutoff_passed():
        raise BudgetExhausted("the configuration's time budget ended")
    with _DISPATCH:
        DISPATCHES[0] += 1
        with _WORKER_LOCK:
            if _WORKER is None:
                _WORKER = _Worker()
            worker = _WORKER
        import _thread
        box: List[Any] = []
        done = _thread.allocate_lock()
        done.acquire()
        start = time.perf_counter()
        worker.progress = start
        worker.job = (fn, box, done, what, batch)
        worker.wake.release()
        try:
            finished = done.acquire(True, timeout_s)
            while not finished and batch:  # per call: wait on while calls keep finishing
                left = worker.progress + timeout_s - time.perf_counter()
                if left <= 0:
                    break
                finished = done.acquire(True, left)
        except BaseException:  # e.g. KeyboardInterrupt while the target runs: leave that thread behind
            finished = False
            worker.abandoned = True
            with _WORKER_LOCK:
                if _WORKER is worker:
                    _WORKER = None
            raise
        if not finished:
            worker.abandoned = True
            with _WORKER_LOCK:
                if _WORKER is worker:
                    _WORKER = None  # abandon the hung thread
            why = f"{what} did not return within {timeout_s:g} s"
            if scope is not None and scope.hung is not None:  # inside a run: the configuration calls it no more
                scope.hung = why
            raise TargetError(why)
    value = box[0]
    if isinstance(value, _Failed):
        raise _target_error(what, value.exc)
    return value
