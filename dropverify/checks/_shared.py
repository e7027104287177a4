"""One stream of calls per configuration, read by every check that can read it.

Holm's procedure controls the family-wise error rate under ANY dependence between the
statistics of a run, so the statistical checks need not draw calls of their own: the rate,
per-position, expectation, pair, repeat, long-horizon and dispersion statistics all read the
same seeded stream of training calls. The stream is drawn once; each check consumes it at
its own pace and stops at its own sequential looks; the stream stops when every check has
decided (or the configuration's call / time budget ends).

Mechanics. Each reading check runs in its own thread, but only one thread runs at a time: a
check that needs calls not yet drawn hands the baton to the driver, which draws as many calls
as the most demanding waiting check asked for (at most :data:`~._stream.STREAM_BATCH` per
dispatch, read when drawing), appends them to every reader's queue, and hands the baton to each
waiting reader in registration order. Execution is therefore sequential and deterministic: same seed, same
calls, same results, whatever the thread scheduler does. A reader sees exactly the calls
``0, 1, 2, ...`` of the one stream. Checks that read the shared stream must touch the target
through it only (the registry marks them ``shares_stream``); the stream runs on its own
instance of the target, seeded once, so its call indices are the layer's own.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import _stream
from ._stream import BudgetExhausted, Stream, _Raise, first_look_pending
from ._worker import TargetError, TargetHung

SHARED = "shared stream"
"""The name the shared stream's probe and seed derive from (``ctx.seeds(SHARED)``)."""


class SharedReader:
    """One check's view of the shared stream: ``next``, ``take`` and ``prefetch`` as on a
    :class:`~._stream.Stream`, served from the driver's draws. When the budget has ended (the
    configuration's, or past the stream's time share for a check that has made its first look),
    ``take`` returns ``[]`` and ``next`` raises :class:`BudgetExhausted` (``reason`` says why)."""

    def __init__(self, hub: "SharedHub", index: int, inputs: Any) -> None:
        self.hub, self.index, self.inputs = hub, index, inputs
        self.queue: List[Any] = []
        self.want = 0
        self.hint = 0
        self.consumed = 0
        self.finished = False
        self.pending = False  # its check has not made its first look (the share does not end it)
        self.deadline = hub.deadline  # its check's share of the configuration's time budget ends
        self.latest: Optional[float] = None  # ... and, before its first look, at the latest
        self.turn = threading.Event()

    def __iter__(self) -> "SharedReader":
        return self

    @property
    def reason(self) -> str:
        """Why the stream ended for this reader ('' while it has not)."""
        if self.hub.exhausted_reason:
            return self.hub.exhausted_reason
        return (f"the check's share of the configuration's time budget ended after {self.hub.drawn} calls of "
                f"the shared stream" if self.share_ended() else "")

    def share_ended(self) -> bool:
        """True once this check's share of the time budget has ended (for a check before its
        first look: once its latest time has passed)."""
        now = time.perf_counter()
        if self.deadline is None or now <= self.deadline:
            return False
        return not self.pending or (self.latest is not None and now > self.latest)

    def _wait_for(self, n: int) -> None:
        # even past its share a check waits for the driver: calls drawn for the others are free to read
        self.pending = first_look_pending()
        if not self.queue and not self.hub.exhausted:
            self.want = max(1, n, self.hint)
            self.hub._yield_to_driver(self)

    def prefetch(self, n: int) -> None:
        """A hint: the check will read at least ``n`` more calls (the driver draws them in
        fewer dispatches)."""
        self.hint = max(0, int(n))

    def take(self, n: int) -> List[Any]:
        self._wait_for(n)
        got, self.queue = self.queue[:n], self.queue[n:]
        self.consumed += sum(1 for y in got if not isinstance(y, _Raise))
        self.hint = max(0, self.hint - len(got))
        return got

    def __next__(self) -> np.ndarray:
        got = self.take(1)
        if not got:
            raise BudgetExhausted(self.reason or f"the stream ended after {self.hub.drawn} calls")
        y = got[0]
        if isinstance(y, _Raise):
            raise y.error
        return y


