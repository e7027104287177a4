"""What the Keras and Flax NNX scans share: a site per dropout-family layer object, its calls
recorded from numpy copies of the layer's input and output, the configured rate read from the
layer that owns it, the exact per-site checks, and the scan's end (:func:`.api.assemble`, the
one the torch scan uses).

Promises:

* :class:`CallLog` records one :class:`~.discovery.Call` per call of a site: the rate it applies,
  the mode flag it was passed (Keras ``training``; NNX ``not deterministic``), ``applied`` when the
  output differs from the input anywhere (so a probe of nonzero values sees every applied call),
  ``eval_off`` in eval (elements off the identity), and in training the dropped set
  (``y == 0`` where ``x != 0``). An applied call whose input is the very output object of an
  applied call of the same group in this training pass records it (``extra["after"]``: two
  dropouts in series).
* :func:`owner_rate` reads the configured rate from the owning layer's ``rate`` / ``dropout_rate``
  / ``drop_rate`` / ``dropout`` attribute where it has one (a layer that keeps a rate and builds
  its dropout with another one is the rate-not-plumbed bug), else the site's own rate.
* :func:`site_eval` FAILs a site that drops in eval, naming whether it ignored the flag it was
  passed (a layer passed ``training=False`` that drops) or was passed the wrong one.
* :func:`rng_advances` FAILs a site whose dropped set is identical in the two training passes
  while the model's own random state (NNX streams) advanced between them; it only judges when
  an identical set by chance has probability ``(p^2 + (1-p)^2)^n <=`` :data:`REPEAT_BOUND`.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..results import FAIL, PASS, CheckResult
from ..errors import InvalidArgument
from .sites import Call, ModuleKind, Site

OWNER_ATTRS = ("rate", "dropout_rate", "drop_rate", "dropout")
"""Rate attributes read, in this order, on the layer that owns a dropout site."""
RNG_CHECK = "site_rng_advances_between_calls"
REPEAT_BOUND = 1e-9
"""The dropped sets of two independent calls coincide with probability (p^2 + (1 - p)^2)^n for n
independent elements; the rng check judges only where that is at most this (its false-alarm bound)."""
PHASES = (("train", True, 0), ("eval1", False, 1), ("eval2", False, 2), ("train_after_eval", True, 0))
"""The four passes (output key, training, seed offset), in order, as the torch scan runs them."""


def to_numpy(x: Any) -> np.ndarray:
    """A numpy copy of a framework array (torch tensors detached; bfloat16 as float32, exactly)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":
            x = x.float()
        return x.numpy().copy()
    a = np.array(x, copy=True)
    return a.astype(np.float32) if a.dtype.name == "bfloat16" else a


def dtype_name(x: Any) -> str:
    """``float32`` for an array or a dtype of numpy, torch, jax or TF."""
    name = str(getattr(x, "dtype", x))
    return name.replace("torch.", "").replace("<dtype: '", "").replace("'>", "")


class CallLog:
    """Records the calls of every site (see the module docstring); ``phase`` is set by the driver."""

    def __init__(self) -> None:
        self.phase = "train"
        self.seq = 0
        self._outputs: Dict[int, Tuple[Any, str, float, str]] = {}

    def record(self, site: Site, p: float, flag: Optional[bool], x: Any, y: Any,
               extra: Optional[Dict[str, Any]] = None, applied: Optional[bool] = None) -> Call:
        xn, yn = to_numpy(x), to_numpy(y)
        same = xn.shape == yn.shape and bool(np.all((xn == yn) | (np.isnan(xn) & np.isnan(yn))))
        call = Call(self.phase, float(p), bool(p > 0 and not same) if applied is None else applied, flag,
                    flag is not None, bool(flag), (tuple(xn.shape),), dtype_name(x), "cpu", dict(extra or {}))
        if self.phase == "eval":
            call.eval_off = (int(np.sum(xn != yn)) if xn.shape == yn.shape else int(yn.size), int(yn.size))
        elif xn.shape == yn.shape:
            call.extra["dropped"] = np.packbits((yn == 0) & (xn != 0))
        group = site.module_kind.variant or site.kind if site.module_kind else site.kind
        if call.applied and self.phase == "train":
            prev = self._outputs.get(id(x))
            if prev is not None and prev[0] is x and prev[3] == group:
                call.extra["after"] = (prev[1], prev[2])
            self._outputs[id(y)] = (y, site.label, call.p, group)
        self.seq += 1
        call.seq = self.seq
        site.calls.append(call)
        return call


def new_site(path: str, kind: str, variant: Optional[str], p_attr: str, rate: float,
             snapshot: Any = None, library: bool = True) -> Site:
    """A module site of a layer object (its own rate as configured until :func:`owner_rate`)."""
    return Site(path=path, kind=kind, op="module", module_kind=ModuleKind(kind, variant, p_attr, library=library),
                snapshot=snapshot, configured=float(rate), configured_from=f"{path or '(model)'}.{p_attr}",
                looked_for=(p_attr,))


