"""Shared machinery of the checks: settings, context, result objects, the sequential driver.

A check is a small function ``check(ctx) -> list[CheckResult]``; the registry in
``dropverify.checks`` says which checks apply to a contract and how many statistical
results each will produce (the runner needs that count up front to split the run's
family-wise error rate).
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..contracts import Contract, Decoded, Inputs
from ..stats import Look, SequentialPlan
from ..targets._base import Target, TargetSpec

from ..results import ERROR, FAIL, INCONCLUSIVE, PASS, CheckResult, Verdict, fmt  # noqa: F401  (re-exported)


MARGIN_FIELDS = {
    "rate": "rate_rel", "position": "position_rel", "mean": "mean_tol", "variance": "variance_tol",
    "dependence": "dependence_rr", "correlation": "correlation_tol", "gamma": "gamma_rel",
    "dispersion": "dispersion_rel",
}
"""CLI / Python names of the equivalence margins (``--margin rate=0.02``) -> Settings fields."""

DEFAULT_SEED = 20261126
"""The one default master seed: Settings, ``dropverify.verify()``, the CLI and the pytest plugin."""


@dataclass(frozen=True)
class Settings:
    """Run-wide settings.

    alpha: family-wise false-alarm rate of the whole run (Holm across its statistical
    results); power: detection probability that defines each minimum detectable deviation;
    max_calls: sampling budget of one statistical check in calls (or independent steps) of
    the target, and the most calls the configuration's shared stream draws; max_units: soft cap on mask units per check (never below the calls that
    ``fault_fraction`` requires); fault_fraction: a PASS needs enough independent calls that a
    fault striking at least this fraction of calls appears in one of them with probability
    >= 1 - alpha (a fault in fewer calls could hide; the report states the fraction).

    Equivalence margins (what a PASS certifies; stated, never widened — where the budget
    cannot certify one the verdict is INCONCLUSIVE with the margin it could certify):
    ``rate_rel`` x min(p, 1-p) on the drop rate; ``position_rel`` x min(q, 1-q) on every
    position's rate; ``mean_tol`` relative bias of the output; ``variance_tol`` relative;
    ``dependence_rr`` on the relative risk P(event | partner event) / P(event) - 1 of binary
    masks (the event is the rarer outcome, so it is meaningful for p near 0 and near 1);
    ``correlation_tol`` absolute, continuous noise; ``gamma_rel`` relative, DropBlock gamma;
    ``dispersion_rel`` on the ratio of the per-call dropped count's variance to the binomial's.
    time_budget_s: wall-clock budget of a configuration's shared stream of calls (None: none);
    when it ends, every check reading the stream evaluates what it has (results then depend on
    the machine's speed; ``max_calls`` bounds a run reproducibly). shared_stream: the
    statistical checks read one stream of calls per configuration (False: each draws its own
    copy of that stream from the same seed — same results, more calls; for comparison).
    call_timeout_s: a single call slower than this is an ERROR (a hung target).
    """

    alpha: float = 1e-3
    power: float = 0.99
    max_calls: int = 20000
    max_units: int = 8_000_000
    min_units_per_sample: int = 2000
    rate_rel: float = 0.05
    position_rel: float = 0.25
    mean_tol: float = 0.01
    variance_tol: float = 0.05
    dependence_rr: float = 0.2
    correlation_tol: float = 0.05
    gamma_rel: float = 0.1
    dispersion_rel: float = 0.5
    fault_fraction: float = 0.05
    call_timeout_s: float = 60.0
    seed: int = DEFAULT_SEED
    time_budget_s: Optional[float] = None
    shared_stream: bool = True

    def validate(self) -> "Settings":
        from ..errors import out_of_range
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise out_of_range("seed", self.seed, "an integer >= 0")
        if not 0 < self.alpha < 1:
            raise out_of_range("alpha", self.alpha, "in (0, 1)")
        if not 0 < self.power < 1:
            raise out_of_range("power", self.power, "in (0, 1)")
        if self.max_calls < 4:
            raise out_of_range("max_calls", self.max_calls, ">= 4")
        if self.time_budget_s is not None and not 0 < self.time_budget_s < math.inf:
            raise out_of_range("time_budget_s", self.time_budget_s, "a positive number of seconds")
        if not 0 < self.fault_fraction < 1:
            raise out_of_range("fault_fraction", self.fault_fraction, "in (0, 1)")
        for name, fld in MARGIN_FIELDS.items():
            v = getattr(self, fld)
            if not (isinstance(v, (int, float)) and 0 < v < math.inf):
                raise out_of_range(f"margin {name}", v, "a positive number")
        return self

    def with_margins(self, **margins: float) -> "Settings":
        """A copy with margins set by their short names (rate, position, mean, variance,
        dependence, correlation, gamma); an unknown name raises InvalidArgument."""
        from ..errors import InvalidArgument
        kw = {}
        for name, value in margins.items():
            if name not in MARGIN_FIELDS:
                raise InvalidArgument(f"margin {name!r} unknown; known: {', '.join(MARGIN_FIELDS)}")
            kw[MARGIN_FIELDS[name]] = float(value)
        return replace(self, **kw).validate()


class TargetError(Exception):
    """The target raised, hung, or returned an output of the wrong shape or dtype."""


class BudgetExhausted(Exception):
    """The configuration's shared stream ended (its call or time budget is spent) before the
    check drew all the calls it planned: the check evaluates what it has (its last look)."""


class NotInformative(Exception):
    """The check's statistic carries no information at this configuration (constant by
    algebra under the contract, e.g. the variance of a two-valued output at p = 0.5): the
    runner reports the check as not applicable, with this reason, instead of a PASS."""


@dataclass
class CheckContext:
    """What a check receives: the target spec, its contract and parameters, the probe
    shape, the run settings and the alpha budget of each statistical result."""

    spec: TargetSpec
    contract: Contract
    params: Dict[str, Any]
    shape: Tuple[int, ...]
    settings: Settings
    alpha_each: float
    seed: int
    _target: Optional[Target] = None
    dtype: Any = np.float64       # probe dtype of the configuration (statistical and exact checks)
    layout: str = "contiguous"    # input memory layout of the configuration's calls
    _hub: Any = None              # the runner's SharedHub while shared-stream checks run

    @property
    def label(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.contract.name}({args}) on {self.spec.name}"

    @property
    def target(self) -> Target:
        if self._target is None:
            self._target = guarded(lambda: self.spec.build(self.params), self.settings.call_timeout_s, "build")
        return self._target

    def build(self, **overrides: Any) -> Target:
        params = dict(self.params)
        params.update(overrides)
        return guarded(lambda: self.spec.build(params), self.settings.call_timeout_s, "build")

    def seeds(self, name: str) -> "SeedStream":
        """The random numbers of the check (or stream) called ``name`` in this configuration:
        derived from the run's seed and the name, so no two checks share draws by accident and
        adding a check changes no other check's numbers."""
        return SeedStream(self, name)

    def call(self, target: Target, inputs: Inputs, training: bool = True, layout: Optional[str] = None,
             expect_shape: Optional[Tuple[int, ...]] = None) -> np.ndarray:
        """One guarded forward (default layout: the configuration's): exceptions, hangs and
        wrong shapes become TargetError."""
        layout = self.layout if layout is None else layout
        y = guarded(lambda: target.forward(inputs, training=training, layout=layout),
                    self.settings.call_timeout_s, "forward")
        y = np.asarray(y)
        if expect_shape is not None and y.shape != tuple(expect_shape):
            raise TargetError(f"output shape {y.shape}, but should be {tuple(expect_shape)}")
        return y

    def stream(self, inputs: Inputs, seed: int, expect_shape: Optional[Tuple[int, ...]] = None,
               target: Optional[Target] = None) -> "Stream":
        """Seed the target once (at the first draw), then yield the outputs of successive
        training calls. :class:`CallCounter` draws several calls of one stream per dispatch to
        the worker thread (:meth:`Stream.take`): same calls, same order, same outputs."""
        tgt = target or self.target
        if expect_shape is None:
            expect_shape = self.output_shape(inputs)
        return Stream(self, tgt, inputs, seed, expect_shape)

    def shared_stream(self) -> Tuple[Inputs, Any]:
        """(inputs, stream) of the configuration's ONE shared stream of training calls (see
        :mod:`._shared`): inside a run, every ``shares_stream`` check reads the same calls 0,
        1, 2, ... of one seeded stream; called outside a run (a check on its own) it is a
        private stream with the same probe and seed, so results agree either way."""
        from ._shared import SHARED
        if self._hub is not None:
            return self._hub.inputs, self._hub.reader()
        seeds = self.seeds(SHARED)
        inputs = seeds.probe()
        return inputs, self.stream(inputs, seeds.seed())

    def output_shape(self, inputs: Inputs) -> Tuple[int, ...]:
        """The output shape the contract promises (that of its eval output)."""
        if self.contract.eval_output is None:
            return tuple(np.shape(inputs[0]))
        return tuple(np.shape(self.contract.eval_output(inputs, self.params)))

    def decode(self, inputs: Inputs, y: np.ndarray) -> Decoded:
        return self.contract.decode_output(inputs, y, self.params)

    def dropped(self, inputs: Inputs, y: np.ndarray) -> Optional[np.ndarray]:
        """``decode(inputs, y).dropped`` alone (cheaper: see :meth:`Contract.decode_dropped`)."""
        return self.contract.decode_dropped(inputs, y, self.params)


