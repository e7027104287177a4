"""The runner: plan every (target, check) pair, split the run's family-wise false-alarm rate
over the statistical results, run the checks (a crashing target or check becomes an ERROR
and the run goes on), then apply Holm across the run."""
from __future__ import annotations

import platform
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .checks import CHECKS, ERROR, FAIL, INCONCLUSIVE, PASS, CheckContext, CheckResult, CheckSpec
from .checks import engine
from .checks.engine import NotInformative
from .diagnosis import RootCause, diagnose
from .errors import InvalidArgument
from .isolation import Isolated, is_foreign, portable, rebuild
from .results import worst
from .settings import Settings
from .stats import holm
from .targets import framework_packages
from .targets._base import TargetSpec, numpy_dtype

Progress = Callable[[str, int, int], None]
"""The runner's progress callback: ``progress(label, done, total)`` as each check starts (``done``
checks finished so far), ``("done <seconds>: <target>: <check>", ...)`` as each shared-stream
check finishes, and ``("done", total, total)`` at the end."""


@dataclass(frozen=True)
class TargetRun:
    """All results of one target, with its contract description and settings."""

    spec_name: str
    variant: str
    params: Dict[str, Any]
    shape: Tuple[int, ...]
    contract: Dict[str, Any]
    conventions: Tuple[str, ...]
    description: str
    results: Tuple[CheckResult, ...]
    seconds: float
    not_applicable: Tuple[Tuple[str, str], ...] = ()
    root_causes: Tuple[RootCause, ...] = ()
    stream: Tuple[Tuple[str, int], ...] = ()
    """The shared stream: ("drawn", calls drawn), then (check, calls it read) per reading check."""

    @property
    def verdict(self) -> str:
        return worst(r.verdict for r in self.results)

    def counts(self) -> Dict[str, int]:
        out = {PASS: 0, FAIL: 0, INCONCLUSIVE: 0, ERROR: 0}
        for r in self.results:
            out[r.verdict] += 1
        return out


@dataclass(frozen=True)
class RunResult:
    settings: Settings
    targets: Tuple[TargetRun, ...]
    m_statistical: int
    alpha_each: float
    seconds: float
    environment: Dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(r.verdict not in (FAIL, ERROR) for t in self.targets for r in t.results)

    def all_results(self) -> List[CheckResult]:
        return [r for t in self.targets for r in t.results]


def _contexts(specs: Sequence[TargetSpec], settings: Settings, only: Optional[Sequence[str]],
              positions: Optional[Sequence[int]] = None):
    """(context, checks, skipped) per spec; ``positions``: each spec's place in the run (its
    seeds derive from it; default: its index here)."""
    plans = []
    for i, spec in zip(positions if positions is not None else range(len(specs)), specs):
        contract = spec.resolved_contract()
        params = spec.resolved_params()
        if "contract_for" in contract.extra:  # a contract whose promises depend on its parameters
            contract = contract.extra["contract_for"](params)
        shape = spec.probe_shape()
        contract.check_shape(shape)
        ctx = CheckContext(spec=spec, contract=contract, params=params, shape=shape,
                           settings=_target_settings(settings, spec),
                           alpha_each=settings.alpha, seed=settings.seed * 1_000 + i * 7_919 + 1,
                           dtype=numpy_dtype(spec.dtype), layout=spec.layout)
        skipped = {**dict(contract.extra.get("not_applicable", {})), **dict(spec.not_applicable)}
        checks = [c for c in CHECKS if (only is None or c.name in only) and c.name not in skipped
                  and _applies(c, ctx)]
        plans.append((ctx, checks, skipped))
    return plans


def _target_settings(settings: Settings, spec: TargetSpec) -> Settings:
    """The run's settings with the spec's own margins, where it carries some (a project
    config's per-layer ``margins``: ``dropverify.config.MarginSpec``)."""
    margins = dict(getattr(spec, "margins", None) or {})
    return settings.with_margins(**margins) if margins else settings


def _applies(check: CheckSpec, ctx: CheckContext) -> bool:
    try:
        return bool(check.applies(ctx))
    except Exception:  # noqa: BLE001 - applicability must never stop a run
        return False


FRAMEWORK_PACKAGES = framework_packages()
"""The packages of every third-party framework (:data:`dropverify.targets.FRAMEWORKS`)."""


