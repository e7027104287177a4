"""``dropverify.scan(model, example_inputs) -> Report``: audit every dropout site of a torch model.

Promises: the model is run four times on the example inputs (train, eval twice under
different seeds, train again) on a copy of it (the model itself where it cannot be copied, its
train/eval flags restored afterwards), with the torch RNG state restored afterwards; every
dropout-family module and functional call is recorded (:mod:`.discovery`); the model-level
checks (:mod:`.model_checks`) are exact results; every site that can be sampled is verified
in situ (:mod:`.insitu`) in ONE runner call, so the whole model is one Holm family at
``alpha``. A model that cannot run its first training pass on the example inputs, or that
has no dropout site, is an InvalidArgument (nothing to scan); a later pass that raises is an
ERROR result and the scan goes on. A site the training pass never calls is NOT EXERCISED in
the site table (never a PASS); sites matching ``eval_active`` patterns must drop in eval.
The wiring checks between layers (:mod:`.wiring`) run the copy 5 to 31 more times.
"""
from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ..api import Report, settings_for
from ..checks import ERROR, FAIL, INCONCLUSIVE, CheckResult, Settings
from ..results import failure_row, worst
from ..diagnosis import RootCause
from ..errors import InvalidArgument
from ..runner import RunResult, TargetRun, environment

SCAN_MAX_CALLS = 5000
"""The scan's default budget per check (``run``: 20,000): a model has many sites; --max-calls raises it."""
MODEL = "(model)"
"""The name of the model-level target in the run (its checks are exact)."""


@dataclass(frozen=True)
class SiteRow:
    """One line of the site table."""

    name: str                 # unique: "blocks.3.attn[scaled_dot_product_attention]"
    label: str                # as cause lines name it: "blocks.3.attn"
    kind: str
    variant: Optional[str]
    configured: Optional[float]
    configured_from: Optional[str]
    train: str                # observed rate in training, as shown
    eval: str                 # observed effective rate in eval, as shown
    calls: Dict[str, int]
    in_situ: str              # the spec name, "shared with X", or why none
    verdict: Optional[str]    # "NOT EXERCISED": not called in training (never a PASS)


@dataclass(frozen=True)
class ScanResult:
    """What a scan found, beside the run's results: the model, its input, the site table,
    the depth schedules, the cause lines and the checks run in situ."""

    model: str
    inputs: str
    sites: Tuple[SiteRow, ...]
    schedules: Tuple[Any, ...]
    causes: Tuple[str, ...]
    checks: Optional[Tuple[str, ...]]
    pass_seconds: float
    framework: str = "torch"  # "torch", "keras" or "nnx" (:mod:`.frameworks`)

    def to_dict(self) -> Dict[str, Any]:
        return {"model": self.model, "inputs": self.inputs, **({} if self.framework == "torch" else
                                                              {"framework": self.framework}),
                "sites": [dataclasses.asdict(s) for s in self.sites],
                "schedules": [{"pattern": s.pattern, "paths": list(s.paths), "rates": list(s.rates),
                               "identity": list(s.identity), "verdict": s.verdict, "message": s.message}
                              for s in self.schedules],
                "causes": list(self.causes), "checks_in_situ": list(self.checks) if self.checks else "all"}


