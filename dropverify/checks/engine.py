"""The public seam between the runner and the checks' engine.

The runner plans a configuration (which checks, the time budget's plan, Holm); this module runs
it. Everything a configuration's run shares with its checks lives on the context,
``ctx.scope`` (:class:`RunScope`: the time budget's cutoff, the running check's share of it, the
hang flag, the shared stream's hub); nothing here is process-wide. Promises:

* :func:`configuration` opens a configuration's scope on ``ctx`` (cutoff, shared stream's
  share, hang detection) and clears it on exit, also when a check raises;
* :func:`set_share` gives the next check its share of the time budget;
* :func:`run_check` runs one check (or one part of it) and returns its results: a spent budget
  is an INCONCLUSIVE "not assessed", an earlier hang an ERROR, a crash an ERROR saying where;
  only :class:`NotInformative` propagates (the caller reports the check as not applicable);
* :func:`run_shared` runs the ``shares_stream`` checks on ONE seeded stream (``._shared``):
  per check, its results or its NotInformative, in the order given;
* :func:`target_time`, :func:`reset_target_time`, :func:`add_target_time`, :func:`dispatches`, :func:`stream_batch`,
  :func:`set_stream_batch`: the measurements and the one tuning knob ``make bench`` uses;
  :func:`guarded` runs a function in the target thread under a wall-clock limit.
"""
from __future__ import annotations

import time
import traceback
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from ..results import ERROR, INCONCLUSIVE, CheckResult
from . import _stream, _worker
from ._sequential import NotInformative
from ._shared import SHARED, SharedHub
from ._stream import BudgetExhausted, set_first_look_pending
from ._worker import RunScope, TargetError, TargetHung, bind_scope, guarded

if TYPE_CHECKING:
    from . import CheckSpec
    from ._core import CheckContext

__all__ = ["RunScope", "NotInformative", "BudgetExhausted", "TargetError", "TargetHung", "configuration",
           "set_share", "run_check", "run_shared", "target_time", "reset_target_time", "add_target_time", "dispatches",
           "set_stream_batch", "stream_batch", "guarded"]

Share = Tuple[Optional[float], Optional[float]]
"""(end of a check's share of the time budget, latest it may draw for its first look), as
``time.perf_counter()`` values; None: no limit."""


@contextmanager
def configuration(ctx: "CheckContext", cutoff: Optional[float], shared_deadline: Optional[float]) -> Iterator[RunScope]:
    """A fresh scope on ``ctx`` for one configuration's run: no call into its target starts after
    ``cutoff``; the shared stream draws until ``shared_deadline``; a call that hangs stops every
    later call of the configuration (:class:`TargetHung`). On exit the context's scope is empty
    again (a check run on its own afterwards has no limits)."""
    ctx.scope = RunScope(cutoff=cutoff, hung="", deadline=shared_deadline)
    try:
        yield ctx.scope
    finally:
        ctx.scope = RunScope()


def set_share(ctx: "CheckContext", share: Share) -> None:
    """The next check's share of the time budget: ``(deadline, latest)`` (see :data:`Share`)."""
    ctx.scope.deadline, ctx.scope.latest = share


def _result(check: "CheckSpec", ctx: "CheckContext", verdict: str, text: str, **kw: Any) -> CheckResult:
    return CheckResult(check=check.name, target=ctx.spec.name, variant=ctx.contract.name, verdict=verdict, text=text,
                       label=ctx.label, statistical=check.statistical(ctx) > 0, **kw)


def run_check(check: "CheckSpec", ctx: "CheckContext",
              job: Optional[Callable[[], List[CheckResult]]] = None) -> List[CheckResult]:
    """Run ``check`` (or ``job``, one of its parts) on ``ctx`` in this thread, with the context's
    scope bound to the thread (target calls made without the context at hand obey it too). A
    spent budget before its first look is INCONCLUSIVE "not assessed"; a call refused after an
    earlier hang, or any crash, an ERROR; :class:`NotInformative` propagates."""
    t0 = time.perf_counter()
    set_first_look_pending(False)
    with bind_scope(ctx.scope):
        try:
            return list(job() if job is not None else check.run(ctx))
        except NotInformative:
            raise
        except BudgetExhausted as why:  # the time budget ended before the check's first look (or before it ran)
            statistical = check.statistical(ctx) > 0
            return [_result(check, ctx, INCONCLUSIVE, f"not assessed: {why} before its "
                            f"{'first look' if statistical else 'calls were made'}; nothing certified",
                            seconds=time.perf_counter() - t0, details={"budget": str(why)})]
        except TargetHung as why:  # an earlier call of this configuration hung: the target is not called again
            return [_result(check, ctx, ERROR, str(why), seconds=time.perf_counter() - t0)]
        except Exception as exc:  # noqa: BLE001 - a crashing check or target is an ERROR; the run goes on
            where = traceback.extract_tb(exc.__traceback__)[-1]
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}".rstrip(": ")
            return [_result(check, ctx, ERROR, f"check crashed: {reason} (at {where.name}:{where.lineno})",
                            seconds=time.perf_counter() - t0)]


