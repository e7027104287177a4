"""The Python way in: ``dropverify.verify(target, variant, **params) -> Report``.

    >>> import dropverify
    >>> report = dropverify.verify("numpy:dropout", p=0.2)      # doctest: +SKIP
    >>> report.ok, report.failures                               # doctest: +SKIP
    (True, [])
    >>> report.assert_ok()                                       # doctest: +SKIP

One seed everywhere: ``seed=None`` means :data:`DEFAULT_SEED` (20261126), the seed of the
CLI and of the pytest plugin, so the same layer gives the same numbers in all three.
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from . import _session
from .checks import ERROR, FAIL, INCONCLUSIVE, PASS, CheckResult
from .settings import DEFAULT_SEED, Settings
from .results import failure_row, worst
from .errors import CheckFailed, InvalidArgument
from .reproduce import reproduce_command, reproduce_python
from .runner import RunResult, TargetRun
from .pipeline import precheck_target, resolve_configuration, run_configurations

_P_NAMES = ("p", "rate", "drop_prob", "drop_rate", "dropout", "dropout_p")
"""Attribute / constructor names under which libraries keep the drop probability."""


# --------------------------------------------------------------------------- Report


def _params_text(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in params.items())


@dataclass(frozen=True, repr=False)
class Report:
    """The outcome of one :func:`verify` call (small and frozen, like scipy's result objects).

    ``run`` is the full :class:`~dropverify.runner.RunResult` (every check's numbers);
    ``reproduce`` the command (or Python call) that repeats the run bit for bit; ``sweep``
    the sweep result when ``verify(..., sweep=True)`` (then ``run`` is None).
    """

    run: Optional[RunResult]
    reproduce: str
    sweep: Any = None

    # -- verdicts -----------------------------------------------------------------------
    @property
    def results(self) -> List[CheckResult]:
        """Every check result of every target of the run."""
        return self.run.all_results() if self.run is not None else list(getattr(self.sweep, "results", []))

    @property
    def ok(self) -> bool:
        """True when no check FAILed or ERRORed (INCONCLUSIVE is ok; see ``assert_ok(strict=True)``)."""
        return self.run.ok if self.run is not None else bool(self.sweep.ok)

    @property
    def failures(self) -> List[CheckResult]:
        """The FAIL and ERROR results, in report order."""
        if self.run is None:  # a sweep: its minimal failing configurations (dicts, JSON-ready)
            return list(self.sweep.to_dict().get("minimal_failing", []))
        return [r for r in self.results if r.verdict in (FAIL, ERROR)]

    @property
    def inconclusive(self) -> List[CheckResult]:
        """The INCONCLUSIVE results (budget ran out before certifying or rejecting)."""
        return [r for r in self.results if r.verdict == INCONCLUSIVE]

    @property
    def seed(self) -> Optional[int]:
        if self.run is not None:
            return self.run.settings.seed
        return getattr(getattr(self.sweep, "settings", None), "seed", None)

    @property
    def verdict(self) -> str:
        """The worst verdict: ERROR > FAIL > INCONCLUSIVE > PASS."""
        if self.run is None:
            return str(getattr(self.sweep, "verdict", PASS if self.ok else FAIL))
        return worst(r.verdict for r in self.results)

    def counts(self) -> Dict[str, int]:
        out = {PASS: 0, FAIL: 0, INCONCLUSIVE: 0, ERROR: 0}
        for r in self.results:
            out[r.verdict] += 1
        return out

    @property
    def targets(self) -> Tuple[TargetRun, ...]:
        return self.run.targets if self.run is not None else ()

    # -- text ---------------------------------------------------------------------------
    def _label(self) -> str:
        if self.run is None:
            return f"sweep of {getattr(self.sweep, 'target', '?')} ({getattr(self.sweep, 'variant', '?')})"
        t = self.targets[0]
        more = f" (+{len(self.targets) - 1} more)" if len(self.targets) > 1 else ""
        return f"{t.spec_name} {t.variant}({_params_text(t.params)}){more}"

    def __repr__(self) -> str:
        if self.run is None:
            what = f"{len(getattr(self.sweep, 'rows', ()))} configuration runs"
        else:
            what = ", ".join(f"{v} {k}" for k, v in self.counts().items() if v)
        text = f"Report({self.verdict}: {self._label()}; {what}; seed {self.seed})"
        return text if len(text) < 200 else text[:195] + "...)"

    def summary(self) -> str:
        """A few lines: the verdict of each target with its counts, one line per root cause,
        the seed and family-wise false-alarm rate, and the reproduction command."""
        if self.run is None:
            doc = self.sweep.to_dict()
            phases = ", ".join(f"{v} {k}" for k, v in doc.get("phases", {}).items())
            lines = [f"{self.verdict:<12} {self._label()}: {len(doc.get('rows', []))} configuration runs ({phases})"]
            for m in doc.get("minimal_failing", []):
                lines.append(f"  minimal failing configuration {m['label']}: {', '.join(m['failing_checks'])}")
                lines.append(f"    reproduce: {m['reproduce']}")
            lines.append(f"{'OK' if self.ok else 'NOT OK'}: master seed {self.seed}, family-wise false-alarm rate "
                         f"{doc.get('family_wise_alpha')} over the whole sweep")
            return "\n".join(lines)
        lines = []
        for t in self.targets:
            c = t.counts()
            lines.append(f"{t.verdict:<12} {t.spec_name} {t.variant}({_params_text(t.params)}) shape "
                         f"{tuple(t.shape)}: " + " ".join(f"{k}={v}" for k, v in c.items() if v))
            for cause in t.root_causes:
                own = [r for r in t.results if cause.self_named and r.check == cause.evidence[0]
                       and r.verdict in (FAIL, ERROR)]
                lines += ([f"  {failure_row(r)}" for r in own] if own else
                          [f"  cause: {cause.summary}  [{', '.join(cause.evidence)}]"])
            if not t.root_causes:
                for r in t.results:
                    if r.verdict in (FAIL, ERROR):
                        lines.append(f"  {failure_row(r)}")
        s = self.run.settings
        lines.append(f"{'OK' if self.ok else 'NOT OK'}: seed {s.seed}, family-wise false-alarm rate {s.alpha:g} "
                     f"over {self.run.m_statistical} statistical results")
        if not self.ok:
            lines.append(f"reproduce: {self.reproduce}")
        return "\n".join(lines)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready: the report module's JSON (run header, and each target's full document
        with every result) plus ``ok``, ``seed`` and ``reproduce``."""
        if self.run is None:
            doc = dict(self.sweep.to_dict())
            doc.setdefault("reproduce", self.reproduce)
            return doc
        from .report import jsonout
        doc = json.loads(jsonout.index_json(self.run))
        doc["targets"] = [json.loads(jsonout.target_json(self.run, t)) for t in self.run.targets]
        doc.update(ok=self.ok, seed=self.seed, reproduce=self.reproduce)
        return doc

    def to_markdown(self) -> str:
        """The report module's Markdown of each target (no figures), one after the other."""
        if self.run is None:
            fn = getattr(self.sweep, "to_markdown", None)
            return fn() if callable(fn) else "```\n" + self.summary() + "\n```\n"
        from .report import markdown
        return "\n---\n\n".join(markdown.target_markdown(self.run, t, {}) for t in self.run.targets)

    def write(self, directory: Union[str, Path], with_plots: bool = True) -> List[Path]:
        """Write the reports (Markdown + JSON per target, ``index.md`` / ``index.json``,
        PNG figures unless ``with_plots=False``; for a sweep ``sweep.md``, its JSON and figure)
        into ``directory``; returns the paths."""
        if self.run is None:  # a sweep: its Markdown (sweep.md), JSON and figure
            from .sweep import write_sweep
            Path(directory).mkdir(parents=True, exist_ok=True)
            return list(write_sweep(self.sweep, Path(directory) / "sweep.md"))
        from .report import write_reports
        return write_reports(self.run, directory, with_plots=with_plots)

    def failure_message(self, strict: bool = False) -> str:
        """What :meth:`assert_ok` raises with ('' when it would not raise)."""
        bad = {FAIL, ERROR} | ({INCONCLUSIVE} if strict else set())
        if self.run is None:
            if self.ok and not (strict and self.verdict == INCONCLUSIVE):
                return ""
            doc = self.sweep.to_dict()
            lines = [f"sweep of {doc.get('target')} ({doc.get('variant')}): {self.verdict}"]
            for m in doc.get("minimal_failing", []):
                lines.append(f"minimal failing configuration {m['label']}: {', '.join(m['failing_checks'])}")
                lines += [f"  cause: {c}" for c in m.get("causes", [])]
                lines.append(f"  reproduce: {m['reproduce']}")
            lines.append(f"master seed {self.seed} (family-wise false-alarm rate {doc.get('family_wise_alpha')})")
            lines.append(f"reproduce the sweep: {self.reproduce}")
            return "\n".join(lines)
        rows = [r for r in self.results if r.verdict in bad]
        if not rows:
            return ""
        counts = ", ".join(f"{sum(r.verdict == v for r in rows)} {v}" for v in (FAIL, ERROR, INCONCLUSIVE)
                           if any(r.verdict == v for r in rows))
        lines = [f"{self._label()}: {counts}; seed {self.seed}"]
        for t in self.targets:
            for cause in t.root_causes:
                if not cause.self_named:  # a cause that only repeats its one row is left to the row
                    lines.append(f"cause: {cause.summary}  [{', '.join(cause.evidence)}]")
        lines += [failure_row(r) for r in rows]
        if self.run is not None:
            lines.append(f"seed {self.seed} (family-wise false-alarm rate {self.run.settings.alpha:g})")
        lines.append(f"reproduce: {self.reproduce}")
        return "\n".join(lines)

    def assert_ok(self, strict: bool = False) -> "Report":
        """Raise :class:`~dropverify.CheckFailed` (an AssertionError) listing every FAIL and
        ERROR row (and INCONCLUSIVE with ``strict=True``), the seed and the reproduction
        command; return the report otherwise."""
        __tracebackhide__ = True
        message = self.failure_message(strict)
        if message:
            raise CheckFailed(message)
        return self


# --------------------------------------------------------------------------- targets


def _p_attr(obj: Any) -> Optional[str]:
    for name in _P_NAMES:
        v = getattr(obj, name, None)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return name
    params = getattr(obj, "params", None)
    if isinstance(params, Mapping) and "p" in params:
        return "params"
    return None


def _current_params(obj: Any) -> Dict[str, Any]:
    """What the layer object says about its own parameters (canonical ``p`` included)."""
    params = getattr(obj, "params", None)
    if isinstance(params, Mapping):
        return dict(params)
    name = _p_attr(obj)
    return {} if name is None else {"p": float(getattr(obj, name))}


def _rebuilder(obj: Any) -> Optional[Callable[[Mapping[str, Any]], Any]]:
    """A function params -> a new layer like ``obj`` with those canonical parameters, or
    None where the class cannot be rebuilt from what the object exposes."""
    cls = type(obj)
    if callable(getattr(obj, "get_config", None)) and callable(getattr(cls, "from_config", None)):  # Keras
        def keras(prm: Mapping[str, Any]) -> Any:
            cfg = dict(obj.get_config())
            for k, v in prm.items():
                key = k if k in cfg else next((n for n in _P_NAMES if n in cfg), None) if k == "p" else None
                if key is not None:
                    cfg[key] = v
            return cls.from_config(cfg)
        return keras
    params = getattr(obj, "params", None)
    if isinstance(params, Mapping):  # dropverify's numpy references: cls(**params)
        return lambda prm: cls(**{**dict(params), **dict(prm)})
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        return None
    names = [n for n, p in sig.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    p_name = next((n for n in _P_NAMES if n in names), None)
    if p_name is None:
        return None
    own = {n: getattr(obj, n) for n in names if hasattr(obj, n)}

    def construct(prm: Mapping[str, Any]) -> Any:
        kw = dict(own)
        for k, v in prm.items():
            if k == "p":
                kw[p_name] = v
            elif k in names:
                kw[k] = v
        return cls(**kw)
    return construct


def layer_factory(layer: Any, params: Mapping[str, Any]) -> Callable[..., Any]:
    """A factory for a layer *object*: ``factory(**canonical_params)``.

    With the object's own parameters it returns a deep copy of the object (the object
    itself where it cannot be copied); given another ``p`` than the object's, it rebuilds. For other parameters (the edge-case checks ask for
    p = 0, p = 1 and invalid p) it rebuilds the layer: Keras layers through
    ``get_config()`` / ``from_config()``, dropverify's numpy references through their
    ``params``, other classes by calling the class with the constructor arguments the
    object exposes as attributes (the drop probability under ``p``, ``rate``,
    ``drop_prob``, ...). Where that is impossible, asking for other parameters raises
    ``InvalidArgument`` and those checks report ERROR: pass a factory instead.
    """
    rebuild = _rebuilder(layer)
    if rebuild is not None:
        try:
            if _current_params(rebuild(params)).get("p") != params.get("p"):
                rebuild = None
        except Exception:  # noqa: BLE001 - the class cannot be rebuilt this way
            rebuild = None
    own = dict(params)
    as_is = _current_params(layer).get("p") == own.get("p")
    if not as_is and rebuild is None:
        raise InvalidArgument(f"the {type(layer).__name__} object has p={_current_params(layer).get('p')!r}, "
                              f"not {own.get('p')!r}, and cannot be rebuilt: pass a factory instead")

    def factory(**prm: Any) -> Any:
        if as_is and all(own.get(k) == v for k, v in prm.items() if k in own):
            try:
                return copy.deepcopy(layer)
            except Exception:  # noqa: BLE001 - some layers cannot be copied: hand out the object
                return layer
        if rebuild is None:
            raise InvalidArgument(f"cannot rebuild the {type(layer).__name__} object with {prm}: "
                                  "pass a factory (a callable taking p=...) instead of a layer object")
        return rebuild(prm)

    factory.__qualname__ = factory.__name__ = f"{type(layer).__name__}"
    return factory


def _is_layer_object(target: Any) -> bool:
    from .targets.user import layer_kind
    # a plain JAX function f(x, key, ...) is a layer only inside a factory: it has no p to read
    return not isinstance(target, type) and layer_kind(target) not in ("unknown", "jax")


def _importable(fn: Any) -> Optional[str]:
    """``module:qualname`` when ``fn`` can be imported back by that name (CLI reproduction)."""
    module, qual = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if not module or module == "__main__" or "<" in qual or not qual:
        return None
    import importlib
    try:
        obj: Any = importlib.import_module(module)
        for part in qual.split("."):
            obj = getattr(obj, part)
    except Exception:  # noqa: BLE001
        return None
    return f"{module}:{qual}" if obj is fn else None


# --------------------------------------------------------------------------- verify


def settings_for(settings: Optional[Settings], seed: Optional[int], alpha: Optional[float],
                 profile: Optional[str] = None) -> Settings:
    """``settings`` (default: the ``profile``'s, else ``Settings()``, the default profile) with
    ``seed`` and ``alpha`` where given, validated; InvalidArgument for a seed that is not an
    integer >= 0, an unknown profile (with the closest name) or both ``settings`` and ``profile``."""
    from .settings import get_profile
    if profile is not None and settings is not None:
        raise InvalidArgument(f"profile={profile!r} and settings=...: give one (a profile is a Settings preset)")
    s = get_profile(profile).settings() if profile is not None else (settings or Settings())
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise InvalidArgument(f"seed={seed!r}, but should be an integer >= 0")
        s = dataclasses.replace(s, seed=seed)
    if alpha is not None:
        s = dataclasses.replace(s, alpha=alpha)
    return s.validate()


def _sweep(target: Any, variant: str, specs: List[Any], settings: Settings, params: Mapping[str, Any],
           shape: Optional[Tuple[int, ...]], fixed_axes: Mapping[str, str], device: str, reproduce: str) -> Report:
    """``verify(..., sweep=True)``: the sweep engine on a named target, or in-process on a
    factory (``target`` callable; its spec rebuilt for each configuration)."""
    from .sweep import run_sweep
    fixed: Dict[str, Any] = {**dict(params), **dict(fixed_axes)}
    if shape is not None:
        fixed["shape"] = tuple(shape)
    if device != "cpu":
        fixed["device"] = device
    if isinstance(target, str):
        result = run_sweep(target, variant, settings, fixed=fixed)
        return Report(run=None, reproduce=reproduce + " --sweep", sweep=result)
    spec0 = specs[0]

    def spec_factory(cfg: Any) -> List[Any]:
        if cfg is None:
            return [spec0]
        from .targets.user import factory_spec
        spec = factory_spec(target, variant, cfg.all_params(), shape=tuple(cfg.shape),
                            device=cfg.device, name=spec0.name)
        return [dataclasses.replace(spec, dtype=cfg.dtype, layout=cfg.layout)]

    # an importable factory is named as the CLI names it (module:qualname), so the sweep's
    # per-configuration reproduction commands run as printed
    name = _importable(target) or spec0.name
    result = run_sweep(name, variant, settings, fixed=fixed, spec_factory=spec_factory)
    return Report(run=None, reproduce=reproduce.replace(".assert_ok()", "", 1).rstrip(")") + ", sweep=True)"
                  if reproduce.startswith("dropverify.verify(") else reproduce + " --sweep", sweep=result)


def check_jobs(jobs: Any) -> int:
    """``jobs`` (the processes that share a run) when it is an integer >= 1; InvalidArgument otherwise."""
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise InvalidArgument(f"jobs={jobs!r}, but should be an integer >= 1")
    return jobs


def verify(target: Any, variant: Optional[str] = None, *, shape: Optional[Sequence[int]] = None,
           seed: Optional[int] = None, alpha: Optional[float] = None, sweep: bool = False,
           dtype: Optional[str] = None, layout: Optional[str] = None, device: str = "cpu",
           checks: Optional[Sequence[str]] = None, settings: Optional[Settings] = None,
           profile: Optional[str] = None, jobs: int = 1, **params: Any) -> Report:
    """Verify ``target`` against ``variant``'s contract; returns a :class:`Report`.

    ``target`` is one of:

    - a target name: a built-in (``"torch:Dropout2d"``, ``"timm:DropBlock2d"``,
      ``"numpy:dropout"``; ``variant`` optional) or a user factory
      ``"mypkg.layers:make_dropout"`` / ``"path/to/file.py:make"`` (``variant`` required);
    - a factory: any callable (a class such as ``torch.nn.Dropout`` too) taking the
      variant's canonical parameters as keywords (``p``, ``block_size`` ...) and returning a
      torch ``nn.Module``, a Keras layer or a numpy layer;
    - a layer object (torch / Keras / numpy): wrapped by :func:`layer_factory`, which
      rebuilds it for the parameters the edge-case checks need where its class allows and
      reports ERROR for those checks where not (pass a factory then). ``p`` is read from
      the object when not given.

    ``params`` are the variant's canonical parameters. ``seed`` defaults to
    :data:`DEFAULT_SEED`, ``alpha`` (family-wise false-alarm rate of the run) to
    ``settings.alpha`` (1e-3); ``settings`` sets the rest (budget, power, margins), or ``profile``
    (``"quick"``, ``"default"``, ``"thorough"``: :data:`dropverify.settings.PROFILES`, the same
    presets as the CLI's ``--profile`` and pytest's ``--dropverify-profile``) picks them.
    ``dtype`` / ``layout`` (None: float64, contiguous) are the configuration the statistical
    checks run in. ``sweep=True`` explores the configuration space
    (``dropverify.sweep.run_sweep``): the parameters, ``shape``, ``dtype`` and ``layout`` given
    fix their axes, the others are swept; the report's ``sweep`` holds the SweepResult. Bad arguments raise ``InvalidArgument`` (a
    ValueError) before any sampling; a misspelt target, variant, parameter or check name does
    so before any framework is imported, naming the closest ("did you mean 'dropout'?").
    ``jobs`` = 2: the checks that do not read the shared stream run in a forked process while the
    shared stream runs here, where a fork is safe (no JAX / TensorFlow imported, no CUDA context)
    and there is no time budget: the same results in less wall time on 2 or more cores (reports/bench.md
    measures it).
    """
    from .settings import get_profile
    from .targets._base import check_layout_rank, numpy_dtype, probe_shape_arg
    from .targets.user import factory_spec

    settings = settings_for(settings, seed, alpha, profile)
    check_jobs(jobs)
    if checks is None and profile is not None:
        checks = get_profile(profile).checks
    fixed_axes = {k: v for k, v in (("dtype", dtype), ("layout", layout)) if v is not None}
    dtype, layout = dtype or "float64", layout or "contiguous"
    if checks is not None:
        checks = [checks] if isinstance(checks, str) else list(checks)
        from .checknames import producing_checks
        producing_checks(checks)  # an unknown name (with the closest) before any framework loads
    shape_t = probe_shape_arg(shape)
    numpy_dtype(dtype)  # an unknown dtype (with the closest) before any framework loads
    if isinstance(target, str):
        specs = resolve_configuration(target, variant, params, shape_t, dtype, layout, device)
        variant = specs[0].variant
        reproduce = reproduce_command(target, variant, params, shape_t, settings, dtype, layout, device, checks)
    elif callable(target) or _is_layer_object(target):
        if variant is None:
            raise InvalidArgument("variant=None, but a factory or layer object needs the variant it claims, "
                                  "e.g. verify(make, 'dropout', p=0.2)")
        from .variants import get_contract
        get_contract(variant)  # an unknown variant (with the closest names)
        if _is_layer_object(target):
            params = {**_current_params(target), **params}
            if "p" not in params:
                raise InvalidArgument(f"cannot read p from the {type(target).__name__} object: give p=...")
            from .variants import get_contract
            known = {ps.name for ps in get_contract(variant).params}
            own = {k: v for k, v in params.items() if k in known}
            factory = layer_factory(target, own)
            name = f"object:{type(target).__module__}.{type(target).__qualname__}"
            reproduce = reproduce_python(f"<your {type(target).__name__} layer>", variant, own, shape_t,
                                         settings, dtype, layout, device, checks)
            params = own
        else:
            factory = target
            where = _importable(target)
            name = f"user:{where}" if where else None
            reproduce = (reproduce_command(where, variant, params, shape_t, settings, dtype, layout, device, checks)
                         if where else
                         reproduce_python(f"<your factory {getattr(target, '__qualname__', 'factory')}>", variant,
                                          params, shape_t, settings, dtype, layout, device, checks))
        spec = factory_spec(factory, variant, params, shape=shape_t, device=device, name=name)
        check_layout_rank(layout, spec.probe_shape(), spec.name)
        specs = [dataclasses.replace(spec, dtype=dtype, layout=layout)]
    else:
        raise InvalidArgument(f"target={target!r}, but should be a target name ('torch:Dropout', "
                              "'mymodule:make'), a factory or a layer object")
    if sweep:
        report = _sweep(target if isinstance(target, str) else factory, variant, specs, settings, params, shape_t,
                        fixed_axes, device, reproduce)
    else:  # a dtype / layout the target does not take: now, not an ERROR after sampling
        report = Report(run=run_configurations(specs, settings, checks, workers=jobs), reproduce=reproduce)
    _session.notify(report)
    return report


__all__ = ["DEFAULT_SEED", "Report", "failure_row", "layer_factory", "precheck_target", "reproduce_command",
           "resolve_configuration", "run_configurations", "verify"]