def environment(specs: Sequence[TargetSpec] = ()) -> Dict[str, str]:
    """Versions of Python, the statistics stack and every framework this run used: those imported
    here and those named by ``specs`` (``keras[jax]:...`` runs jax in a spawned worker)."""
    import importlib.metadata
    import scipy
    import statsmodels
    env = {"python": sys.version.split()[0], "platform": platform.platform(), "numpy": np.__version__,
           "scipy": scipy.__version__, "statsmodels": statsmodels.__version__}
    named = set(framework_packages(tuple(s.name.split(":", 1)[0] for s in specs)))
    for mod in FRAMEWORK_PACKAGES:
        if mod in sys.modules:
            env[mod] = getattr(sys.modules[mod], "__version__", "?")
        elif mod in named:
            for dist in (mod, mod + "-cpu"):  # tensorflow installs as tensorflow-cpu too
                try:
                    env[mod] = importlib.metadata.version(dist)
                    break
                except importlib.metadata.PackageNotFoundError:
                    pass
    return env


def verify(specs: Sequence[TargetSpec], settings: Optional[Settings] = None,
           checks: Optional[Sequence[str]] = None, progress: Optional[Progress] = None,
           workers: int = 1) -> RunResult:
    """Run every applicable check on every target; Holm across the run's statistical results
    at ``settings.alpha`` (family-wise false-alarm rate of the whole run).

    ``workers`` > 1: the targets built from a built-in name (``spec.ref``) are shared out between
    ``workers`` spawned processes, the next one to whichever is free (the others run here). Each target
    runs with the seeds of its position in the run and the run's one alpha, so the results are the
    same as with ``workers=1``; without a time budget (``time_budget_s=None``) they are identical.
    A run of ONE configuration with ``workers`` > 1 and no time budget runs its checks that do not
    read the shared stream in a forked child meanwhile, where a fork is safe (the same results); so
    does a run whose configurations have no built-in name (a scan's sites), one configuration at a time."""
    settings = (settings or Settings()).validate()
    if checks is not None:
        unknown = sorted(set(checks) - {c.name for c in CHECKS})
        if unknown:
            raise InvalidArgument(f"check={unknown[0]!r}, but should be one of: {', '.join(c.name for c in CHECKS)}")
    start = time.perf_counter()
    local = [i for i, s in enumerate(specs) if not is_foreign(s)]
    groups: Dict[Tuple[Tuple[str, str], ...], List[int]] = {}
    for i, s in enumerate(specs):
        if is_foreign(s):
            groups.setdefault(tuple(sorted(s.env.items())), []).append(i)
    items = {i: portable(specs[i]) for idx in groups.values() for i in idx}
    plans = _contexts([specs[i] for i in local], settings, checks, local)
    isolated = Isolated()
    try:
        m = _statistical_count(plans)
        for key, idx in groups.items():
            m += isolated.call(dict(key), _count_in_worker, [items[i] for i in idx], idx, settings, checks)
        alpha_each = settings.alpha / max(m, 1)
        if workers > 1 and not groups and (len(plans) == 1 or all(specs[i].ref is None for i in local)):
            # one configuration, or none a spawned process could rebuild (a scan's sites): two processes
            # share each configuration in turn
            by_position = dict(zip(local, _run_plans(plans, alpha_each, progress, split=True)))
        elif workers > 1:
            by_position = _run_shared_out(plans, local, specs, settings, checks, alpha_each, progress, workers)
        else:
            by_position = dict(zip(local, _run_plans(plans, alpha_each, progress)))
        for key, idx in groups.items():
            if progress:
                progress(f"{len(idx)} target(s) in a worker with {dict(key)}", 0, 1)
            by_position.update(zip(idx, isolated.call(dict(key), _run_in_worker, [items[i] for i in idx], idx,
                                                      settings, checks, alpha_each)))
    finally:
        isolated.close()
    runs = [by_position[i] for i in range(len(specs))]
    runs = _apply_holm(runs, settings.alpha, alpha_each)
    return RunResult(settings, tuple(runs), m, alpha_each, time.perf_counter() - start, environment(specs))