def owner_rate(site: Site, owner: Any, owner_path: str) -> None:
    """Take the configured rate from the owning layer's first rate attribute (others: alternatives)."""
    if owner is None:
        return
    found = []
    for name in OWNER_ATTRS:
        try:
            v = getattr(owner, name, None)
        except Exception:  # noqa: BLE001 - a property that raises: no rate
            continue
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            found.append((float(v), f"{owner_path or '(model)'}.{name}"))
    if found:
        site.configured, site.configured_from = found[0]
        site.alternatives = tuple(found[1:])
        site.looked_for = OWNER_ATTRS


def _result(check: str, site: Site, variant: str, ok: bool, message: str, **details: Any) -> CheckResult:
    return CheckResult(check=check, target=site.name, variant=variant, verdict=PASS if ok else FAIL, text=message,
                       details=details)


def site_eval(site: Site, variant: str, flag_words: Tuple[str, str]) -> CheckResult:
    """Nothing dropped in eval; a FAIL says whether the layer ignored the eval flag it was passed
    (``flag_words[0]``, e.g. ``training=False``) or was passed the training one (``flag_words[1]``)."""
    from . import site_checks as mc
    bad = [c for c in site.phase("eval") if c.applied]
    if bad and bad[0].flag is False:
        return _result(mc.SITE_EVAL, site, variant, False,
                       f"{site.label}: {site.kind} drops in eval although it is passed {flag_words[0]}: it ignores "
                       f"the flag it is passed ({len(bad)} of {len(site.phase('eval'))} eval calls)",
                       calls=len(site.phase("eval")), active=len(bad))
    if bad and bad[0].flag is True:
        return _result(mc.SITE_EVAL, site, variant, False,
                       f"{site.label}: {site.kind} is passed {flag_words[1]} while the model is in eval, and drops "
                       f"(its caller fixes the flag instead of passing its own; {len(bad)} of "
                       f"{len(site.phase('eval'))} eval calls)", calls=len(site.phase("eval")), active=len(bad))
    return mc.site_eval(site, site.name, variant)


def rng_advances(site: Site, variant: str, what: str) -> CheckResult:
    """The dropped set differs between the two training passes (the random state advanced between
    them): FAIL when identical and a coincidence has probability at most :data:`REPEAT_BOUND`."""
    before, after = site.phase("train"), site.phase("train_after_eval")
    for k, (a, b) in enumerate(zip(before, after)):
        if "dropped" not in a.extra or "dropped" not in b.extra or not a.applied or not b.applied:
            continue
        n = int(np.prod(a.shapes[0])) if a.shapes else 0
        chance = (a.p ** 2 + (1 - a.p) ** 2) ** n if 0 < a.p < 1 else 1.0
        if chance > REPEAT_BOUND:
            continue
        if np.array_equal(a.extra["dropped"], b.extra["dropped"]):
            return _result(RNG_CHECK, site, variant, False,
                           f"{site.label}: the same elements are dropped in two training passes ({what} advanced "
                           f"between them): its random key does not advance between calls, so every call draws the "
                           f"same mask (chance of this by coincidence {chance:.2g})", chance=chance)
        return _result(RNG_CHECK, site, variant, True,
                       f"{site.label}: different elements dropped in two training passes (call {k + 1}; a repeat "
                       f"by chance has probability {chance:.2g})", chance=chance)
    return _result(RNG_CHECK, site, variant, True,
                   f"{site.label}: not judged (no pair of applied training calls where a repeated mask would be "
                   f"improbable by chance, <= {REPEAT_BOUND:g})", judged=False)


def leaves(output: Any) -> List[Any]:
    """Every array in a (nested) model output, as numpy arrays for the model-level eval check."""
    stack, out = [output], []
    while stack:
        o = stack.pop(0)
        if isinstance(o, dict):
            stack[:0] = [o[k] for k in sorted(o, key=str)]
        elif isinstance(o, (list, tuple)):
            stack[:0] = list(o)
        elif hasattr(o, "shape") and hasattr(o, "dtype"):
            out.append(np.asarray(to_numpy(o)))
    return out


def run_passes(call: Callable[[bool], Any], log: CallLog, reseed: Callable[[int], None], seed: int,
               describe: str) -> Dict[str, Any]:
    """train, eval (seed + 1), eval (seed + 2), train again (seed): outputs or the exception; a model
    that raises in its first training pass is an InvalidArgument (nothing to scan)."""
    out: Dict[str, Any] = {}
    for key, training, offset in PHASES:
        log.phase = "eval" if key.startswith("eval") else key
        reseed(seed + offset)
        try:
            out[key] = call(training)
        except Exception as exc:  # noqa: BLE001 - the model raised: the first training pass is fatal
            if key == "train":
                text = str(exc).splitlines()[0][:300] if str(exc) else ""
                raise InvalidArgument(f"the model raised {type(exc).__name__} on the example input ({describe}) in "
                                      f"training{': ' + text if text else ''}") from None
            out[key] = exc
    return out


