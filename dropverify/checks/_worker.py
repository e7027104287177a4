"""The target thread: every call into target code runs on one persistent worker thread.

Promises: :func:`guarded` runs a function there under a wall-clock limit and turns any
exception or hang into :class:`TargetError`; :data:`TARGET_TIME` and :data:`DISPATCHES`
count the time spent inside target code and the hand-offs. It imports nothing from the
other check modules (they build on it).
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple


class TargetError(Exception):
    """The target raised, hung, or returned an output of the wrong shape or dtype."""


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


DISPATCHES = [0]
"""Hand-offs to the worker thread so far (one per guarded call or batch)."""


def target_time() -> Dict[str, Tuple[int, float]]:
    """A copy of :data:`TARGET_TIME`: calls and seconds inside target code, per kind of call."""
    return {k: (int(v[0]), float(v[1])) for k, v in TARGET_TIME.items()}


def reset_target_time() -> None:
    TARGET_TIME.clear()
    DISPATCHES[0] = 0


def _target_error(what: str, exc: BaseException) -> TargetError:
    return TargetError(f"{what} raised {type(exc).__name__}: {exc}".splitlines()[0][:300])


def guarded(fn: Callable[..., Any], timeout_s: float, what: str, batch: bool = False) -> Any:
    """Run ``fn`` with a wall-clock limit; any exception or a hang raises TargetError.

    ``batch``: ``fn(record)`` makes several calls; the limit applies to each of them (the
    clock restarts whenever one finishes)."""
    global _WORKER
    if getattr(_LOCAL, "worker", None) is not None:  # already on the target thread
        return fn(_record) if batch else fn()
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
            raise TargetError(f"{what} did not return within {timeout_s:g} s")
    value = box[0]
    if isinstance(value, _Failed):
        raise _target_error(what, value.exc)
    return value