def _run_shared_out(plans: List[Any], local: Sequence[int], specs: Sequence[TargetSpec], settings: Settings,
                    checks: Optional[Sequence[str]], alpha_each: float, progress: Optional[Progress],
                    workers: int) -> Dict[int, TargetRun]:
    """:func:`_run_plans` of ``plans`` (the targets at positions ``local``): the rebuildable ones in
    ``workers`` spawned processes, each given the next target in run order as soon as it is free;
    the others (no built-in name) in this process meanwhile. ``progress`` hears of each target as
    it finishes: ``("done <seconds>: <target>: every check", targets done, targets)``."""
    import collections
    import concurrent.futures as cf
    import multiprocessing as mp
    movable = collections.deque(k for k, i in enumerate(local) if specs[i].ref is not None)
    here = [k for k, i in enumerate(local) if specs[i].ref is None]
    out: Dict[int, TargetRun] = {}
    futures: Dict[Any, int] = {}
    pool = cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) if movable else None

    def run_here(k: int) -> None:
        (out[local[k]],) = _run_plans([plans[k]], alpha_each)
        told(k, "")

    def told(k: int, where: str) -> None:
        if progress:
            progress(f"done {out[local[k]].seconds:.3f}: {specs[local[k]].name}: every check{where}", len(out),
                     len(local))

    def top_up() -> None:  # one target per free process: none waits queued behind a long one
        while movable and len(futures) < workers:
            k = movable.popleft()
            futures[pool.submit(_run_in_worker, [portable(specs[local[k]])], [local[k]], settings, checks,
                                alpha_each)] = k

    def collect(finished: Sequence[Any]) -> None:
        for f in finished:
            k = futures.pop(f)
            try:
                (out[local[k]],) = f.result()
            except Exception:  # noqa: BLE001 - the worker could not run it (e.g. could not rebuild it): here
                run_here(k)
                continue
            told(k, " (in a worker process)")

    try:
        if pool is not None:
            top_up()
        for k in here:
            run_here(k)
            if pool is not None:
                collect([f for f in futures if f.done()])
                top_up()
        while futures:
            done, _ = cf.wait(list(futures), return_when=cf.FIRST_COMPLETED)
            collect(list(done))
            top_up()
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return out


def _count_in_worker(items: Sequence[Dict[str, Any]], positions: Sequence[int], settings: Settings,
                     checks: Optional[Sequence[str]]) -> int:
    """In an isolation worker: the statistical results of the specs ``items`` describe."""
    return _statistical_count(_contexts([rebuild(i) for i in items], settings, checks, positions))


def _run_in_worker(items: Sequence[Dict[str, Any]], positions: Sequence[int], settings: Settings,
                   checks: Optional[Sequence[str]], alpha_each: float) -> List[TargetRun]:
    """In an isolation worker: run the specs ``items`` describe (before Holm)."""
    return _run_plans(_contexts([rebuild(i) for i in items], settings, checks, positions), alpha_each)


def _statistical_count(plans) -> int:
    """Statistical results the planned checks will produce (the Holm family's size)."""
    m = 0
    for ctx, chosen, _ in plans:
        for c in chosen:
            try:
                m += int(c.statistical(ctx))
            except Exception:  # noqa: BLE001
                m += 1
    return m


SHARED_SHARE = 0.5
"""With ``Settings.time_budget_s``: the fraction of a configuration's sampling window its shared stream
draws for (beyond its checks' first looks) when statistical checks with streams of their own follow it
(none follow: the whole window); they share the rest."""
EXACT_RESERVE = 0.2
"""With ``Settings.time_budget_s``: the fraction of a configuration's time budget kept, after the sampling
window, for the checks that make a fixed number of calls (exact checks) and the last evaluations."""
FLOOR = 0.1
"""With ``Settings.time_budget_s``: the fraction of the sampling window kept for each statistical check
with a stream of its own still to run, which no check before it may take, even for its first look."""


@dataclass
class BudgetPlan:
    """How one configuration spends its time budget B (``Settings.time_budget_s``), planned before it
    runs so that no check is starved (times from the configuration's start; W = (1 - EXACT_RESERVE) B
    is the sampling window; k the statistical checks with streams of their own, which run after the
    shared stream):

    * the shared stream draws for its statistical checks until SHARED_SHARE W (W when k = 0), for
      its other checks (the long-horizon ones, which read as much as they are given) until
      W / (1 + k) at most;
    * each check with a stream of its own gets an equal part of what is left of the window when it
      starts (time that another left unused passes on);
    * a check that has not made its first look (a pilot, then its first look) draws on past its
      share, but never into the FLOOR W kept for each check with a stream of its own after it;
    * no call into the target starts after B; a call already running ends within
      ``call_timeout_s``, so the configuration ends within B + call_timeout_s (plus evaluation).

    Without a time budget every field is None: results do not depend on the machine."""

    cutoff: Optional[float]
    window_end: Optional[float]
    shared_deadline: Optional[float]
    absorb_deadline: Optional[float]
    own: List[str]
    window: Optional[float] = None

    @classmethod
    def make(cls, ctx: CheckContext, chosen: Sequence[CheckSpec], start: float) -> "BudgetPlan":
        budget = ctx.settings.time_budget_s
        if budget is None:
            return cls(None, None, None, None, [])
        own = [c.name for c in chosen if _samples(c, ctx) and not (c.shares_stream and ctx.settings.shared_stream)]
        window_end = start + budget * (1 - EXACT_RESERVE)
        window = window_end - start
        share = SHARED_SHARE if own else 1.0
        return cls(start + budget, window_end, start + share * window, start + min(share, 1 / (1 + len(own))) * window,
                   own, window)

    def _latest(self, after: int) -> Optional[float]:
        """The latest a check may draw for its first look with ``after`` own-stream checks to follow."""
        if self.window_end is None or self.window is None:
            return None
        return self.window_end - after * FLOOR * self.window

    def shared_deadline_for(self, check: CheckSpec, ctx: CheckContext) -> Tuple[Optional[float], Optional[float]]:
        """(end of its share, latest for its first look) of a check that reads the shared stream."""
        deadline = self.shared_deadline if _samples(check, ctx) else self.absorb_deadline
        return deadline, self._latest(len(self.own))

    def deadline_for(self, check: CheckSpec, now: float) -> Tuple[Optional[float], Optional[float]]:
        """(end of its share, latest for its first look) of ``check`` (run after the shared
        stream) when it starts at ``now``: an equal part of the window left, for a statistical
        check with a stream of its own; else (None, None) (only the budget bounds it)."""
        if self.window_end is None or check.name not in self.own:
            return None, None
        left = len(self.own)
        self.own.remove(check.name)
        return now + max(0.0, self.window_end - now) / left, self._latest(left - 1)