def _name_key(name: str) -> int:
    import zlib
    return zlib.crc32(name.encode("utf-8"))


class SeedStream:
    """One check's seeds, generators and probe inputs, numbered ``i = 0, 1, ...`` within each
    kind: ``np.random.SeedSequence([run seed, crc32(name), kind, i])`` (kinds: target seeds,
    generators, probes), so the three never share a stream and every number depends only on the
    run's seed, the check's name and ``i``."""

    SEED, RNG, PROBE = 0, 1, 2

    def __init__(self, ctx: "CheckContext", name: str) -> None:
        self.ctx, self.name, self._key = ctx, name, _name_key(name)

    def _sequence(self, kind: int, i: int) -> np.random.SeedSequence:
        return np.random.SeedSequence([int(self.ctx.seed), self._key, kind, int(i)])

    def seed(self, i: int = 0) -> int:
        """The ``i``-th seed to give a target (an int in [0, 2**31))."""
        return int(self._sequence(self.SEED, i).generate_state(1, np.uint32)[0] >> 1)

    def rng(self, i: int = 0) -> np.random.Generator:
        """The ``i``-th numpy generator of the check (offsets, gradients, random choices)."""
        return np.random.default_rng(self._sequence(self.RNG, i))

    def probe_rng(self, i: int = 0) -> np.random.Generator:
        """The generator behind :meth:`probe` ``(i)`` (for probes the contract builds otherwise)."""
        return np.random.default_rng(self._sequence(self.PROBE, i))

    def probe(self, i: int = 0, dtype: Any = None, shape: Optional[Tuple[int, ...]] = None, **kw: Any) -> Inputs:
        """The ``i``-th probe inputs (default: the configuration's shape and dtype; ``kw`` go to
        the contract's ``probe_inputs``, e.g. ``zeros=True``: the same values with zeros planted)."""
        return self.ctx.contract.probe_inputs(shape or self.ctx.shape, self.probe_rng(i),
                                              self.ctx.dtype if dtype is None else dtype, **kw)


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

    def _seed(self) -> None:
        if not self.seeded:
            tgt, seed = self.target, self.seed
            guarded(lambda: tgt.seed(seed), self.ctx.settings.call_timeout_s, "seed")
            self.seeded = True

    def __next__(self) -> np.ndarray:
        if self._buffer:
            y = self._buffer.pop(0)
            if isinstance(y, _Raise):
                raise y.error
            return y
        self._seed()
        return self.ctx.call(self.target, self.inputs, expect_shape=self.expect_shape)

    def prefetch(self, n: int) -> None:
        """Draw the next ``n`` calls now, in as few dispatches as :meth:`take` allows;
        ``next`` then serves them in order (a failed call raises where it would have). Only
        for a consumer certain to draw at least ``n`` more calls of this stream and touching no
        other target in between: the target then sees the same calls in the same order."""
        while len(self._buffer) < n and not (self._buffer and isinstance(self._buffer[-1], _Raise)):
            try:
                got = self._draw(n - len(self._buffer))
            except TargetError as exc:
                got = [_Raise(exc)]
            if not got:
                break
            self._buffer.extend(got)

    def take(self, n: int) -> List[np.ndarray]:
        """Up to ``n`` outputs of consecutive calls, drawn in one dispatch; stops after the
        first call whose output is too large to buffer more (:data:`BATCH_BYTES`). A call that
        raises or returns the wrong shape ends the batch with a :class:`_Raise` holding the
        TargetError that :meth:`CheckContext.call` would raise: the consumer raises it after
        the outputs before it, exactly where one call at a time would have. (A sink that raises
        mid-batch leaves the target some calls further on; its check then ends in an ERROR,
        and a later check that seeds the target first is unaffected.)"""
        if self._buffer:
            got, self._buffer = self._buffer[:n], self._buffer[n:]
            return got
        return self._draw(n)

    def _draw(self, n: int) -> List[Any]:
        """:meth:`take` past the prefetched calls: up to ``n`` new calls in one dispatch."""
        self._seed()
        if n <= 1 or STREAM_BATCH <= 1:
            return [self.ctx.call(self.target, self.inputs, expect_shape=self.expect_shape)]
        ctx, tgt, inputs, shape = self.ctx, self.target, self.inputs, self.expect_shape
        layout = ctx.layout
        n = min(n, STREAM_BATCH)

        def calls(record: Callable[[str, float], None]) -> Tuple[List[np.ndarray], Optional[BaseException]]:
            out: List[np.ndarray] = []
            worker = getattr(_LOCAL, "worker", None)
            for _ in range(n):
                if worker is not None and worker.abandoned:  # its caller gave up: touch the target no more
                    break
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

        outs, exc = guarded(calls, ctx.settings.call_timeout_s, "forward", batch=True)
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


