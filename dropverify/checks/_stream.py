"""Streams of training calls and the budget that ends them.

Promises: a :class:`Stream` makes the same calls in the same order whether drawn one at a
time or in batches (:data:`STREAM_BATCH` per dispatch); :class:`CallCounter` draws up to a
cumulative count and raises :class:`BudgetExhausted` once the running check's time share
(``RunScope.deadline`` of the context's scope) has passed — never before the check's first look
(:func:`first_look`) —, once the configuration's time budget (``RunScope.cutoff``) has passed, or
once the stream has ended. No run state lives here: it is on the context (``ctx.scope``).
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator, List, Optional, Tuple

import numpy as np

from ..contracts import Inputs
from ..targets._base import Target
from ._worker import (_LOCAL, BudgetExhausted, RunScope, TargetError, _progress, _target_error, bound_scope,
                      guarded)

if TYPE_CHECKING:
    from ._core import CheckContext


class Stream:
    """Successive training calls of one target after one seed (what :meth:`CheckContext.stream`
    returns). ``next(stream)`` makes one guarded call, as before; :meth:`take` makes ``n``
    consecutive calls in ONE dispatch to the worker thread. Both run exactly the calls one at
    a time would, in the same order (the seed lazily, at the first draw): only the number of
    thread hand-offs differs. Only a consumer that touches no target between the draws may
    use :meth:`take` (:class:`CallCounter`, whose sink only reads outputs)."""

    def __init__(self, ctx: "CheckContext", target: Target, inputs: Inputs, seed: int,
                 expect_shape: Optional[Tuple[int, ...]]) -> None:
        self.ctx, self.target, self.inputs, self.seed = ctx, target, inputs, seed
        self.expect_shape = None if expect_shape is None else tuple(expect_shape)
        self.seeded = False
        self._buffer: List[Any] = []  # calls drawn ahead by :meth:`prefetch`, oldest first

    def __iter__(self) -> "Stream":
        return self

    @property
    def scope(self) -> RunScope:
        """The run scope of the stream's context (its cutoff and the running check's share)."""
        return self.ctx.scope

    def _seed(self) -> None:
        if not self.seeded:
            tgt, seed = self.target, self.seed
            guarded(lambda: tgt.seed(seed), self.ctx.settings.call_timeout_s, "seed", scope=self.scope)
            self.seeded = True

    def __next__(self) -> np.ndarray:
        if self._buffer:
            y = self._buffer.pop(0)
            if isinstance(y, _Raise):
                raise y.error
            return y
        if not self.seeded:
            return self._seed_and_call()
        return self.ctx.call(self.target, self.inputs, expect_shape=self.expect_shape)

    def _seed_and_call(self) -> np.ndarray:
        """The seed and the first call in ONE dispatch (a stream read for one or two calls per
        seed, as the seed checks do, otherwise hands off twice per call); the same calls in the
        same order, each failure reported as the call that failed."""
        tgt, seed, inputs, layout = self.target, self.seed, self.inputs, self.ctx.layout

        def both(record: Callable[[str, float], None]) -> Tuple[Any, Optional[Tuple[str, BaseException]]]:
            for what in ("seed", "forward"):
                t0 = time.perf_counter()
                try:
                    out = tgt.seed(seed) if what == "seed" else tgt.forward(inputs, training=True, layout=layout)
                except BaseException as exc:  # noqa: BLE001 - reported as the call that raised
                    record(what, time.perf_counter() - t0)
                    return None, (what, exc)
                record(what, time.perf_counter() - t0)
                _progress()
            return out, None

        y, failed = guarded(both, self.ctx.settings.call_timeout_s, "forward", batch=True, scope=self.scope)
        if failed is not None and failed[0] == "seed":
            raise _target_error("seed", failed[1])
        self.seeded = True
        if failed is not None:
            raise _target_error("forward", failed[1])
        y = np.asarray(y)
        if self.expect_shape is not None and y.shape != self.expect_shape:
            raise TargetError(f"output shape {y.shape}, but should be {self.expect_shape}")
        return y

    def prefetch(self, n: int) -> None:
        """Draw the next ``n`` calls now, in as few dispatches as :meth:`take` allows;
        ``next`` then serves them in order (a failed call raises where it would have). Only
        for a consumer certain to draw at least ``n`` more calls of this stream and touching no
        other target in between: the target then sees the same calls in the same order."""
        stop_at = stop_time(self.scope)  # past the check's time share it will not draw them all
        while len(self._buffer) < n and not (self._buffer and isinstance(self._buffer[-1], _Raise)):
            try:
                got = self._draw(n - len(self._buffer), stop_at)
            except TargetError as exc:
                got = [_Raise(exc)]
            except BudgetExhausted:  # the next draw of the consumer raises it, after the calls buffered
                break
            if not got:
                break
            self._buffer.extend(got)
            if stop_at is not None and time.perf_counter() > stop_at:
                break

    def take(self, n: int, stop_at: Any = "share") -> List[np.ndarray]:
        """Up to ``n`` outputs of consecutive calls, drawn in one dispatch; stops after the
        first call whose output is too large to buffer more (:data:`BATCH_BYTES`). A call that
        raises or returns the wrong shape ends the batch with a :class:`_Raise` holding the
        TargetError that :meth:`CheckContext.call` would raise: the consumer raises it after
        the outputs before it, exactly where one call at a time would have. A batch also stops
        before a call once ``stop_at`` (a ``time.perf_counter()`` value; default: the running
        check's time share, :func:`stop_time`) has passed. (A sink that raises
        mid-batch leaves the target some calls further on; its check then ends in an ERROR,
        and a later check that seeds the target first is unaffected.)"""
        if self._buffer:
            got, self._buffer = self._buffer[:n], self._buffer[n:]
            return got
        return self._draw(n, stop_time(self.scope) if stop_at == "share" else stop_at)

    def _draw(self, n: int, stop_at: Optional[float] = None) -> List[Any]:
        """:meth:`take` past the prefetched calls: up to ``n`` new calls in one dispatch, the
        second and later ones started only before ``stop_at`` (None: any time) and the budget."""
        self._seed()
        if n <= 1 or STREAM_BATCH <= 1:
            return [self.ctx.call(self.target, self.inputs, expect_shape=self.expect_shape)]
        ctx, tgt, inputs, shape, scope = self.ctx, self.target, self.inputs, self.expect_shape, self.scope
        layout = ctx.layout
        n = min(n, STREAM_BATCH)

        def calls(record: Callable[[str, float], None]) -> Tuple[List[np.ndarray], Optional[BaseException]]:
            out: List[np.ndarray] = []
            worker = getattr(_LOCAL, "worker", None)
            for i in range(n):
                if worker is not None and worker.abandoned:  # its caller gave up: touch the target no more
                    break
                if i and (scope.cutoff_passed() or (stop_at is not None and time.perf_counter() > stop_at)):
                    break  # the time is spent: start no more calls
                t0 = time.perf_counter()
                try:
                    y = tgt.forward(inputs, training=True, layout=layout)
                except BaseException as exc:  # noqa: BLE001 - reported after the outputs before it
                    record("forward", time.perf_counter() - t0)
                    return out, exc
                record("forward", time.perf_counter() - t0)
                _progress()
                y = np.asarray(y)
                out.append(y)
                if (shape is not None and y.shape != shape) or y.nbytes * len(out) >= BATCH_BYTES:
                    break
            return out, None

        outs, exc = guarded(calls, ctx.settings.call_timeout_s, "forward", batch=True, scope=scope)
        if outs and shape is not None and outs[-1].shape != shape:
            return outs[:-1] + [_Raise(TargetError(f"output shape {outs[-1].shape}, but should be {shape}"))]
        if exc is not None:
            return outs + [_Raise(_target_error("forward", exc))]
        return outs


class _Raise:
    """Placeholder in a batch: raise this error when the consumer reaches it."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


