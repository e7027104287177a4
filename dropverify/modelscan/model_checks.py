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

from ..results import FAIL, PASS, CheckResult
from .site_checks import (EVAL_DETERMINISTIC, P_TOL, SERIES, SITE_EVAL, SITE_ROUND_TRIP,  # noqa: F401 - re-exported
                          SITE_TRAINING, _result, _same, error_result, eval_active_match, eval_verdict, outside_words,
                          series, site_eval, site_round_trip, site_training)
from .layer_sites import to_numpy
from .sites import Site

SCHEDULE = "depth_schedule_linear"
RNN_REPLAY = "rnn_dropout_matches_layer_replay"
RNN_RTOL = 1e-5
"""Relative tolerance (of the output's largest magnitude) between an RNN and its layers replayed."""
SCHEDULE_TOL = 1e-6
"""A depth schedule is linear when every rate is within 1e-6 + 1e-6 x p of the line."""


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
    """Two eval calls (different seeds) of a torch model: :func:`~.site_checks.eval_verdict` on every
    tensor of the two outputs."""
    return eval_verdict([to_numpy(t) for t in tensors_of(y1)], [to_numpy(t) for t in tensors_of(y2)], sites,
                        target, eval_active)


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


__all__ = ["EVAL_DETERMINISTIC", "RNN_REPLAY", "SCHEDULE", "SERIES", "rnn_layer_replay", "series", "SITE_EVAL", "SITE_ROUND_TRIP", "SITE_TRAINING", "Schedule",
           "depth_schedules", "error_result", "eval_deterministic", "schedule_results", "site_eval",
           "site_round_trip", "site_training", "tensors_of"]