# --------------------------------------------------------------------------- results

def exact_result(ctx: CheckContext, check: str, ok: bool, observed: str, expected: str,
                 details: Optional[Mapping[str, Any]] = None, seconds: float = 0.0) -> CheckResult:
    """A deterministic check's result: what was observed against what the contract requires."""
    text = f"{observed}, as required: {expected}" if ok else f"{observed}, but should be {expected}"
    return CheckResult(check=check, target=ctx.spec.name, variant=ctx.contract.name,
                       verdict=PASS if ok else FAIL, text=text, label=ctx.label, statistical=False,
                       details=dict(details or {}), seconds=seconds)


def error_result(ctx: CheckContext, check: str, reason: str, statistical: bool = False) -> CheckResult:
    return CheckResult(check=check, target=ctx.spec.name, variant=ctx.contract.name, verdict=ERROR,
                       text=reason, label=ctx.label, statistical=statistical)


def skipped_result(ctx: CheckContext, check: str, reason: str) -> CheckResult:
    """A check that cannot run on this target (e.g. no gradients): INCONCLUSIVE, with why."""
    return CheckResult(check=check, target=ctx.spec.name, variant=ctx.contract.name,
                       verdict=INCONCLUSIVE, text=f"not run: {reason}", label=ctx.label)


def statistical_result(ctx: CheckContext, check: str, quantity: str, look: Look, plan: SequentialPlan,
                       p_values: Sequence[float], n_unit: str, looks_used: int, seconds: float,
                       details: Optional[Mapping[str, Any]] = None) -> CheckResult:
    """Turn the last look of a sequential test into a result (verdict before Holm)."""
    p_seq = plan.sequential_p(p_values)
    info = dict(details or {})
    info["planned_looks"] = len(plan.looks)
    if look.rejects:
        verdict = FAIL
    elif look.certifies:
        verdict = PASS
    else:
        verdict = INCONCLUSIVE
    ci = (look.ci.low, look.ci.high)
    certifiable = max(abs(ci[0] - look.expected), abs(ci[1] - look.expected)) \
        if all(math.isfinite(v) for v in ci) else math.inf
    info["certifiable_margin"] = certifiable
    if verdict == FAIL:
        inside = abs(look.estimate - look.expected) <= look.margin if math.isfinite(look.estimate) else False
        info["estimate_inside_margin"] = bool(inside)
    return CheckResult(check=check, target=ctx.spec.name, variant=ctx.contract.name, verdict=verdict,
                       label=ctx.label, statistical=True, quantity=quantity, look_verdict=verdict,
                       estimate=look.estimate, ci=ci,
                       ci_level=look.ci.level, expected=look.expected, margin=look.margin, n=look.n,
                       n_unit=n_unit, p_value=p_seq, alpha=plan.alpha, power=plan.power, mdd=look.mdd,
                       looks=looks_used, stopped_early=looks_used < len(plan.looks) and verdict != INCONCLUSIVE,
                       seconds=seconds, certified=look.certifies, details=info)