def _samples(check: CheckSpec, ctx: CheckContext) -> bool:
    """True for a check that samples statistically (its number of statistical results > 0)."""
    try:
        return int(check.statistical(ctx)) > 0
    except Exception:  # noqa: BLE001
        return True


def _run_plans(plans, alpha_each: float, progress: Optional[Progress] = None, split: bool = False) -> List[TargetRun]:
    """Run planned checks (before Holm): one TargetRun per plan, diagnosed. ``split``: where a
    fork is safe and there is no time budget, the checks that do not read the shared stream run
    in a forked child meanwhile (:mod:`dropverify.forked`; the same results)."""
    total = sum(len(ch) for _, ch, _ in plans)
    done = 0
    runs: List[TargetRun] = []
    for ctx, chosen, skipped in plans:
        ctx.alpha_each = alpha_each
        t0 = time.perf_counter()
        plan = BudgetPlan.make(ctx, chosen, t0)
        results: List[CheckResult] = []
        stream_log: List[Tuple[str, int]] = []
        # the configuration's scope: its cutoff, the shared stream's share, a hang stops its later calls
        with engine.configuration(ctx, plan.cutoff, plan.shared_deadline):
            skipped = dict(skipped)
            shared = [c for c in chosen if c.shares_stream]
            if shared and not ctx.settings.shared_stream:  # each check draws its own copy of the stream
                chosen = [c for c in chosen if c.shares_stream] + [c for c in chosen if not c.shares_stream]
                shared = []
            rest = [c for c in chosen if c not in shared]
            first_rest = done + len(shared)
            forked = _fork_rest(ctx, rest, plan, progress, first_rest, total) if split and shared and rest else None
            if shared:
                def finished(check: CheckSpec, seconds: float, before: int = done) -> None:
                    if progress:
                        finished.count += 1
                        progress(f"done {seconds:.1f}: {ctx.spec.name}: {check.name}", before + finished.count,
                                 total)
                finished.count = 0
                outcomes = engine.run_shared(shared, ctx, finished, stream_log,
                                             lambda check: plan.shared_deadline_for(check, ctx))
                for check, outcome in zip(shared, outcomes):
                    if isinstance(outcome, NotInformative):
                        skipped[check.name] = f"not informative here: {outcome}"
                    else:
                        results.extend(outcome)
            for found, why in _finish_rest(ctx, rest, plan, progress, first_rest, total, forked):
                results.extend(found)
                if why is not None:
                    skipped[why[0]] = why[1]
            done = first_rest + len(rest)
        results, _ = diagnose(results, ctx.contract.layout, alpha_each)
        runs.append(TargetRun(ctx.spec.name, ctx.contract.name, dict(ctx.params), tuple(ctx.shape),
                              ctx.contract.describe(ctx.params), tuple(ctx.spec.conventions),
                              ctx.spec.description, tuple(results), time.perf_counter() - t0,
                              tuple(sorted(skipped.items())), stream=tuple(stream_log)))
    if progress:
        progress("done", total, total)
    return runs


CheckOutcome = Tuple[List[CheckResult], Optional[Tuple[str, str]]]
"""One check's results, and (check, why) where it found itself not informative."""


