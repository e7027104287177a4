"""Model-level checks of a scan: exact comparisons on what the recorder saw (no sampling).

Promises (each returns :class:`~dropverify.checks.CheckResult` objects, ``statistical=False``):

* :func:`eval_deterministic` — two eval-mode calls under different RNG seeds give identical
  outputs; a FAIL names the sites that dropped in eval.
* :func:`site_training` — in training the site receives the rate its module is configured
  with and is active (p > 0 and a training flag that lets it drop). For a functional call the
  configured rate is the first rate attribute found (:func:`~.discovery.lookup_configured`); a
  nonzero rate equal to another rate attribute of the same module counts as that one's.
* :func:`site_eval` — in eval the site applies nothing: a functional call passes p = 0 or
  training=False; a module site's output equals its contract's eval output on the real
  activations.
* :func:`site_round_trip` — train -> eval -> train leaves every call's p and activity as before.
* :func:`series` — no dropout takes, unchanged, the output of another applied dropout of its
  group (or its own): two in series are one dropout at p = 1 - (1 - p1)(1 - p2).
* :func:`rnn_layer_replay` — a torch LSTM / GRU / RNN in training equals its layers run one by
  one with its weights and ``F.dropout(p)`` between them under one seed (CPU), to 1e-5 of the
  output's scale.
* :func:`depth_schedules` — DropPath / stochastic-depth rates across repeated blocks rise
  linearly with depth: p_k = p_0 + k (p_last - p_0) / (n - 1) for the k-th block in depth order,
  within 1e-6 (absolute) + 1e-6 x p, never decreasing. timm and torchvision's
  ``linspace(0, rate, depth)`` (p_0 = 0) and a constant rate both satisfy it.
"""
from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..results import ERROR, FAIL, PASS, CheckResult
from .discovery import Call, Site, shown

EVAL_DETERMINISTIC = "eval_output_deterministic"
SITE_TRAINING = "site_receives_configured_p_in_training"
SITE_EVAL = "site_inactive_in_eval"
SITE_ROUND_TRIP = "site_p_restored_after_eval"
SCHEDULE = "depth_schedule_linear"
SERIES = "no_dropout_applied_twice_in_series"
RNN_REPLAY = "rnn_dropout_matches_layer_replay"
RNN_RTOL = 1e-5
"""Relative tolerance (of the output's largest magnitude) between an RNN and its layers replayed."""

P_TOL = 1e-6
"""Relative tolerance between a configured and a received rate (a float32 round trip of p)."""
SCHEDULE_TOL = 1e-6
"""A depth schedule is linear when every rate is within 1e-6 + 1e-6 x p of the line."""


def _result(check: str, target: str, variant: str, ok: bool, message: str, **details: Any) -> CheckResult:
    return CheckResult(check=check, target=target, variant=variant, verdict=PASS if ok else FAIL,
                       text=message, details=details)


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= P_TOL * max(abs(a), abs(b), 1e-12) or a == b


def _p_name(site: Site) -> str:
    return site.fop.p_arg if site.fop is not None else "p"


def _flag_words(site: Site, call: Call) -> str:
    """``F.dropout(p=0.1) called with training=True (F.dropout's default)``: the op's default is
    named when the flag has the default's value (a forgotten ``training=self.training`` looks
    like this; a functional op receives every argument by name, so whether it was passed is
    not observable)."""
    op = site.fop
    if op is None or op.flag_arg is None:
        return f"{site.kind}({_p_name(site)}={call.p:g})"
    default = op.defaults.get(op.flag_arg, None)
    how = f" ({op.shown}'s default; pass {op.flag_arg}=self.training)" if default is call.flag else ""
    return f"{op.shown}({op.p_arg}={call.p:g}) called with {op.flag_arg}={call.flag}{how}"


# ------------------------------------------------------------------------------ outputs


def tensors_of(output: Any) -> List[torch.Tensor]:
    """Every tensor in a model output (tensor, tuple, list, dict, dataclass-like outputs)."""
    from torch.utils._pytree import tree_flatten
    if hasattr(output, "to_tuple") and callable(output.to_tuple):  # transformers' ModelOutput
        output = output.to_tuple()
    leaves, _ = tree_flatten(output)
    return [t for t in leaves if isinstance(t, torch.Tensor)]