def run_sequential(ctx: CheckContext, check: str, quantity: str, plan: SequentialPlan,
                   advance: Callable[[int], None], evaluate: Callable[[float], Look], n_unit: str,
                   details: Optional[Callable[[], Mapping[str, Any]]] = None) -> CheckResult:
    """Drive one sequential test: ``advance(k)`` draws calls up to cumulative ``k``;
    ``evaluate(alpha_look)`` returns the look on everything drawn so far. Stops at the
    first look that rejects or certifies; target failures become an ERROR result."""
    start = time.perf_counter()
    p_values: List[float] = []
    look: Optional[Look] = None
    budget_note = ""
    at = -1  # calls drawn at the last look
    try:
        for i, k in enumerate(plan.looks):
            try:
                advance(k)
            except BudgetExhausted as why:
                # a stopping time that does not depend on the data (a call or time budget):
                # one more look at alpha / K on what was drawn keeps the sequential p valid
                budget_note = str(why)
                done = getattr(advance, "done", None)
                if look is not None and done == at:
                    break
            look = evaluate(plan.alpha_per_look)
            at = getattr(advance, "done", None)
            p_values.append(look.p_value)
            if look.rejects or look.certifies or budget_note:
                break
    except BudgetExhausted as why:  # a look could not be evaluated on the calls drawn
        look, budget_note = None, str(why)
    except TargetError as exc:
        return error_result(ctx, check, str(exc), statistical=True)
    if look is None:
        return CheckResult(check=check, target=ctx.spec.name, variant=ctx.contract.name, verdict=INCONCLUSIVE,
                           text=f"not assessed: {budget_note or 'no calls drawn'} before its first look",
                           label=ctx.label, statistical=True, details={"budget": budget_note})
    if look.constant and not look.rejects:
        raise NotInformative(f"{quantity} took one value in every one of {look.n} samples "
                             f"({fmt(look.estimate)}): a statistic that never varies gives no evidence either way "
                             "(by algebra at this configuration, or because the masks never change; see "
                             "masks_never_repeat_by_hash)")
    info = dict(details() if details else {})
    if budget_note:
        info["budget"] = budget_note
        if not (look.rejects or look.certifies):
            info.setdefault("not_certified_because", budget_note)
    return statistical_result(ctx, check, quantity, look, plan, p_values, n_unit, len(p_values),
                              time.perf_counter() - start, info)