def finish(model_name: str, describe: str, first_shape: Tuple[int, ...], sites: Sequence[Site],
           outputs: Dict[str, Any], settings: Any, chosen: Any, progress: Any, reproduce: Optional[str],
           spec_for: Callable[..., Any], flag_words: Tuple[str, str], versions: Dict[str, str], start: float,
           rng_what: Optional[str] = None, framework: str = "keras", expect: Optional[Mapping[str, float]] = None,
           jobs: int = 1) -> Any:
    """Model-level results, per-site exact results and the in-situ plan, through :func:`.api.assemble`;
    ``expect`` (parsed :func:`.configs.parse_expect` rates) is checked as in the torch scan (a pattern
    matching no site: InvalidArgument)."""
    from . import configs, site_checks as mc
    from .plan import plan
    configs.check_expect(expect or {}, sites)
    from .api import MODEL, assemble
    pass_seconds = time.perf_counter() - start
    y1, y2 = outputs.get("eval1"), outputs.get("eval2")
    bad = next((y for y in (y1, y2) if isinstance(y, Exception)), None)
    model_results = [mc.error_result(mc.EVAL_DETERMINISTIC, MODEL, "model", bad, "in eval") if bad is not None
                     else mc.eval_verdict(leaves(y1), leaves(y2), sites, MODEL), mc.series(sites, MODEL)]
    model_results += [r for r in (configs.expect_result(expect or {}, sites, MODEL),) if r is not None]
    round_trip_error = outputs.get("train_after_eval")
    round_trip_error = round_trip_error if isinstance(round_trip_error, Exception) else None

    def exact(site: Site) -> Tuple[Optional[str], List[CheckResult]]:
        variant = site.module_kind.variant if site.module_kind else None
        v = variant or "unknown"
        results = [mc.site_training(site, site.name, v), site_eval(site, v, flag_words)]
        results.append(mc.error_result(mc.SITE_ROUND_TRIP, site.name, v, round_trip_error,
                                       "in training after an eval pass") if round_trip_error is not None
                       else mc.site_round_trip(site, site.name, v))
        if rng_what is not None:
            results.append(rng_advances(site, v, rng_what))
        return variant, results

    return assemble(model_name, describe, first_shape, sites, model_results, exact,
                    plan(sites, (), spec_for=spec_for), settings, chosen, progress, reproduce,
                    (), pass_seconds, start, versions, framework, jobs)


def _arguments(example_inputs: Any) -> Tuple[Tuple[Any, ...], Dict[str, Any], List[Any]]:
    """(positional, keyword, every array): a tuple is positional, a dict keyword, a list ONE
    argument (a functional model's list of inputs), anything else one positional array."""
    if isinstance(example_inputs, tuple):
        args, kwargs = example_inputs, {}
    elif isinstance(example_inputs, dict):
        args, kwargs = (), dict(example_inputs)
    else:
        args, kwargs = (example_inputs,), {}
    arrays = [a for v in [*args, *kwargs.values()] for a in (v if isinstance(v, list) else [v])]
    if not arrays or not all(hasattr(a, "shape") and hasattr(a, "dtype") for a in arrays):
        raise InvalidArgument(f"example_inputs is a {type(example_inputs).__name__}, but should be an array (numpy or "
                              "the backend's), a tuple of positional inputs, a list (one list input) or a dict")
    return tuple(args), kwargs, arrays


def prepare(example_inputs: Any, seed: Optional[int], alpha: Optional[float], checks: Any, settings: Any,
            eval_active: Any, what: str, expect: Any = None
            ) -> Tuple[Any, Any, Tuple[Any, ...], Dict[str, Any], List[Any], Dict[str, float]]:
    """(settings, in-situ checks, positional args, keyword args, every array, the parsed ``expect``
    rates) of a Keras / NNX scan; InvalidArgument for bad arguments (``eval_active`` is the torch
    scan's only; ``expect`` as :func:`.configs.parse_expect` takes it)."""
    from ..api import settings_for
    from ..checks import Settings
    from .api import SCAN_MAX_CALLS
    from .configs import parse_expect
    from .plan import choose_checks
    if eval_active:
        raise InvalidArgument(f"eval_active applies to torch models; {what} scan verifies every site as inactive in "
                              "eval")
    settings = settings_for(settings or Settings(max_calls=SCAN_MAX_CALLS), seed, alpha)
    return (settings, choose_checks(checks), *_arguments(example_inputs), parse_expect(expect))


def describe_arrays(arrays: Sequence[Any]) -> str:
    """``(8, 16) float32; ...`` for the report's input line."""
    return "; ".join(f"{tuple(int(s) for s in a.shape)} {dtype_name(a)}" for a in arrays) or "no inputs"


__all__ = ["CallLog", "OWNER_ATTRS", "PHASES", "REPEAT_BOUND", "RNG_CHECK", "describe_arrays", "finish", "leaves",
           "new_site", "owner_rate", "prepare", "rng_advances", "run_passes", "site_eval", "to_numpy"]