def eval_deterministic(y1: Any, y2: Any, sites: Sequence[Site], target: str,
                       eval_active: Sequence[str] = ()) -> CheckResult:
    """Two eval calls (different seeds): identical outputs, or a FAIL naming the active sites. Outputs
    that differ PASS when every site that dropped in eval is declared eval-active (MC dropout) and
    at least one did."""
    a, b = tensors_of(y1), tensors_of(y2)
    if len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b)):
        return _result(EVAL_DETERMINISTIC, target, "model", False,
                       "eval output changes structure between two calls")
    off = total = 0
    worst = 0.0
    for x, y in zip(a, b):
        same = (x == y) | (torch.isnan(x) & torch.isnan(y)) if x.is_floating_point() else (x == y)
        off += int((~same).sum())
        total += int(x.numel())
        if x.is_floating_point() and bool((~same).any()):
            worst = max(worst, float((x.double() - y.double()).abs().nan_to_num(0.0).max()))
    active = [s for s in sites if any(c.applied for c in s.phase("eval"))]
    declared = [s for s in active if _declared(s, eval_active)]
    if off and active and len(declared) == len(active):
        return _result(EVAL_DETERMINISTIC, target, "model", True,
                       f"eval output differs between two calls under different seeds ({off} of {total} elements), "
                       f"as declared: only eval-active (MC dropout) sites dropped in eval ("
                       + ", ".join(s.label for s in declared[:3]) + (" ..." if len(declared) > 3 else "") + ")",
                       elements_differing=off, elements=total, sites_active_in_eval=[s.label for s in active])
    active = [s for s in active if not _declared(s, eval_active)]
    if off == 0:
        return _result(EVAL_DETERMINISTIC, target, "model", True,
                       f"two eval calls under different seeds give identical outputs ({total} elements)",
                       elements=total)
    named = ", ".join(f"{s.label} ({_active_words(s)})" for s in active[:3])
    named += f" and {len(active) - 3} more site(s)" if len(active) > 3 else ""
    where = ("; dropout applied in eval at " + named
             if active else "; no intercepted dropout site was active in eval: the randomness comes from "
                            "another op (a module classified as none, or a random op outside the dropout family)")
    return _result(EVAL_DETERMINISTIC, target, "model", False,
                   f"eval output differs between two calls under different seeds: {off} of {total} elements, "
                   f"max |diff| {worst:.3g}{where}", elements_differing=off, elements=total,
                   sites_active_in_eval=[s.label for s in active])


def _declared(site: Site, eval_active: Sequence[str]) -> bool:
    from .insitu import eval_active_match
    return bool(eval_active) and eval_active_match(site, eval_active)


def outside_words(site: Site, call: Call) -> str:
    """Why a dropout module the model does not register drops in eval, and the fix that fits."""
    module = call.extra.get("module", site.kind)
    if site.outside and site.outside != "forward":
        return (f"{module} kept in a plain Python {site.outside} is not a registered submodule, so model.eval() "
                f"does not reach it and it stays in training mode: use nn.ModuleList (or nn.ModuleDict)")
    return (f"{module} built inside forward() is a new module on every call, in training mode whatever the model's "
            f"mode: build it in __init__ (or call F.dropout(x, p, training=self.training))")


def _active_words(site: Site) -> str:
    call = next(c for c in site.phase("eval") if c.applied)
    if site.outside:
        return outside_words(site, call)
    if site.op == "scaled_dot_product_attention":
        return f"scaled_dot_product_attention dropout_p={call.p:g}"
    if site.fop is not None:
        return _flag_words(site, call)
    return f"{site.kind} p={call.p:g} in training mode"


# ------------------------------------------------------------------------------ sites