# --------------------------------------------------------------------------- helpers

def unit_view(ctx: CheckContext, arr: np.ndarray, leading: int = 0, keepdims: bool = False) -> np.ndarray:
    """One representative per mask unit: index 0 along every shared axis of the output
    (``leading`` extra axes in front, e.g. a calls axis, are kept)."""
    shared = ctx.contract.shared_axes(ctx.params, ctx.shape)
    index: list = [slice(None)] * arr.ndim
    for ax in shared:
        index[leading + ax] = slice(0, 1) if keepdims else 0
    return arr[tuple(index)]


def mask_values(ctx: CheckContext, inputs: Inputs, y: np.ndarray) -> Tuple[np.ndarray, bool]:
    """The per-element random draw read from an output: the dropped indicator (binary), or
    the multiplier y / x for continuous variants."""
    dropped = ctx.dropped(inputs, y)
    if dropped is not None:
        return dropped, True
    return ctx.decode(inputs, y).multiplier, False


def units_per_call(ctx: CheckContext, shape: Optional[Tuple[int, ...]] = None) -> int:
    shape = shape or ctx.shape
    shared = set(ctx.contract.shared_axes(ctx.params, shape))
    return int(np.prod([s for i, s in enumerate(shape) if i not in shared], dtype=np.int64))