STREAM_BATCH = 64
"""Most calls of one stream per dispatch to the worker thread (1: one call per dispatch)."""
BATCH_BYTES = 32 << 20
"""A batch stops growing once its buffered outputs reach this many bytes."""


def deadline_passed(scope: RunScope) -> bool:
    """True once the running check's share of the time budget (``scope.deadline``) has ended."""
    return scope.deadline is not None and time.perf_counter() > scope.deadline


def stop_time(scope: RunScope) -> Optional[float]:
    """When the running check's time share ends for its batches: ``scope.deadline``, or
    ``scope.latest`` while its first look is pending (None: no share)."""
    if scope.deadline is None:
        return None
    return scope.latest if first_look_pending() else scope.deadline


def share_ended(deadline: Optional[float], latest: Optional[float]) -> bool:
    """True when a check whose time share ends at ``deadline`` (before its first look: at
    ``latest``) may draw no more calls now (None: no limit)."""
    now = time.perf_counter()
    if deadline is None or now <= deadline:
        return False
    return not first_look_pending() or (latest is not None and now > latest)


_LOOK = threading.local()


def first_look_pending() -> bool:
    """True while the check running in this thread has not yet made its first look (inside
    :func:`first_look`): a time share does not end its sampling then, only the configuration's
    time budget (``RunScope.cutoff``) does — every check gets its minimum before any gets more."""
    return bool(getattr(_LOOK, "pending", False))