def site_training(site: Site, target: str, variant: str) -> CheckResult:
    """The rate received in training equals the configured one, and the site is active."""
    calls = site.phase("train")
    pname = _p_name(site)
    received = sorted({c.p for c in calls})
    got = ", ".join(f"{p:g}" for p in received)
    what = site.kind if site.is_module else site.fop.shown if site.fop else site.kind
    inactive = [c for c in calls if c.p > 0 and not c.applied]
    details = {"received": received, "configured": site.configured, "configured_from": site.configured_from,
               "calls": len(calls)}
    if not calls:
        return _result(SITE_TRAINING, target, variant, True,
                       f"{site.label}: {what} not called in training (only in eval)", **details)
    if inactive:
        c = inactive[0]
        if site.module_kind is not None and site.module_kind.rnn and c.module_training:
            layers = c.extra.get("num_layers", 1)
            return _result(SITE_TRAINING, target, variant, False,
                           f"{site.label}: {site.kind.split(' ')[0]}(num_layers={layers}, dropout={c.p:g}) never "
                           f"drops: torch applies an RNN's dropout only between stacked layers, so with one layer "
                           f"it is a no-op (torch warns); use num_layers >= 2, or an nn.Dropout on the output",
                           **details)
        if site.is_module and c.flag is None:
            why = f"{site.label}: {what}({pname}={c.p:g}) is in eval mode while the model trains: it never drops"
        elif site.is_module:
            why = (f"{site.label}: {what} calls {c.extra.get('via', 'its op')}({pname}={c.p:g}) with training="
                   f"{c.flag} in training: it never drops")
        else:
            why = f"{site.label}: {_flag_words(site, c)} in training: it never drops"
        return _result(SITE_TRAINING, target, variant, False, why, **details)
    if site.configured is None:
        looked = ", ".join(site.looked_for)
        return _result(SITE_TRAINING, target, variant, True,
                       f"{site.label}: {what} received {pname}={got} in training; no configured rate found on "
                       f"{shown(site.path)} or its parent to compare (looked for {looked})", **details)
    wrong = [p for p in received if not _same(p, site.configured)]
    # a module may keep several rates (attention and residual): a nonzero rate equal to another of its
    # rate attributes is that one's; a zero where the first one is nonzero stays the unplumbed-rate FAIL
    other = {p: next((w for v, w in site.alternatives if _same(p, v)), None) for p in wrong if p > 0}
    if wrong and all(other.get(p) for p in wrong):
        return _result(SITE_TRAINING, target, variant, True,
                       f"{site.label}: {what} received {pname}={got} in training, as configured ("
                       + ", ".join(other[p] for p in wrong) + f"; the first rate attribute, {site.configured_from}, "
                       f"is {site.configured:g})", **details)
    if wrong:
        return _result(SITE_TRAINING, target, variant, False,
                       f"{site.label}: {what} received {pname}={wrong[0]:g} in training, but "
                       f"{site.configured:g} is configured ({site.configured_from}): the configured rate is not "
                       f"plumbed into the call", **details)
    return _result(SITE_TRAINING, target, variant, True,
                   f"{site.label}: {what} received {pname}={got} in training, as configured ({site.configured_from})",
                   **details)


def site_eval(site: Site, target: str, variant: str, eval_active: bool = False) -> CheckResult:
    """Nothing dropped in eval: by the arguments passed, and for module sites by the output. A site
    declared eval-active (MC dropout) must instead drop in every eval call at its training rate."""
    calls = site.phase("eval")
    pname = _p_name(site)
    if not calls:
        return _result(SITE_EVAL, target, variant, True, f"{site.label}: not called in eval", calls=0)
    bad = [c for c in calls if c.applied]
    if eval_active:
        rates = sorted({c.p for c in site.phase("train")})
        drops = lambda c: c.applied or bool(c.eval_off and c.eval_off[0] > 0)  # noqa: E731
        off = [c for c in calls if not drops(c) or not any(_same(c.p, r) for r in rates)]
        if off:
            c = off[0]
            how = "does not drop" if not drops(c) else f"drops at {pname}={c.p:g}, not its training rate"
            return _result(SITE_EVAL, target, variant, False,
                           f"{site.label}: declared eval-active (MC dropout), but {how} in {len(off)} of "
                           f"{len(calls)} eval call(s)", calls=len(calls), active=len(bad))
        return _result(SITE_EVAL, target, variant, True,
                       f"{site.label}: declared eval-active (MC dropout): drops in all {len(calls)} eval call(s) at "
                       f"{pname}=" + ", ".join(f"{c:g}" for c in sorted({c.p for c in calls})) + ", its training "
                       "rate", calls=len(calls), active=len(bad))
    if bad:
        c = bad[0]
        if site.outside:
            why = f"{site.label}: {outside_words(site, c)}; it drops in eval"
        elif site.op == "scaled_dot_product_attention":
            why = f"{site.label}: dropout_p={c.p:g} passed to scaled_dot_product_attention in eval"
        elif not site.is_module:
            why = f"{site.label}: {_flag_words(site, c)} in eval"
        elif c.flag is not None:
            why = (f"{site.label}: {site.kind} calls {c.extra.get('via', 'its op')}({pname}={c.p:g}) with training="
                   f"{c.flag} in eval")
        else:
            rnn = site.module_kind is not None and site.module_kind.rnn
            kind = site.kind.split(" (")[0] if rnn else site.kind
            why = (f"{site.label}: {kind}({'dropout' if rnn else pname}={c.p:g}) is in training mode while the model "
                   f"is in eval" + (": it drops between its layers" if rnn else ""))
        return _result(SITE_EVAL, target, variant, False, why + f" ({len(bad)} of {len(calls)} eval calls)",
                       calls=len(calls), active=len(bad))
    off = [c.eval_off for c in calls if c.eval_off is not None and c.eval_off[0] > 0]
    if off:
        n, total = off[0]
        return _result(SITE_EVAL, target, variant, False,
                       f"{site.label}: {site.kind} output differs from its eval output (the input) in eval: "
                       f"{n} of {total} elements on the real activations", calls=len(calls), elements_off=n)
    how = ("in eval mode: torch drops between an RNN's layers in training only" if site.module_kind is not None
           and site.module_kind.rnn else "output equal to its eval output on the real activations" if site.is_module
           else f"{pname}=0 passed" if site.fop is None or site.fop.flag_arg is None
           else f"{site.fop.flag_arg}=False or {pname}=0 passed")
    return _result(SITE_EVAL, target, variant, True, f"{site.label}: inactive in {len(calls)} eval call(s) ({how})",
                   calls=len(calls))


