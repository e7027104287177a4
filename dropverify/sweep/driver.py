"""The sweep: a covering design, hypothesis-driven search, greedy shrinking and a fresh-seed
confirmation, under one family-wise false-alarm rate.

Error control (alpha = the run's family-wise false-alarm rate):

* phase A, the covering design (and the large tensor): ``alpha_A = alpha / 2`` split evenly
  over its N configurations (Bonferroni; each configuration's own checks are Holm-adjusted
  inside it);
* phase B, configurations chosen adaptively (hypothesis' search and its shrinking, or the
  greedy shrinker): the i-th new configuration gets ``alpha_B * 6 / (pi^2 i^2)`` with
  ``alpha_B = 3 alpha / 10``; the sum over an unbounded sequence is at most ``alpha_B``, and
  each test is valid given the past because its seed is fresh (a function of the
  configuration only, never reused);
* phase C, confirmation of each minimal failing configuration with a fresh seed:
  ``alpha_C = alpha / 5`` split over the (at most :data:`MAX_CONFIRM`) configurations.

A union bound over the three gives a family-wise false-alarm rate <= alpha for the whole
sweep, adaptively chosen configurations included.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from ..checks import Settings
from ..errors import InvalidArgument
from ..results import worst
from ..targets._base import check_layout_rank, layouts_for_rank, probe_shape_arg
from .execute import (LARGE_CHECKS, SWEEP_CHECKS, SWEEP_MAX_CALLS, Executor, Task, make_executor, run_task,
                      task_settings)
from .space import (Axis, Config, DTYPE_ORDER, Space, covering, large_config, p_values, param_values,
                    shape_values, simplifications, strategy)

ALPHA_A, ALPHA_B, ALPHA_C = 0.5, 0.3, 0.2
MAX_CONFIRM = 3
MAX_STARTS = 2
"""Failing covering configurations shrunk (one per distinct set of failing checks)."""
LARGE_MAX_CALLS = 8
"""Calls per check on the large tensor (each has >= 2^25 elements): enough for the first look,
where a wrapping stream (identical masks at a power-of-two flat offset, millions of pairs per
call) or a wrong rate FAILs; too few to certify a margin, so this row is at best INCONCLUSIVE."""


def spent_alpha(alpha_b: float, i: int) -> float:
    """alpha of the i-th adaptively chosen configuration (i >= 1): alpha_B 6 / (pi^2 i^2)."""
    return alpha_b * 6.0 / (math.pi ** 2 * i * i)


@dataclass
class SweepResult:
    """Every configuration run, the minimal failing configurations, and the verdict."""

    target: str
    variant: str
    axes: List[Axis]
    fixed: Mapping[str, Any]
    rows: List[Dict[str, Any]]
    minimal: List[Dict[str, Any]]
    settings: Settings
    executor: str
    seconds: float
    phases: Dict[str, int] = field(default_factory=dict)
    max_calls: int = SWEEP_MAX_CALLS

    @property
    def verdict(self) -> str:
        verdicts = {r["verdict"] for r in self.rows if r.get("phase") in ("covering", "large", "confirm")}
        verdicts |= {"FAIL" for m in self.minimal if m.get("confirmed")}
        return worst(verdicts)

    @property
    def ok(self) -> bool:
        return self.verdict not in ("FAIL", "ERROR")

    def to_dict(self) -> Dict[str, Any]:
        from .report import sweep_dict
        return sweep_dict(self)

    def to_markdown(self, figure: Optional[str] = None) -> str:
        from .report import sweep_markdown
        return sweep_markdown(self, figure)


def build_space(target: str, variant: Optional[str], fixed: Mapping[str, Any], spec_factory=None,
                base_shape: Optional[Sequence[int]] = None) -> Space:
    """The axes of ``target`` (see :mod:`.space`): p, dtype, layout, shape, the variant's own
    parameters; values in ``fixed`` (``--param``, ``--dtype``, ``--layout``, ``--shape``)
    are not swept."""
    from ..naming import resolve_target
    params = {k: v for k, v in fixed.items() if k not in ("dtype", "layout", "shape", "device")}
    shape = probe_shape_arg(fixed["shape"]) if "shape" in fixed else None
    specs = spec_factory(None) if spec_factory else resolve_target(target, variant, params, shape)
    spec = specs[0]
    contract = spec.resolved_contract()
    spec_params = spec.resolved_params()
    if "contract_for" in contract.extra:
        contract = contract.extra["contract_for"](spec_params)
    tgt = spec.build(spec_params)
    dtypes = tuple(getattr(tgt, "sweep_dtypes", None) or [_name(d) for d in tgt.dtypes])
    dtypes = tuple(d for d in DTYPE_ORDER if d in dtypes)
    base_shape = tuple(shape) if shape else tuple(base_shape) if base_shape else spec.probe_shape()
    layouts = layouts_for_rank(tuple(tgt.layouts), len(base_shape))  # channels_last on 4-D / 5-D probes only
    if "layout" in fixed:
        check_layout_rank(fixed["layout"], base_shape, spec.name)
    for axis, offered in (("layout", layouts), ("dtype", dtypes)):
        if axis in fixed and fixed[axis] not in offered:
            raise InvalidArgument(f"{axis}={fixed[axis]!r}, but {spec.name} takes {', '.join(offered)}")
    axes = [Axis("p", (fixed["p"],) if "p" in fixed else p_values(contract) or (spec_params.get("p"),)),
            Axis("dtype", (fixed["dtype"],) if "dtype" in fixed else dtypes),
            Axis("layout", (fixed["layout"],) if "layout" in fixed else layouts),
            Axis("shape", (tuple(shape),) if shape else shape_values(contract, base_shape, spec_params))]
    axes += param_values(contract, spec_params, fixed, user_owned=not _builtin(target))
    own = tuple(sorted((k, v) for k, v in spec_params.items() if k != "p"))
    base = Config(p=axes[0].values[0], dtype=axes[1].values[0], layout=axes[2].values[0], shape=axes[3].values[0],
                  params=own, device=str(fixed.get("device", "cpu")))
    return Space(axes, base, dict(fixed))


def _name(d: Any) -> str:
    import numpy as np
    return np.dtype(d).name


def _builtin(target: str) -> bool:
    from ..targets.resolve import is_builtin
    return is_builtin(target)


def run_sweep(target: str, variant: Optional[str] = None, settings: Optional[Settings] = None, *,
              fixed: Optional[Mapping[str, Any]] = None, workers: int = 1, scheduler: Optional[str] = None,
              strength: int = 2, search: int = 6, shrink_rounds: int = 4, large: bool = True,
              max_calls: int = SWEEP_MAX_CALLS, spec_factory: Optional[Callable[[Optional[Config]], list]] = None,
              progress: Optional[Callable[[str], None]] = None,
              base_shape: Optional[Sequence[int]] = None) -> SweepResult:
    """Sweep ``target``'s configuration space (see the module docstring for the error control).

    ``strength``: 2 covers every pair of axis values, 1 every value; ``search``: configurations
    hypothesis may try after a clean covering phase; ``shrink_rounds``: greedy shrinking rounds
    from a failing configuration; ``large``: add the large-tensor configuration; ``workers`` /
    ``scheduler``: see :func:`.execute.make_executor`. ``spec_factory`` (in-process, workers
    must be 1) builds specs for a target without a name. ``base_shape``: the shape the shape
    axis derives from (default: the target's probe shape).
    """
    settings = (settings or Settings()).validate()
    if spec_factory is not None and (workers > 1 or scheduler):
        raise InvalidArgument("a Python factory object runs in this process only: use workers=1, or name it "
                              "as MODULE:FACTORY")
    start = time.perf_counter()
    fixed = dict(fixed or {})
    space = build_space(target, variant, fixed, spec_factory, base_shape)
    variant = variant or _variant_of(target, spec_factory)
    say = progress or (lambda text: None)
    executor: Executor = make_executor(workers, scheduler)
    memo: Dict[str, Dict[str, Any]] = {}
    rows: List[Dict[str, Any]] = []
    local = (lambda t: run_task(t, _factory_for(spec_factory))) if spec_factory else None

    def run(tasks: List[Task], phase: str) -> List[Dict[str, Any]]:
        out = [local(t) for t in tasks] if local else executor.map(tasks)
        for row in out:
            row["phase"] = phase
            rows.append(row)
            if phase != "confirm":
                memo[row["config"].key()] = row
        return out

    try:
        configs = covering(space, strength)
        big = large_config(space) if large and "shape" not in fixed else None
        n_a = len(configs) + (1 if big else 0)
        a_each = settings.alpha * ALPHA_A / n_a
        say(f"covering design: {len(configs)} configurations" + (" + 1 large tensor" if big else ""))
        tasks = [Task(target, variant, c, task_settings(settings, c, a_each, max_calls), SWEEP_CHECKS, i)
                 for i, c in enumerate(configs)]
        if big is not None:
            tasks.append(Task(target, variant, big, task_settings(settings, big, a_each, LARGE_MAX_CALLS),
                              LARGE_CHECKS, len(tasks)))
        phase_a = run(tasks, "covering")
        if big is not None:
            phase_a[-1]["phase"] = "large"
        counter = {"i": 0}

        def adaptive(cfgs: Sequence[Config]) -> List[Dict[str, Any]]:
            new = [c for c in cfgs if c.key() not in memo]
            ts = []
            for c in new:
                counter["i"] += 1
                alpha_i = spent_alpha(settings.alpha * ALPHA_B, counter["i"])
                ts.append(Task(target, variant, c, task_settings(settings, c, alpha_i, max_calls), SWEEP_CHECKS,
                               len(rows) + len(ts)))
            if ts:
                say(f"adaptive: {len(ts)} configuration(s)")
                run(ts, "search")
            return [memo[c.key()] for c in cfgs]

        failing = [r for r in phase_a if r["verdict"] == "FAIL" and r["config"].role == "standard"]
        starts: List[Config] = []
        if failing:
            starts = shrink_starts(failing)
        elif search > 0:
            found = _hypothesis_search(space, adaptive, search, memo)
            if found is not None:
                starts = [found]
        minimal = [_shrink(space, c, adaptive, shrink_rounds) for c in starts]
        confirmed = _confirm(target, variant, minimal, settings, max_calls, run)
        large_fail = [r for r in phase_a if r["verdict"] == "FAIL" and r["config"].role == "large"]
        confirmed += [{"config": r["config"], "confirmed": True, "row": r, "note": "large-tensor configuration"}
                      for r in large_fail]
    finally:
        executor.close()
    return SweepResult(target, variant or "", space.axes, fixed, rows, confirmed, settings, executor.name,
                       time.perf_counter() - start,
                       {"covering": len(configs), "large": 1 if big else 0,
                        "adaptive": sum(1 for r in rows if r["phase"] == "search"),
                        "confirm": sum(1 for r in rows if r["phase"] == "confirm")}, max_calls)


def _evidence(row: Mapping[str, Any]) -> float:
    """How strongly a row FAILs: 0 for an exact check's FAIL, else its smallest FAIL p-value."""
    fails = [r for r in row["results"] if r["verdict"] == "FAIL"]
    if any(not r["statistical"] for r in fails):
        return 0.0
    return min((float(r["p_value"]) for r in fails if r["p_value"] is not None), default=1.0)


def shrink_starts(failing: Sequence[Mapping[str, Any]], limit: int = MAX_STARTS) -> List[Config]:
    """The failing covering configurations to shrink: one per distinct set of failing checks
    (different faults, e.g. a wrong rate at small p and a biased mean at large p), the strongest
    evidence first (exact FAILs, then the smallest p-value; fewer elements break ties), at most
    ``limit``. Shrinking the strongest rather than the smallest failure gives a minimal
    configuration whose FAIL a fresh seed confirms."""
    chosen: Dict[frozenset, Config] = {}
    for row in sorted(failing, key=lambda r: (_evidence(r), r["config"].elements, r["index"])):
        signature = frozenset(r["check"] for r in row["results"] if r["verdict"] == "FAIL")
        chosen.setdefault(signature, row["config"])
    return list(chosen.values())[:limit]


def _variant_of(target: str, spec_factory) -> str:
    from ..naming import resolve_target
    specs = spec_factory(None) if spec_factory else resolve_target(target)
    return specs[0].variant


def _factory_for(spec_factory):
    return lambda cfg: spec_factory(cfg)


def _hypothesis_search(space: Space, adaptive, budget: int, memo: Mapping[str, Any]) -> Optional[Config]:
    """hypothesis.find over the space: the configurations it generates (and, on a failure,
    those it tries while shrinking) are run and charged to alpha_B; returns the shrunk failing
    configuration, or None. Deterministic (derandomize, no database)."""
    from hypothesis import HealthCheck, Phase, find, settings as hsettings
    from hypothesis.errors import NoSuchExample
    state = {"evals": 0}
    cap = 3 * budget  # generation plus shrinking, in configurations

    def fails(cfg: Config) -> bool:
        if cfg.key() not in memo:
            if state["evals"] >= cap:
                return False  # budget spent: no new configurations
            state["evals"] += 1
        return adaptive([cfg])[0]["verdict"] == "FAIL"

    try:
        return find(strategy(space), fails,
                    settings=hsettings(max_examples=budget, derandomize=True, database=None, deadline=None,
                                       phases=[Phase.generate, Phase.shrink],
                                       suppress_health_check=list(HealthCheck)))
    except NoSuchExample:
        return None


def _shrink(space: Space, start: Config, adaptive, rounds: int) -> Config:
    """Greedy 1-minimal shrinking (Zeller & Hildebrandt 2002): each round runs every one-step
    simplification of the current configuration (one batch, in parallel) and moves to the
    simplest that still FAILs; stops when none does or after ``rounds`` rounds."""
    current = start
    for _ in range(rounds):
        cands = simplifications(space, current)
        if not cands:
            break
        out = adaptive(cands)
        fail = [c for c, r in zip(cands, out) if r["verdict"] == "FAIL"]
        if not fail:
            break
        current = fail[0]
    return current


def _confirm(target: str, variant: Optional[str], minimal: Sequence[Config], settings: Settings, max_calls: int,
             run) -> List[Dict[str, Any]]:
    """Re-run each minimal configuration with a fresh seed at alpha_C / k: a reported minimal
    configuration is one whose FAIL repeats."""
    if not minimal:
        return []
    chosen = list(dict.fromkeys(minimal))[:MAX_CONFIRM]
    alpha = settings.alpha * ALPHA_C / len(chosen)
    tasks = []
    for i, c in enumerate(chosen):
        s = replace(task_settings(settings, c, alpha, max_calls), seed=c.seed(settings.seed + 1))
        tasks.append(Task(target, variant, c, s, SWEEP_CHECKS, 10_000 + i))
    out = run(tasks, "confirm")
    return [{"config": c, "confirmed": r["verdict"] == "FAIL", "row": r} for c, r in zip(chosen, out)]