DEADLINE: List[Optional[float]] = [None]
"""``time.perf_counter()`` after which the running configuration draws no more calls for its
statistical checks (set by the runner from ``Settings.time_budget_s``; one configuration runs at
a time in a process)."""


def deadline_passed() -> bool:
    return DEADLINE[0] is not None and time.perf_counter() > DEADLINE[0]


class CallCounter:
    """Draws calls from a stream up to a cumulative count, feeding each output to ``sink``.

    A :class:`Stream` is drawn in batches (:meth:`Stream.take`): between two draws only the
    sink runs, and sinks only read outputs, so the target sees the same calls in the same
    order as one at a time."""

    def __init__(self, stream: Iterator[np.ndarray], sink: Callable[[np.ndarray], None]) -> None:
        self.stream, self.sink, self.done = stream, sink, 0

    def __call__(self, k: int) -> None:
        take = getattr(self.stream, "take", None)
        while self.done < k:
            if deadline_passed() and not hasattr(self.stream, "hub"):  # the shared hub keeps its own time
                raise BudgetExhausted(f"the configuration's time budget ended after {self.done} calls")
            if take is None:
                self.sink(next(self.stream))
                self.done += 1
                continue
            got = take(k - self.done)
            if not got:
                hub = getattr(self.stream, "hub", None)
                raise BudgetExhausted(getattr(hub, "exhausted_reason", "") or f"the stream ended after {self.done} calls")
            for y in got:
                if isinstance(y, _Raise):
                    raise y.error
                self.sink(y)
                self.done += 1


PILOT = 20  # samples that size a t-test from their spread


@dataclass(frozen=True)
class TPlan:
    plan: SequentialPlan
    sd: float
    margin: float  # the requested margin (never widened)
    n_max: int  # samples at the last look


def two_stage_t_plan(ctx: CheckContext, advance: "CallCounter", samples: Sequence[List[float]], tol: float,
                     lanes: int = 1, calls_per_sample: int = 1, calls_per_step: int = 1) -> TPlan:
    """Two-stage design for the t-tests: a pilot of PILOT samples sizes the test from its
    spread, then is DISCARDED, so the test sees only fresh samples whose number does not
    depend on them (the t-test's level is exact given n). Raises TargetError from the pilot.
    ``samples`` are the lists the sink appends to (one per lane); they are cleared."""
    from ..stats import mean_n_for
    pilot_calls = PILOT * calls_per_sample
    advance(pilot_calls)
    sd = max((float(np.std(s, ddof=1)) for s in samples if len(s) > 1), default=1.0) or 1e-12
    for s in samples:
        s.clear()
    from ..stats import DESIGN_FACTOR, calls_to_expose
    alpha_look = ctx.alpha_each / 4 / lanes
    needed = max(mean_n_for(tol / DESIGN_FACTOR, sd, alpha_look, ctx.settings.power),
                 calls_to_expose(ctx.settings.fault_fraction, ctx.alpha_each / 4, calls_per_sample * calls_per_step),
                 20)
    base = SequentialPlan.geometric(ctx.alpha_each, ctx.settings.power,
                                    min(ctx.settings.max_calls, max(needed, PILOT) * calls_per_sample))
    looks = tuple(sorted({pilot_calls + max(k, PILOT * calls_per_sample) for k in base.looks}))
    plan = SequentialPlan(base.alpha, base.power, looks)
    n_max = (looks[-1] - pilot_calls) // calls_per_sample
    return TPlan(plan, sd, tol, n_max)