def site_round_trip(site: Site, target: str, variant: str) -> CheckResult:
    """train -> eval -> train: every call's p and activity as before the eval pass."""
    before, after = site.phase("train"), site.phase("train_after_eval")
    pname = _p_name(site)
    if len(before) != len(after):
        return _result(SITE_ROUND_TRIP, target, variant, False,
                       f"{site.label}: called {len(before)} time(s) in training before an eval pass, {len(after)} "
                       f"after it (train -> eval -> train)", before=len(before), after=len(after))
    for a, b in zip(before, after):
        if not _same(a.p, b.p):
            return _result(SITE_ROUND_TRIP, target, variant, False,
                           f"{site.label}: {pname}={a.p:g} in training before an eval pass, {b.p:g} after it "
                           f"(train -> eval -> train): the rate is not restored", before=a.p, after=b.p)
        if a.applied != b.applied:
            return _result(SITE_ROUND_TRIP, target, variant, False,
                           f"{site.label}: {'drops' if a.applied else 'does not drop'} in training before an eval "
                           f"pass, {'drops' if b.applied else 'does not drop'} after it (train -> eval -> train)",
                           before=a.applied, after=b.applied)
    ps = ", ".join(f"{p:g}" for p in sorted({c.p for c in before})) or "none"
    return _result(SITE_ROUND_TRIP, target, variant, True,
                   f"{site.label}: {pname}={ps} in training before and after an eval pass ({len(before)} call(s))")


def series(sites: Sequence[Site], target: str) -> CheckResult:
    """No applied dropout call in training takes, unchanged (the same tensor, no in-place op since),
    the output of another applied dropout of the same kind: two in series are one dropout at
    p = 1 - (1 - p1)(1 - p2), named with that effective rate (one module applied twice included)."""
    pairs: Dict[Tuple[str, str], Tuple[float, float]] = {}
    for s in sites:
        for c in s.phase("train"):
            if "after" in c.extra:
                first, p1 = c.extra["after"]
                pairs.setdefault((first, s.label), (p1, c.p))
    if not pairs:
        checked = sum(1 for s in sites for c in s.phase("train") if c.applied)
        return _result(SERIES, target, "model", True,
                       f"no dropout's input is the unchanged output of another dropout of its kind ({checked} "
                       f"applied training call(s))", pairs=[])
    words = []
    for (first, second), (p1, p2) in pairs.items():
        eff = 1 - (1 - p1) * (1 - p2)
        what = (f"{second} is applied twice to the same tensor" if first == second else
                f"{second} is applied to the output of {first} with nothing between")
        words.append(f"{what}: p {p1:g} then {p2:g} is one dropout at effective p = 1 - (1 - {p1:g})(1 - {p2:g}) "
                     f"= {eff:.4g}")
    return _result(SERIES, target, "model", False, "; ".join(words),
                   pairs=[{"first": a, "second": b, "p": list(v), "effective_p": 1 - (1 - v[0]) * (1 - v[1])}
                          for (a, b), v in pairs.items()])