def _run_one(ctx: CheckContext, check: CheckSpec, plan: "BudgetPlan") -> CheckOutcome:
    """Run one check that does not read the shared stream (with its share of the time budget), on
    a freshly built instance of the layer: nothing carries over from another check, so its numbers
    do not depend on which checks ran before it, nor in which process (:mod:`dropverify.forked`)."""
    ctx._target = None
    engine.set_share(ctx, plan.deadline_for(check, time.perf_counter()))
    try:
        return list(engine.run_check(check, ctx)), None
    except NotInformative as why:
        return [], (check.name, f"not informative here: {why}")


def _run_rest(ctx: CheckContext, rest: Sequence[CheckSpec], plan: "BudgetPlan", progress: Optional[Progress],
              done: int, total: int, which: Iterable[int]) -> Dict[int, CheckOutcome]:
    """Run the checks ``rest[i]`` for each ``i`` of ``which`` (in that order): index -> outcome."""
    out: Dict[int, CheckOutcome] = {}
    for i in which:
        if progress:
            progress(f"{ctx.spec.name}: {rest[i].name}", done + i, total)
        out[i] = _run_one(ctx, rest[i], plan)
    return out


def _fork_rest(ctx: CheckContext, rest: Sequence[CheckSpec], plan: "BudgetPlan", progress: Optional[Progress],
               done: int, total: int) -> Any:
    """A child forked to run ``rest`` meanwhile, and the claims both processes take the checks
    from, each check once (None where a fork is not safe, or with a time budget: the checks'
    shares of it are planned one after another). The child sends back its outcomes and the
    target time it measured."""
    from .forked import Claims, fork_call, fork_unsafe, one_torch_thread
    if ctx.settings.time_budget_s is not None or fork_unsafe(str(getattr(ctx._target, "device", "cpu"))):
        return None
    claims = Claims(len(rest))

    def part() -> Tuple[Dict[int, CheckOutcome], Dict[str, Tuple[int, float]], int]:
        one_torch_thread()
        engine.reset_target_time()
        outcome = _run_rest(ctx, rest, plan, progress, done, total, claims)
        return outcome, engine.target_time(), engine.dispatches()
    child = fork_call(part)
    return None if child is None else (child, claims)


def _finish_rest(ctx: CheckContext, rest: Sequence[CheckSpec], plan: "BudgetPlan", progress: Optional[Progress],
                 done: int, total: int, forked: Any) -> List[CheckOutcome]:
    """The outcomes of ``rest``, in order. With a forked child (:func:`_fork_rest`) this process
    takes the checks the child has not claimed yet, then adds the child's outcomes and target time;
    whatever a child that died or raised had claimed runs here. Each check draws from its own
    seeded instances, so where it runs changes no result."""
    from .forked import ForkFailed
    got: Dict[int, CheckOutcome] = {}
    if forked is not None:
        child, claims = forked
        got.update(_run_rest(ctx, rest, plan, progress, done, total, claims))
        try:
            theirs, spent, hand_offs = child.get()
        except ForkFailed:
            theirs = {}
        else:
            engine.add_target_time(spent, hand_offs)
        got.update(theirs)
    got.update(_run_rest(ctx, rest, plan, progress, done, total, [i for i in range(len(rest)) if i not in got]))
    return [got[i] for i in range(len(rest))]


def _apply_holm(runs: List[TargetRun], alpha: float, alpha_each: float = 1.0) -> List[TargetRun]:
    """Final verdicts: FAIL where Holm rejects across the run, PASS where the margin was
    certified and Holm does not reject, INCONCLUSIVE otherwise. A pooled-unit result that Holm
    turns into a FAIL is withdrawn under a within-call structural cause as before Holm (the
    diagnosis, at ``alpha_each``): its units are copies of shared draws, and only its per-call
    evidence counts."""
    index = [(i, j) for i, t in enumerate(runs) for j, r in enumerate(t.results)
             if r.statistical and r.p_value is not None and r.verdict != ERROR]
    reject, adjusted = holm([runs[i].results[j].p_value for i, j in index], alpha)
    new = [list(t.results) for t in runs]
    for (i, j), rej, adj in zip(index, reject, adjusted):
        r = new[i][j]
        verdict = FAIL if rej else (PASS if r.certified else INCONCLUSIVE)
        new[i][j] = r.with_(p_adjusted=float(adj), verdict=verdict,
                            holm_rejected=verdict == FAIL and r.verdict != FAIL)
    out = []
    for t, res in zip(runs, new):
        res, causes = diagnose(res, t.contract.get("layout", ""), alpha_each)
        out.append(replace(t, results=tuple(res), root_causes=tuple(causes)))
    return out