@dataclass(frozen=True, repr=False)
class ScanReport(Report):
    """A :class:`~dropverify.Report` of a scan: ``run`` holds the model-level target
    (``(model)``) and one target per site; ``scan`` the site table, schedules and cause lines."""

    scan: Optional[ScanResult] = None

    def _label(self) -> str:
        return f"scan of {self.scan.model}" if self.scan is not None else super()._label()

    def __repr__(self) -> str:
        counts = ", ".join(f"{v} {k}" for k, v in self.counts().items() if v)
        return f"ScanReport({self.verdict}: {self._label()}; {len(self.scan.sites)} sites; {counts}; seed {self.seed})"

    def summary(self) -> str:
        """The verdict with the site counts, one line per cause (naming the site), the seed and
        family-wise false-alarm rate, and the reproduction."""
        from .report import summary_lines
        return "\n".join(summary_lines(self))

    def to_dict(self) -> Dict[str, Any]:
        from .report import scan_dict
        doc = scan_dict(self)
        doc.update(ok=self.ok, seed=self.seed, reproduce=self.reproduce)
        return doc

    def to_markdown(self) -> str:
        from .report import scan_markdown
        return scan_markdown(self)

    def write(self, directory: Union[str, Path], with_plots: bool = False) -> List[Path]:
        """Write ``scan.md`` and ``scan.json`` (and ``scan.timings.json``) into ``directory``."""
        from .report import write_scan
        return write_scan(self, Path(directory) / "scan.md")

    def failure_message(self, strict: bool = False) -> str:
        bad = {FAIL, ERROR} | ({INCONCLUSIVE} if strict else set())
        rows = [r for r in self.results if r.verdict in bad]
        if not rows:
            return ""
        lines = [f"{self._label()}: {self.verdict}; seed {self.seed}"]
        lines += [f"cause: {c}" for c in self.scan.causes]
        lines += [failure_row(r) for r in rows]
        lines.append(f"seed {self.seed} (family-wise false-alarm rate {self.run.settings.alpha:g})")
        lines.append(f"reproduce: {self.reproduce}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- inputs


def as_args(example_inputs: Any) -> Tuple[Tuple[Any, ...], Dict[str, Any]]:
    """Positional and keyword arguments from a tensor, a tuple / list of them, or a dict."""
    import torch
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,), {}
    if isinstance(example_inputs, (tuple, list)):
        return tuple(example_inputs), {}
    if isinstance(example_inputs, Mapping):
        return (), dict(example_inputs)
    raise InvalidArgument(f"example_inputs is a {type(example_inputs).__name__}, but should be a tensor, a tuple "
                          "of positional inputs or a dict of keyword inputs")