def _single_layers(module: nn.Module) -> List[nn.Module]:
    """The stacked layers of a torch LSTM / GRU / RNN as one-layer modules of the same class carrying
    the same weights (layer k's ``*_l{k}`` parameters as ``*_l0``)."""
    kw: Dict[str, Any] = {"bias": module.bias, "batch_first": module.batch_first, "bidirectional": module.bidirectional}
    if isinstance(module, nn.LSTM):
        kw["proj_size"] = module.proj_size
    if isinstance(module, nn.RNN):
        kw["nonlinearity"] = module.nonlinearity
    width = (module.proj_size or module.hidden_size) * (2 if module.bidirectional else 1) \
        if isinstance(module, nn.LSTM) else module.hidden_size * (2 if module.bidirectional else 1)
    params = dict(module.named_parameters())
    layers = []
    for k in range(module.num_layers):
        layer = type(module)(module.input_size if k == 0 else width, module.hidden_size, num_layers=1, **kw)
        layer = layer.to(dtype=next(iter(params.values())).dtype, device=next(iter(params.values())).device)
        with torch.no_grad():
            for name, param in layer.named_parameters():
                param.copy_(params[name.replace("_l0", f"_l{k}")])
        layers.append(layer.train())
    return layers


def rnn_layer_replay(site: Site, target: str, variant: str, seed: int) -> CheckResult:
    """A torch LSTM / GRU / RNN site in training equals its layers run one by one with the same weights
    and ``F.dropout(h, p, training=True)`` between them, under one seed (a seeded normal probe of the
    recorded input shape): the model's own module drops between its layers exactly as F.dropout at p."""
    call = (site.phase("train") or [None])[0]
    module = site.snapshot
    exact_class = module is not None and type(module) in (nn.LSTM, nn.GRU, nn.RNN)
    if call is None or not call.applied or not call.shapes or not exact_class or call.device.startswith("cuda"):
        why = ("a subclass: its forward is its own" if module is not None and not exact_class else
               "on CUDA, cuDNN draws an RNN's dropout from its own state" if call is not None
               and call.device.startswith("cuda") else "no applied training call with a tensor input")
        return _result(RNN_REPLAY, target, variant, True, f"{site.label}: not replayed ({why})", replayed=False)
    from .insitu import _device
    dtype = getattr(torch, call.dtype, torch.float32)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(call.shapes[0], generator=g, dtype=torch.float64).to(dtype=dtype, device=_device(call.device))
    work = copy.deepcopy(module).train()
    work.dropout = call.p
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        y = work(x)[0]
        layers = _single_layers(work)  # built before seeding: their initialisation draws random numbers
        torch.manual_seed(seed)
        h = x
        for k, layer in enumerate(layers):
            h = layer(h)[0]
            if k < len(layers) - 1:
                h = F.dropout(h, call.p, training=True)
    scale = float(y.abs().max()) or 1.0
    diff = float((y.double() - h.double()).abs().max())
    ok = diff <= RNN_RTOL * scale
    words = (f"{site.label}: {type(module).__name__}(num_layers={module.num_layers}, dropout={call.p:g}) in training "
             f"{'equals' if ok else 'differs from'} its layers run one by one with the same weights and "
             f"F.dropout(p={call.p:g}) between them under one seed (max |diff| {diff:.3g}, output scale {scale:.3g})")
    return _result(RNN_REPLAY, target, variant, ok, words + ("" if ok else ": it does not drop between its layers as "
                                                             "F.dropout at its p does"), max_abs_diff=diff)


# ------------------------------------------------------------------------------ depth schedules


@dataclass(frozen=True)
class Schedule:
    """Rates of one repeated DropPath / stochastic-depth position across blocks, in depth order."""

    pattern: str                         # "blocks.{i}.drop_path1"
    paths: Tuple[str, ...]
    rates: Tuple[float, ...]
    identity: Tuple[bool, ...]           # True: an nn.Identity stands there (rate 0)
    verdict: str = PASS
    message: str = ""