class SharedHub:
    """The driver of one configuration's shared stream (see the module docstring).

    ``stream``: the seeded :class:`Stream` of the shared target instance; ``max_calls``: the
    most calls the stream may draw; ``deadline``: a ``time.perf_counter()`` value (the stream's
    share of the configuration's time budget; ``run`` can set one per check) after which calls
    are drawn only for checks that have not made their first look (None: no time share); past the
    configuration's time budget (the stream's ``scope.cutoff``) none are drawn."""

    def __init__(self, stream: Stream, inputs: Any, max_calls: int, deadline: Optional[float] = None) -> None:
        self.stream, self.inputs = stream, inputs
        self.max_calls, self.deadline = int(max_calls), deadline
        self.readers: List[SharedReader] = []
        self.by_thread: Dict[int, SharedReader] = {}
        self.drawn = 0
        self.dead: Optional[_Raise] = None
        self.exhausted = False
        self.exhausted_reason = ""
        self.driver_turn = threading.Event()
        self.draw_seconds = 0.0

    # ------------------------------------------------------------------ reader side
    def reader(self) -> SharedReader:
        """The calling check thread's reader."""
        r = self.by_thread.get(threading.get_ident())
        if r is None:
            raise RuntimeError("shared stream read from a thread the hub did not start")
        return r

    def _yield_to_driver(self, r: SharedReader) -> None:
        r.turn.clear()
        self.driver_turn.set()
        r.turn.wait()

    # ------------------------------------------------------------------ driver side
    def _resume(self, r: SharedReader) -> None:
        self.driver_turn.clear()
        r.turn.set()
        self.driver_turn.wait()

    def _draw(self, k: int, stop_at: Optional[float] = None) -> List[Any]:
        if self.dead is not None:
            return [self.dead]
        t0 = time.perf_counter()
        try:
            got = self.stream.take(k, stop_at)
        except (TargetError, TargetHung) as exc:  # the seed call failed
            got = [_Raise(exc)]
        except BudgetExhausted:  # the configuration's time budget ended before the call started
            got = []
        self.draw_seconds += time.perf_counter() - t0
        for y in got:  # every reader reads the same object: none may change it under the others
            if isinstance(y, np.ndarray):
                y.flags.writeable = False
        self.drawn += sum(1 for y in got if not isinstance(y, _Raise))
        if got and isinstance(got[-1], _Raise):
            self.dead = got[-1]
        return got

    def run(self, jobs: Sequence[Callable[[], Any]],
            on_done: Optional[Callable[[int, Any, float], None]] = None,
            deadlines: Optional[Sequence[Tuple[Optional[float], Optional[float]]]] = None) -> List[Tuple[str, Any]]:
        """Run each job in its own thread, cooperatively, feeding their readers from one
        stream. Returns one ``("ok", value)`` or ``("raised", exception)`` per job, in order;
        ``on_done(i, outcome, seconds)`` is called as each job finishes; ``deadlines``: per
        job, when its time share ends and, before its first look, the latest it may draw to
        (default: the hub's ``deadline``, no latest)."""
        outcomes: List[Tuple[str, Any]] = [("raised", RuntimeError("not run"))] * len(jobs)
        started: List[float] = [0.0] * len(jobs)

        def body(i: int, job: Callable[[], Any], r: SharedReader) -> None:
            r.turn.wait()
            try:
                outcomes[i] = ("ok", job())
            except BaseException as exc:  # noqa: BLE001 - reported by the caller
                outcomes[i] = ("raised", exc)
            r.finished = True
            if on_done is not None:
                try:
                    on_done(i, outcomes[i], time.perf_counter() - started[i])
                except Exception:  # noqa: BLE001 - progress output must never stop a run
                    pass
            self.driver_turn.set()

        threads = []
        for i, job in enumerate(jobs):
            r = SharedReader(self, i, self.inputs)
            if deadlines is not None:
                r.deadline, r.latest = deadlines[i]
            self.readers.append(r)
            t = threading.Thread(target=body, args=(i, job, r), daemon=True, name=f"dropverify-check-{i}")
            t.start()
            self.by_thread[t.ident] = r
            threads.append(t)
        for r in self.readers:  # each job runs until it first needs calls (or finishes)
            started[r.index] = time.perf_counter()
            self._resume(r)
        while True:
            waiting = [r for r in self.readers if not r.finished and not r.queue]
            if not waiting:
                break
            if self.drawn >= self.max_calls or self.stream.scope.cutoff_passed():
                self.exhausted = True
                self.exhausted_reason = (f"the configuration's call budget ({self.max_calls} calls) is spent"
                                         if self.drawn >= self.max_calls else
                                         f"the configuration's time budget ended after {self.drawn} calls")
            # past the stream's time share, only checks before their first look still draw
            drawing = [] if self.exhausted else [r for r in waiting if not r.share_ended()]
            if drawing:
                k = min(_stream.STREAM_BATCH, max(r.want for r in drawing), self.max_calls - self.drawn)
                # a batch stops once no reader it is drawn for may read more (its share, or latest)
                stops = [r.latest if r.pending else r.deadline for r in drawing]
                got = self._draw(max(1, k), None if None in stops else max(stops))
                if not got:  # the configuration's time budget ended
                    self.exhausted = True
                    self.exhausted_reason = f"the configuration's time budget ended after {self.drawn} calls"
                for r in self.readers:
                    if not r.finished:
                        r.queue.extend(got)
            for r in waiting:
                r.want = 0
                self._resume(r)
        for t in threads:
            t.join()
        return outcomes