def _describe_inputs(args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    import torch
    parts = []
    for i, a in enumerate([*args, *kwargs.values()]):
        if isinstance(a, torch.Tensor):
            parts.append(f"{tuple(a.shape)} {str(a.dtype).replace('torch.', '')} on {a.device}")
        else:
            parts.append(type(a).__name__)
    return "; ".join(parts) or "no inputs"


def _clone(args: Sequence[Any], kwargs: Mapping[str, Any]) -> Tuple[Tuple[Any, ...], Dict[str, Any]]:
    import torch
    c = lambda a: a.clone() if isinstance(a, torch.Tensor) else a  # noqa: E731
    return tuple(c(a) for a in args), {k: c(v) for k, v in kwargs.items()}


def _first_shape(args: Sequence[Any], kwargs: Mapping[str, Any]) -> Tuple[int, ...]:
    import torch
    t = next((a for a in [*args, *kwargs.values()] if isinstance(a, torch.Tensor)), None)
    return tuple(t.shape) if t is not None else ()


# --------------------------------------------------------------------------- the scan


def _shown_rate(calls: Sequence[Any]) -> str:
    """The effective rate of a phase's calls: p where applied, 0 (p=.., off) where not."""
    if not calls:
        return "not called"
    seen: Dict[str, None] = {}
    for c in calls:
        if c.applied:
            seen[f"{c.p:g}"] = None
        elif c.p > 0:
            seen[f"0 (p={c.p:g}, off)"] = None
        else:
            seen["0"] = None
    return ", ".join(seen)


def _contract_dict(variant: Optional[str], params: Mapping[str, Any]) -> Tuple[str, Dict[str, Any]]:
    from ..variants import get_contract
    if variant:
        try:
            return variant, get_contract(variant).describe(params)
        except Exception:  # noqa: BLE001
            pass
    return variant or "unknown", {"name": variant or "unknown", "params": {}, "summary": "no contract"}


def _run_passes(work: Any, args: Tuple[Any, ...], kwargs: Dict[str, Any], rec: Any, seed: int) -> Dict[str, Any]:
    """train, eval (seed + 1), eval (seed + 2), train again (seed): outputs or the exception."""
    import torch
    out: Dict[str, Any] = {}
    plan = (("train", True, seed, "train"), ("eval1", False, seed + 1, "eval"), ("eval2", False, seed + 2, "eval"),
            ("train_after_eval", True, seed, "train_after_eval"))
    with torch.no_grad():
        for key, training, s, phase in plan:
            work.train(training)
            torch.manual_seed(s)
            a, k = _clone(args, kwargs)
            try:
                with rec.recording(phase):
                    out[key] = work(*a, **k)
            except Exception as exc:  # noqa: BLE001 - the model raised: handled by the caller
                if key == "train":
                    raise
                out[key] = exc
    return out


def scan(model: Any, example_inputs: Any, *, seed: Optional[int] = None, alpha: Optional[float] = None,
         checks: Optional[Sequence[str]] = None, settings: Optional[Settings] = None,
         progress: Any = None, reproduce: Optional[str] = None,
         eval_active: Optional[Sequence[str]] = None, expect: Any = None, jobs: int = 1) -> ScanReport:
    """Audit every dropout site of ``model`` (a torch nn.Module, a Keras 3 model or layer, or a Flax NNX
    module: the framework is read from the object) on ``example_inputs``; returns a
    :class:`ScanReport` (a :class:`~dropverify.Report`).

    ``example_inputs``: a tensor (Keras / NNX: also a numpy array), a tuple of positional inputs, or a
    dict of keyword inputs, on the device and in the dtype the model runs in. ``checks``: the checks run
    at each site in situ (default: every applicable check, as ``dropverify run``; ``"quick"``:
    :data:`~dropverify.modelscan.insitu.QUICK_CHECKS`). ``seed``, ``alpha`` and ``settings`` as for
    :func:`dropverify.verify`; without ``settings`` the budget is :data:`SCAN_MAX_CALLS` calls per check.
    ``eval_active`` (torch): fnmatch patterns of sites that drop in eval by design (MC dropout), matched
    against a site's label, path or name: they are verified as dropout in eval (at their training rate)
    instead of failed. ``expect``: ``{pattern: rate}`` (or ``"pattern=rate"`` strings), the rate
    sites matching a pattern must have in training (:mod:`.configs`; a pattern matching no site is an
    InvalidArgument). Rates from the model's own config are matched per site kind in any case.
    Bad arguments, an object of no supported framework (or whose framework is not installed), a
    model that raises on its first training pass, and a model with no dropout site, raise
    InvalidArgument. ``jobs`` = 2: each site's checks that do not read the shared stream run in a
    forked process while its shared stream runs (where a fork is safe: torch, Keras on torch; the
    same results as ``jobs=1``, as :func:`dropverify.verify`).
    """
    from ..api import check_jobs
    check_jobs(jobs)
    from .frameworks import framework_of
    framework, scan_fn = framework_of(model)
    return scan_fn(model, example_inputs, seed=seed, alpha=alpha, checks=checks, settings=settings,
                   progress=progress, reproduce=reproduce, eval_active=eval_active, expect=expect, jobs=jobs)


def scan_torch(model: Any, example_inputs: Any, *, seed: Optional[int] = None, alpha: Optional[float] = None,
         checks: Optional[Sequence[str]] = None, settings: Optional[Settings] = None,
         progress: Any = None, reproduce: Optional[str] = None,
         eval_active: Optional[Sequence[str]] = None, expect: Any = None, jobs: int = 1) -> ScanReport:
    """:func:`scan` of a torch nn.Module."""
    import torch
    import torch.nn as nn
    from . import insitu

    if not isinstance(model, nn.Module):
        raise InvalidArgument(f"model is a {type(model).__name__}, but should be a torch nn.Module")
    settings = settings_for(settings or Settings(max_calls=SCAN_MAX_CALLS), seed, alpha)
    chosen = insitu.choose_checks(checks)
    patterns = [eval_active] if isinstance(eval_active, str) else list(eval_active or ())
    if not all(isinstance(p, str) and p for p in patterns):
        raise InvalidArgument(f"eval_active={eval_active!r}, but should be a list of site patterns (fnmatch)")
    from .configs import parse_expect
    expected = parse_expect(expect)
    args, kwargs = as_args(example_inputs)
    rng = torch.random.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    try:
        report = _scan(model, args, kwargs, settings, chosen, progress, reproduce, tuple(patterns), expected, jobs)
    finally:  # the passes and the in-situ runs seed torch: the caller's RNG state comes back
        torch.random.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
    from .. import _session
    _session.notify(report)
    return report


SEARCHED = ("searched the module tree for torch.nn Dropout / Dropout1d-3d / AlphaDropout / FeatureAlphaDropout, "
            "nn.LSTM / GRU / RNN with dropout > 0, timm DropPath / DropBlock2d, torchvision StochasticDepth / "
            "DropBlock, registered classes and rate-keeping classes named *Dropout* / *DropPath* / *DropBlock* / "
            "*StochasticDepth*, and a training pass for F.dropout and its family, torch.dropout, "
            "F.scaled_dot_product_attention(dropout_p) and F.multi_head_attention_forward calls")
"""What a scan looks for: the one-line message of a model with no dropout site says it."""
NOT_EXERCISED = "NOT EXERCISED"
"""A site's verdict when the training pass never called it (never counted as PASS)."""


def _scan(model: Any, args: Tuple[Any, ...], kwargs: Dict[str, Any], settings: Settings,
          chosen: Optional[List[str]], progress: Any, reproduce: Optional[str],
          eval_active: Tuple[str, ...] = (), expect: Optional[Mapping[str, float]] = None,
          jobs: int = 1) -> ScanReport:
    """The scan proper (see :func:`scan`)."""
    import torch
    from . import configs, insitu, model_checks as mc
    from .discovery import Recorder, configured_rates, lookup_configured, module_sites

    start = time.perf_counter()
    try:
        work = copy.deepcopy(model)
        own = False
    except Exception:  # noqa: BLE001 - an uncopyable model is scanned as it is; its flags restored below
        work, own = model, True
    flags = {m: m.training for m in work.modules()} if own else {}
    try:
        modules = module_sites(work)
        fields = configs.read_config(work)
        rates = configured_rates(work)
        rec = Recorder(work, modules)
        try:
            outputs = _run_passes(work, args, kwargs, rec, settings.seed)
        except Exception as exc:  # noqa: BLE001 - nothing to scan: the example input does not run
            text = str(exc).splitlines()[0][:300] if str(exc) else ""
            raise InvalidArgument(f"the model raised {type(exc).__name__} on the example input "
                                  f"({_describe_inputs(args, kwargs)}) in training{': ' + text if text else ''}") \
                from None
        sites = rec.sites
        if not sites:
            raise InvalidArgument(f"no dropout site found in {type(model).__module__}.{type(model).__qualname__}: "
                                  f"{SEARCHED}; nothing to scan (a layer this does not know: "
                                  "dropverify.modelscan.register(cls, variant, p=...))")
        for s in sites:
            if not s.is_module:
                lookup_configured(s, rates)
        configs.check_expect(expect or {}, sites)
        schedules = mc.depth_schedules(work, sites)
        pass_seconds = time.perf_counter() - start
        from . import wiring  # model-context checks between layers: a few more passes (wiring.py)
        wired = wiring.wiring_results(work, args, kwargs, sites, settings.seed, MODEL)
    finally:
        for m, f in flags.items():
            m.training = f

    # model-level exact results
    model_results: List[CheckResult] = []
    y1, y2 = outputs.get("eval1"), outputs.get("eval2")
    bad_eval = next((y for y in (y1, y2) if isinstance(y, Exception)), None)
    if bad_eval is not None:
        model_results.append(mc.error_result(mc.EVAL_DETERMINISTIC, MODEL, "model", bad_eval, "in eval"))
    else:
        model_results.append(mc.eval_deterministic(y1, y2, sites, MODEL, eval_active))
    model_results += mc.schedule_results(schedules, MODEL)
    model_results.append(mc.series(sites, MODEL))
    model_results += [r for r in (configs.config_result(fields, sites, MODEL),
                                  configs.expect_result(expect or {}, sites, MODEL)) if r is not None]
    model_results += wired
    round_trip_error = outputs.get("train_after_eval") if isinstance(outputs.get("train_after_eval"),
                                                                     Exception) else None

    def exact(site: Any) -> Tuple[Optional[str], List[CheckResult]]:
        variant = site.identified or (site.module_kind.variant if site.is_module and site.module_kind else
                                      site.fop.variant if site.fop else None)
        results = [mc.site_training(site, site.name, variant or "unknown"),
                   mc.site_eval(site, site.name, variant or "unknown",
                                eval_active=insitu.eval_active_match(site, eval_active) if eval_active else False)]
        if round_trip_error is not None:
            results.append(mc.error_result(mc.SITE_ROUND_TRIP, site.name, variant or "unknown", round_trip_error,
                                           "in training after an eval pass"))
        else:
            results.append(mc.site_round_trip(site, site.name, variant or "unknown"))
        if site.module_kind is not None and site.module_kind.rnn:
            results.append(mc.rnn_layer_replay(site, site.name, variant or "unknown", settings.seed))
        return variant, results

    return assemble(f"{type(model).__module__}.{type(model).__qualname__}", _describe_inputs(args, kwargs),
                    _first_shape(args, kwargs), sites, model_results, exact, insitu.plan(sites, eval_active),
                    settings, chosen, progress, reproduce, schedules, pass_seconds, start,
                    {"torch": torch.__version__}, jobs=jobs)


def assemble(model_name: str, inputs: str, first_shape: Tuple[int, ...], sites: Sequence[Any],
             model_results: List[CheckResult], exact: Callable[[Any], Tuple[Optional[str], List[CheckResult]]],
             plan: Any, settings: Settings, chosen: Optional[List[str]], progress: Any, reproduce: Optional[str],
             schedules: Sequence[Any] = (), pass_seconds: float = 0.0, start: Optional[float] = None,
             versions: Optional[Mapping[str, str]] = None, framework: str = "torch", jobs: int = 1) -> ScanReport:
    """The framework-neutral end of every scan (torch, Keras, NNX): runs ``plan``'s in-situ specs in ONE
    runner call (one Holm family at ``settings.alpha``) and builds the :class:`ScanReport`: the
    ``(model)`` target with ``model_results`` (exact), one target per called site holding
    ``exact(site)``'s results (``(variant, results)``) before its in-situ results, the site table
    (a site never called in training NOT EXERCISED), the cause lines and the reproduction line;
    ``jobs``: the runner's ``workers`` (the same results).
    ``sites`` are :class:`~.discovery.Site` records; ``plan`` an :class:`~.insitu.Plan`."""
    from ..runner import verify as run_checks
    start = time.perf_counter() if start is None else start
    if plan.specs:
        run = run_checks(plan.specs, settings, checks=chosen, progress=progress, workers=jobs)
    else:
        run = RunResult(settings, (), 0, settings.alpha, 0.0, environment())
    by_spec = {t.spec_name: t for t in run.targets}

    targets: List[TargetRun] = []
    rows: List[SiteRow] = []
    causes: List[str] = [r.message for r in model_results if r.verdict in (FAIL, ERROR)]
    for site in sites:
        called = bool(site.calls)
        insitu_name = plan.spec_of.get(site.name)
        if not called:
            rows.append(SiteRow(site.name, site.label, site.kind, None, site.configured, site.configured_from,
                                "not called", "not called", {}, "not called during the example forward",
                                NOT_EXERCISED))
            continue
        variant, found = exact(site)
        exact_causes = [RootCause(r.message, (r.check,), kind=r.verdict) for r in found if r.verdict in (FAIL, ERROR)]
        causes += [r.message for r in found if r.verdict in (FAIL, ERROR)]
        own_run = by_spec.get(insitu_name) if insitu_name == site.name else None
        if own_run is not None:
            t = dataclasses.replace(own_run, results=tuple(found) + own_run.results,
                                    root_causes=tuple(exact_causes) + own_run.root_causes)
            others = plan.members.get(site.name, [])[1:]
            for cause in own_run.root_causes:
                more = f" (and {len(others)} identical site(s))" if others else ""
                causes.append(f"{site.label}{more}: {cause.summary}")
            in_situ = "verified" + (f" (stands for {len(others)} identical site(s))" if others else "")
            verdict = t.verdict
        else:
            calls = site.phase("train") or site.calls
            params = {"p": calls[0].p}
            var, contract = _contract_dict(variant, params)
            shared = by_spec.get(insitu_name) if insitu_name else None
            desc = f"{site.label}: {site.kind}."
            if shared is not None:
                in_situ = f"shared with {shared.spec_name}"
                desc += f" Verified in situ by {shared.spec_name} (an identical replay)."
            else:
                in_situ = f"not sampled: {plan.skipped.get(site.name, 'no replay')}"
                desc += f" In situ: {in_situ}."
            t = TargetRun(site.name, var, params, tuple(calls[0].shapes[0]) if calls[0].shapes else (),
                          contract, (), desc, tuple(found), 0.0, (), tuple(exact_causes))
            verdict = worst([t.verdict] + ([shared.verdict] if shared is not None else []))
        if not site.phase("train") and verdict == "PASS":
            verdict = NOT_EXERCISED  # called in eval only: nothing in training was verified
        targets.append(t)
        kind = site.kind
        if site.identified and site.module_kind is not None and site.identified != site.module_kind.variant:
            kind += f", {site.identified} (by its behaviour)"
        rows.append(SiteRow(site.name, site.label, kind, variant, site.configured, site.configured_from,
                            _shown_rate(site.phase("train")), _shown_rate(site.phase("eval")),
                            {ph: len(site.phase(ph)) for ph in ("train", "eval", "train_after_eval")},
                            in_situ, verdict))
    model_causes = tuple(RootCause(r.message, (r.check,), kind=r.verdict) for r in model_results
                         if r.verdict in (FAIL, ERROR))
    model_target = TargetRun(MODEL, "model", {}, tuple(first_shape),
                             {"name": "model", "params": {}, "summary": "model-level exact checks of a scan"},
                             (), f"{model_name} on {inputs}",
                             tuple(model_results), pass_seconds, (), model_causes)
    env = dict(run.environment) if run.environment else environment()
    for k, v in (versions or {}).items():
        env.setdefault(k, v)
    full = RunResult(settings, (model_target, *targets), run.m_statistical, run.alpha_each,
                     time.perf_counter() - start, env)
    result = ScanResult(model_name, inputs,
                        tuple(rows), tuple(schedules), tuple(dict.fromkeys(causes)),
                        tuple(chosen) if chosen is not None else None, pass_seconds, framework)
    if reproduce is None:
        reproduce = f"dropverify.scan(<your model>, <your inputs>, seed={settings.seed}" + \
            (f", alpha={settings.alpha!r}" if settings.alpha != Settings().alpha else "") + ")"
    return ScanReport(run=full, reproduce=reproduce, scan=result)


__all__ = ["MODEL", "NOT_EXERCISED", "SCAN_MAX_CALLS", "SEARCHED", "ScanReport", "ScanResult", "SiteRow", "as_args",
           "assemble", "scan", "scan_torch"]