_NUM = re.compile(r"^\d+$")


def _pattern(path: str) -> Tuple[str, Tuple[int, ...]]:
    parts = path.split(".")
    return ".".join("{i}" if _NUM.match(p) else p for p in parts), tuple(int(p) for p in parts if _NUM.match(p))


def depth_schedules(model: nn.Module, sites: Sequence[Site]) -> List[Schedule]:
    """Group DropPath / stochastic-depth module sites by their path with block indices
    wildcarded; an ``nn.Identity`` at a matching path counts as rate 0 (timm's block 0)."""
    groups: Dict[str, Dict[Tuple[int, ...], Tuple[str, float, bool]]] = {}
    for s in sites:
        kind = s.module_kind
        if not s.is_module or kind is None or kind.variant not in ("drop_path", "stochastic_depth"):
            continue
        pattern, idx = _pattern(s.path)
        if idx and s.configured is not None:
            groups.setdefault(pattern, {})[idx] = (s.path, float(s.configured), False)
    if not groups:
        return []
    for path, module in model.named_modules():
        if type(module) is nn.Identity:
            pattern, idx = _pattern(path)
            if pattern in groups and idx not in groups[pattern]:
                groups[pattern][idx] = (path, 0.0, True)
    out = []
    for pattern, members in groups.items():
        if len(members) < 2:
            continue
        order = sorted(members)
        paths = tuple(members[i][0] for i in order)
        rates = tuple(members[i][1] for i in order)
        ident = tuple(members[i][2] for i in order)
        verdict, message = _judge(pattern, paths, rates)
        out.append(Schedule(pattern, paths, rates, ident, verdict, message))
    return out


def _judge(pattern: str, paths: Sequence[str], rates: Sequence[float]) -> Tuple[str, str]:
    n = len(rates)
    listed = ", ".join(f"{r:.4g}" for r in rates)
    for k in range(n - 1):
        if rates[k + 1] < rates[k] - SCHEDULE_TOL * (1 + abs(rates[k])):
            return FAIL, (f"{pattern}: drop rates decrease with depth ({paths[k]} {rates[k]:.4g} -> {paths[k + 1]} "
                          f"{rates[k + 1]:.4g}); schedule {listed}; the linear rule rises from the first block to "
                          f"the last (timm / torchvision: linspace(0, rate, depth))")
    first, last = rates[0], rates[-1]
    for k, r in enumerate(rates):
        line = first + k * (last - first) / (n - 1)
        if abs(r - line) > SCHEDULE_TOL * (1 + abs(line)):
            return FAIL, (f"{pattern}: drop rates are not linear in depth: {paths[k]} has {r:.4g}, the line from "
                          f"{first:.4g} to {last:.4g} gives {line:.4g} there; schedule {listed}")
    if math.isclose(first, last, rel_tol=0, abs_tol=SCHEDULE_TOL):
        return PASS, f"{pattern}: constant rate {first:.4g} over {n} blocks (a degenerate linear schedule)"
    return PASS, (f"{pattern}: {n} rates rising linearly from {first:.4g} to {last:.4g} "
                  f"(step {(last - first) / (n - 1):.4g}); schedule {listed}")


def schedule_results(schedules: Sequence[Schedule], target: str) -> List[CheckResult]:
    return [CheckResult(check=f"{SCHEDULE}[{s.pattern}]", target=target, variant="model", verdict=s.verdict,
                        text=s.message, details={"paths": list(s.paths), "rates": list(s.rates),
                                                    "identity": list(s.identity)})
            for s in schedules]


def error_result(check: str, target: str, variant: str, exc: BaseException, when: str) -> CheckResult:
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return CheckResult(check=check, target=target, variant=variant, verdict=ERROR,
                       text=f"the model raised {type(exc).__name__}{': ' + text if text else ''} {when}")


__all__ = ["EVAL_DETERMINISTIC", "RNN_REPLAY", "SCHEDULE", "SERIES", "rnn_layer_replay", "series", "SITE_EVAL", "SITE_ROUND_TRIP", "SITE_TRAINING", "Schedule",
           "depth_schedules", "error_result", "eval_deterministic", "schedule_results", "site_eval",
           "site_round_trip", "site_training", "tensors_of"]
