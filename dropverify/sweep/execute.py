"""Running configurations: one task = one configuration's checks at its own alpha and seed.

A task carries only picklable data (the target's name or ``MODULE:FACTORY``, the variant,
the configuration, the settings), so it runs the same in this process, in worker processes
(``concurrent.futures``, spawn) or on a Dask cluster (``distributed``: an embedded
``LocalCluster`` or ``tcp://HOST:PORT``). The seed comes from the master seed and the
configuration, never from the worker or the clock, so results are identical for any number
of workers and any completion order. A crashed or killed worker is an ERROR row, not a FAIL.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, List, Optional, Sequence

from ..checks import Settings
from .space import Config

SWEEP_CHECKS = ("multiplier_values_exact", "drop_rate_matches_by_binomial", "drop_rate_per_position_by_binomial",
                "expectation_matches_by_t_test", "variance_matches_by_t_test", "mask_constant_along_shared_axes",
                "masks_fresh_across_calls_by_fisher", "drop_map_matches_theory_by_binomial",
                "gamma_matches_by_binomial", "dropped_set_is_union_of_blocks", "block_mask_shared_across_channels",
                "expected_depth_matches_by_t_test", "gradient_uses_forward_mask", "eval_mode_deterministic_and_exact",
                "masks_never_repeat_by_hash")
"""Checks run in every configuration: those whose outcome depends on p, dtype, layout, shape
or the variant's parameters (exact repeats included: an odd batch or a small map can make
items share masks). Seed handling, pair tests along every axis and the edge cases run
once, in the single-configuration run (``dropverify run`` without ``--sweep``)."""

SWEEP_MAX_CALLS = 4000
"""Calls per statistical check in a sweep configuration (the single-configuration run uses
``--max-calls``): a sweep looks for configurations that FAIL, which large deviations do early."""
LARGE_CHECKS = ("drop_rate_matches_by_binomial", "masks_independent_at_flat_offsets_by_fisher")
"""Checks on the large tensor: its rate, and independence at power-of-two flat offsets (where
a random stream that wraps repeats itself)."""


@dataclass(frozen=True)
class Task:
    """One configuration to run (picklable)."""

    target: str
    variant: Optional[str]
    config: Config
    settings: Settings
    checks: Sequence[str]
    index: int = 0


def run_task(task: Task, spec_factory: Optional[Callable[[Config], list]] = None) -> Dict[str, Any]:
    """Run one configuration; a JSON-ready row. ``spec_factory`` (in-process only) builds the
    specs of a target that has no name (a Python factory)."""
    from ..errors import DropverifyError
    from ..runner import verify
    t0 = time.perf_counter()
    cfg = task.config
    row: Dict[str, Any] = {"config": cfg, "index": task.index, "alpha": task.settings.alpha,
                           "seed": task.settings.seed, "max_calls": task.settings.max_calls, "results": [],
                           "causes": []}
    try:
        if spec_factory is not None:
            specs = spec_factory(cfg)
        else:
            from ..naming import resolve_target
            specs = resolve_target(task.target, task.variant, cfg.all_params(), cfg.shape, cfg.dtype, cfg.layout,
                                   cfg.device)
        run = verify(specs, task.settings, checks=list(task.checks))
    except DropverifyError as exc:
        row.update(verdict="ERROR", error=str(exc).splitlines()[0], seconds=time.perf_counter() - t0)
        return row
    except Exception as exc:  # noqa: BLE001 - a crash in one configuration is that row's ERROR
        row.update(verdict="ERROR", error=f"{type(exc).__name__}: {exc}".splitlines()[0][:300],
                   seconds=time.perf_counter() - t0)
        return row
    for t in run.targets:
        for r in t.results:
            row["results"].append({"target": t.spec_name, "check": r.check, "verdict": r.verdict,
                                   "p_value": r.p_value, "estimate": r.estimate, "message": r.message,
                                   "statistical": r.statistical})
        row["causes"] += [c.summary for c in t.root_causes]
    verdicts = {r["verdict"] for r in row["results"]}
    row["verdict"] = next((v for v in ("ERROR", "FAIL", "INCONCLUSIVE") if v in verdicts), "PASS")
    row["seconds"] = time.perf_counter() - t0
    return row


def _init_worker(threads: int) -> None:
    """One thread per worker process (the workers share the machine's cores)."""
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    try:
        import torch
        torch.set_num_threads(threads)
    except ImportError:
        pass


class Executor:
    """Maps tasks to rows, in submission order (results never depend on completion order)."""

    name = "serial"

    def map(self, tasks: Sequence[Task]) -> List[Dict[str, Any]]:
        return [run_task(t) for t in tasks]

    def close(self) -> None:
        pass


class ProcessExecutor(Executor):
    """``workers`` spawned processes (``concurrent.futures``); a worker that dies makes its
    task an ERROR row."""

    def __init__(self, workers: int) -> None:
        import concurrent.futures as cf
        import multiprocessing as mp
        self.name = f"{workers} worker processes"
        threads = max(1, (os.cpu_count() or 1) // workers)
        self.pool = cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                                           initializer=_init_worker, initargs=(threads,))

    def map(self, tasks: Sequence[Task]) -> List[Dict[str, Any]]:
        futures = [self.pool.submit(run_task, t) for t in tasks]
        rows = []
        for t, f in zip(tasks, futures):
            try:
                rows.append(f.result())
            except Exception as exc:  # noqa: BLE001 - BrokenProcessPool and the like
                rows.append({"config": t.config, "index": t.index, "alpha": t.settings.alpha,
                             "seed": t.settings.seed, "results": [], "causes": [], "verdict": "ERROR",
                             "error": f"worker failed: {type(exc).__name__}: {exc}".splitlines()[0], "seconds": 0.0})
        return rows

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor(Executor):
    """Tasks on a Dask cluster: ``scheduler`` "local" starts an embedded ``LocalCluster``
    (``workers`` processes, one thread each); ``tcp://HOST:PORT`` connects to a running one.
    A ``KilledWorker`` (a task that crashed its worker three times) is an ERROR row."""

    def __init__(self, scheduler: str, workers: int = 2) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            from ..errors import TargetUnavailable
            raise TargetUnavailable('--scheduler needs the [dask] extra: `pip install -e ".[dask]"` '
                                    "(distributed)") from None
        self.cluster = None
        if scheduler == "local":
            self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                        dashboard_address=None)
            self.client = Client(self.cluster)
        else:
            self.client = Client(scheduler, timeout="20s")
        self.name = f"dask {scheduler}"
        self.client.run(_init_worker, 1)

    def map(self, tasks: Sequence[Task]) -> List[Dict[str, Any]]:
        futures = self.client.map(run_task, list(tasks), pure=False)
        rows = []
        for t, f in zip(tasks, futures):
            try:
                rows.append(f.result())
            except Exception as exc:  # noqa: BLE001 - KilledWorker, lost connection
                rows.append({"config": t.config, "index": t.index, "alpha": t.settings.alpha,
                             "seed": t.settings.seed, "results": [], "causes": [], "verdict": "ERROR",
                             "error": f"dask: {type(exc).__name__}: {exc}".splitlines()[0], "seconds": 0.0})
        return rows

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def make_executor(workers: int = 1, scheduler: Optional[str] = None) -> Executor:
    """serial (workers = 1), worker processes (workers > 1) or Dask (``scheduler``)."""
    if scheduler:
        return DaskExecutor(scheduler, max(1, workers))
    if workers > 1:
        return ProcessExecutor(workers)
    return Executor()


def task_settings(base: Settings, cfg: Config, alpha: float, max_calls: int) -> Settings:
    """The settings of one configuration: its own seed (from the master seed and the
    configuration) and alpha, the sweep's call budget."""
    return replace(base, seed=cfg.seed(base.seed), alpha=alpha, max_calls=max_calls)