def run_shared(checks: Sequence["CheckSpec"], ctx: "CheckContext",
               finished: Optional[Callable[["CheckSpec", float], None]] = None,
               log: Optional[List[Tuple[str, int]]] = None,
               share_for: Optional[Callable[["CheckSpec"], Share]] = None) -> List[Any]:
    """Run the ``shares_stream`` checks of one configuration on ONE stream of calls (see
    :mod:`._shared`): per check, its results or its NotInformative. ``finished(check, seconds)``
    as each check finishes (after its last part); ``log`` receives ("drawn", calls drawn), then
    (check, calls it read) per reading check, most first; ``share_for(check)``: its share of the
    time budget (default: the scope's deadline for all, no latest)."""
    seeds = ctx.seeds(SHARED)
    inputs = seeds.probe()
    try:
        target = ctx.build()  # its own instance: the stream's call indices are the layer's own
    except (TargetError, TargetHung, BudgetExhausted) as exc:
        verdict, text = (INCONCLUSIVE, f"not assessed: {exc}") if isinstance(exc, BudgetExhausted) \
            else (ERROR, str(exc))
        return [[_result(c, ctx, verdict, text)] for c in checks]
    hub = SharedHub(ctx.stream(inputs, seeds.seed(), target=target), inputs, ctx.settings.max_calls,
                    ctx.scope.deadline)
    jobs, owner = [], []
    for i, c in enumerate(checks):
        parts = None
        if c.parts is not None:
            try:
                parts = c.parts(ctx)
            except Exception:  # noqa: BLE001 - the check then runs whole and reports its own crash
                parts = None
        for job in parts if parts is not None else [lambda c=c: c.run(ctx)]:
            jobs.append(lambda c=c, job=job: run_check(c, ctx, job))
            owner.append(i)
    left = [owner.count(i) for i in range(len(checks))]
    t_start = time.perf_counter()

    def on_done(j: int, outcome: Any, seconds: float) -> None:
        i = owner[j]
        left[i] -= 1
        if left[i] == 0 and finished is not None:
            finished(checks[i], time.perf_counter() - t_start)

    ctx.scope.hub = hub
    try:
        outcomes = hub.run(jobs, on_done, None if share_for is None else [share_for(checks[i]) for i in owner])
    finally:
        ctx.scope.hub = None
    if log is not None:
        log.append(("drawn", hub.drawn))
        read: Dict[str, int] = {}
        for r in hub.readers:
            name = checks[owner[r.index]].name
            read[name] = max(read.get(name, 0), r.consumed)
        log.extend(sorted(read.items(), key=lambda kv: -kv[1]))
    out: List[Any] = [[] for _ in checks]
    for i, (kind, value) in zip(owner, outcomes):
        c = checks[i]
        if isinstance(out[i], NotInformative):
            continue
        if kind == "ok":
            out[i].extend(value)
        elif isinstance(value, NotInformative):
            out[i] = value
        else:
            out[i].append(_result(c, ctx, ERROR, f"check crashed: {type(value).__name__}: {value}"))
    return out


def target_time() -> Dict[str, Tuple[int, float]]:
    """Calls and seconds spent inside target code so far, per kind of call ("forward",
    "backward", "seed", "build", ...), measured in the target thread around each call only."""
    return _worker.target_time()


def reset_target_time() -> None:
    """Zero :func:`target_time` and :func:`dispatches`."""
    _worker.reset_target_time()


def add_target_time(spent: Dict[str, Tuple[int, float]], hand_offs: int = 0) -> None:
    """Add another process's :func:`target_time` (and :func:`dispatches`) to this one's: a part
    of the run made in a forked child counts where the run's totals are read."""
    _worker.add_target_time(spent, hand_offs)


def dispatches() -> int:
    """Hand-offs to the target thread since :func:`reset_target_time` (one per guarded call or batch)."""
    return int(_worker.DISPATCHES[0])


def stream_batch() -> int:
    """The most calls of one stream drawn per hand-off to the target thread."""
    return int(_stream.STREAM_BATCH)


def set_stream_batch(n: int) -> int:
    """Draw at most ``n`` calls of one stream per hand-off to the target thread (1: one call per
    hand-off; results are the same for every n). Returns the previous value (``make bench``
    compares the two side by side)."""
    before = _stream.STREAM_BATCH
    _stream.STREAM_BATCH = max(1, int(n))
    return before