def set_first_look_pending(pending: bool) -> None:
    """Mark (or clear) the running check's first look as pending in this thread."""
    _LOOK.pending = bool(pending)


@contextmanager
def first_look() -> Iterator[None]:
    """Around the calls a check draws before its first look (a pilot, then the first look):
    :func:`first_look_pending` is True inside. Cleared on exit (also when the check raises)."""
    set_first_look_pending(True)
    try:
        yield
    finally:
        set_first_look_pending(False)


class CallCounter:
    """Draws calls from a stream up to a cumulative count, feeding each output to ``sink``.

    A :class:`Stream` is drawn in batches (:meth:`Stream.take`): between two draws only the
    sink runs, and sinks only read outputs, so the target sees the same calls in the same
    order as one at a time."""

    def __init__(self, stream: Iterator[np.ndarray], sink: Callable[[np.ndarray], None]) -> None:
        self.stream, self.sink, self.done = stream, sink, 0

    def _scope(self) -> RunScope:
        """The run scope that bounds this counter: its stream's context's (a stream of steps:
        the scope bound to the running check's thread; none: no limits)."""
        for s in (self.stream, getattr(self.stream, "stream", None)):
            ctx = getattr(s, "ctx", None)
            if ctx is not None and getattr(ctx, "scope", None) is not None:
                return ctx.scope
        return bound_scope() or RunScope()

    def __call__(self, k: int) -> None:
        take = getattr(self.stream, "take", None)
        scope = self._scope()
        while self.done < k:
            if not hasattr(self.stream, "hub"):  # the shared hub keeps its own time
                if scope.cutoff_passed():
                    raise BudgetExhausted(f"the configuration's time budget ended after {self.done} calls")
                if share_ended(scope.deadline, scope.latest):
                    raise BudgetExhausted(f"the check's share of the configuration's time budget ended after "
                                          f"{self.done} calls")
            if take is None:
                try:
                    y = next(self.stream)
                except BudgetExhausted as why:
                    raise _counted(why, self.done) from None
                self.sink(y)
                self.done += 1
                continue
            try:
                got = take(k - self.done)
            except BudgetExhausted as why:  # a guarded call refused to start
                raise _counted(why, self.done) from None
            if not got:
                raise BudgetExhausted(getattr(self.stream, "reason", "")
                                      or f"the stream ended after {self.done} calls")
            for y in got:
                if isinstance(y, _Raise):
                    raise y.error
                self.sink(y)
                self.done += 1


def _counted(why: BudgetExhausted, done: int) -> BudgetExhausted:
    """``why``, saying after how many calls (unless it says so already)."""
    text = str(why)
    return why if " after " in text else BudgetExhausted(f"{text} after {done} calls")
