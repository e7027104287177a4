"""Wiring checks of a scan: bugs that live between layers, found by running the model a few more times.

Promises (each returns :class:`~dropverify.checks.CheckResult` objects on the model-level target;
every FAIL names the site(s) and the cause). Cost, in passes of the model on the example input
(under ``torch.no_grad`` unless said): 2 training + 2 eval passes always (:func:`wiring_results`),
22 more training and 4 more eval passes where a module is skipped at random or a LayerDrop rate
is configured, and 1 forward + 1 backward with gradients.

* :data:`SHARED` (a) — no two sites share a mask, within one forward or across two training
  forwards (a cached mask). Every applied call of an element-wise, channel or drop-path site is read
  as a binary mask over its units (dropped: the output is 0 over the unit while the input is not).
  Every pair of masks over the same unit shape (both passes, all sites and calls) is judged given
  its drop counts a and b among the n units observable in both: under independence the overlap is
  Hypergeometric(n, a, b); a pair FAILs when its overlap exceeds
  :func:`~dropverify.checks.callpatterns.overlap_limits` at false alarm 1e-9 over all C pairs
  (union bound: P(any FAIL on a correct model) <= 1e-9). An identical mask of a dropped units out of
  n has chance 1 / binom(n, a): one mask shared over >= 100 units at p >= 0.1 is caught (binom(100, 10)
  = 1.7e13). A mask is read on at most MAX_UNITS = 4096 of its units (a fixed stride).
* :data:`PLACEMENT` (c) — for every sample a DropPath / stochastic-depth site drops (every call of
  the site within one forward of its parent dropped it), the parent block's output equals its input
  exactly (the skip path): ``x + drop_path(f(x))``, not ``drop_path(x + f(x))``. The sites' rates are
  raised to :data:`PLACEMENT_P` on the two training passes so that samples drop; exact, no sampling error.
  INCONCLUSIVE when no sample was dropped (or every one reached the site as exact zeros: a
  zero-initialised branch).
* :data:`LAYERDROP` (d) — a module whose call count varies between training passes (LayerDrop:
  ``if self.training and rand < p: continue``), or a ModuleList under a module with a ``layerdrop``-like
  rate: over :data:`LAYERDROP_PASSES` training passes its layers are skipped at rate p (equal-tailed
  exact binomial acceptance region at :data:`LAYERDROP_ALPHA` = 1e-6: false alarm <= 1e-6; with 6
  layers at p = 0.1 it accepts 1..35 skips of 144, so keeping with probability p, a skip rate of
  0.9, is caught), and never skipped in :data:`LAYERDROP_EVAL_PASSES` eval passes (exact on what is seen).
* :data:`BACKWARD` (f) — one forward + backward in training: every site that runs again during the
  backward (activation checkpointing) gives, on the same input, the same output as in the forward;
  else the gradient flows through another mask (``checkpoint(..., preserve_rng_state=False)``).
  And wherever the site's output is ``x * mask`` in the graph (torch's dropout on CPU, DropPath), the
  gradient that node passes to x is 0 at every element the forward dropped (a recomputed or
  redrawn mask leaks gradient there). Exact on CPU (a recomputation on an input the forward never
  gave the site is left out, counted). Not seen: a functional call outside any module recomputed
  by a reentrant checkpoint (autograd runs it without the recorder's TorchFunctionMode).
* :data:`SCHEDULE_ORDER` (g) — the DropPath / stochastic-depth rates of the whole model's blocks in
  execution order (stages named block1 / layer2 ... included, an ``nn.Identity`` of a site's name
  counting as rate 0) never decrease (a restart per stage is a FAIL) and lie on one line from 0
  (timm, torchvision: rate x k / (L - 1), or EfficientNet's rate x k / L) or from rate / L (the
  paper: rate x l / L), within 1e-6 + 1e-6 x p; the rule found is named.
* :data:`UNBATCHED` (h) — a channel dropout (Dropout1d / 2d / 3d, F.dropout1d-3d) receives the rank it
  draws one mask per channel for; ``Dropout2d`` on a 3-D (C, H, W) map is read by torch as (N, C, L)
  and shares each draw along the last axis only: a FAIL naming the axes shared (observed).
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from scipy import stats as sps

from ..results import FAIL, INCONCLUSIVE, PASS, CheckResult
from ..checks.callpatterns import FALSE_ALARM, overlap_limits
from . import model_checks as mc
from .discovery import Site, shown
from .wiring_record import _CHANNEL, _DROP_PATH, Rec, _Wire

SHARED = "sites_draw_independent_masks"
PLACEMENT = "drop_path_dropped_sample_equals_skip_path"
LAYERDROP = "layerdrop_skips_at_rate_p_in_training_only"
BACKWARD = "backward_uses_forward_masks"
SCHEDULE_ORDER = f"{mc.SCHEDULE}[execution order]"
UNBATCHED = "channel_dropout_rank_batched"

SHARED_FALSE_ALARM = FALSE_ALARM
"""P(SHARED FAILs on a model whose sites draw independently) <= this (union bound over the compared pairs)."""
PLACEMENT_P = 0.75
"""The rate DropPath sites are raised to on the placement passes (only samples they drop are checked)."""
LAYERDROP_PASSES = 24
"""Training passes (the 2 mask passes included) over which LayerDrop skip rates are counted."""
LAYERDROP_EVAL_PASSES = 6
LAYERDROP_ALPHA = 1e-6
_LAYERDROP_ATTR = re.compile(r"layer_?drop|drop_?layer", re.I)


def _res(check: str, target: str, verdict: str, text: str, **details: Any) -> CheckResult:
    return CheckResult(check=check, target=target, variant="model", verdict=verdict, text=text, details=details)


# ------------------------------------------------------------------------------ (a) shared masks


def _who(rec: Tuple[str, str, int, Any, Any]) -> str:
    return rec[0] + f" ({'first' if rec[1] == 't1' else 'second'} forward" + (f", call {rec[2]})" if rec[2] > 1
                                                                               else ")")


def shared_masks(records: Sequence[Rec], target: str) -> CheckResult:
    """(a): no pair of recorded masks over one unit shape overlaps beyond chance given its drop counts."""
    groups: Dict[Tuple[int, ...], List[Tuple[str, str, int, np.ndarray, np.ndarray]]] = {}
    seen: Counter = Counter()
    for r in records:
        if r.mask is None:
            continue
        seen[(r.site.label, r.tag)] += 1
        groups.setdefault(r.mask[0], []).append((r.site.label, r.tag, seen[(r.site.label, r.tag)], r.mask[1],
                                                 r.mask[2]))
    sizes = [len(g) for g in groups.values()]
    total = sum(k * (k - 1) // 2 for k in sizes)
    if total == 0:
        return _res(SHARED, target, PASS, f"no two masks over one unit shape to compare ({sum(sizes)} mask(s) "
                    "readable)", pairs=0)
    worst: Optional[Tuple[float, str]] = None
    fails: List[str] = []
    informative = 0
    for shape, g in groups.items():
        if len(g) < 2:
            continue
        d = np.stack([r[3] for r in g]).astype(np.float64)
        o = np.stack([r[4] for r in g]).astype(np.float64)
        i, j = np.triu_indices(len(g), 1)
        n = (o @ o.T)[i, j].astype(np.int64)
        a = (d @ o.T)[i, j].astype(np.int64)       # dropped in i among units observable in j (and in i)
        b = (o @ d.T)[i, j].astype(np.int64)
        x = (d @ d.T)[i, j].astype(np.int64)
        limit = np.zeros_like(x)
        for n_ in np.unique(n):  # overlap_limits takes one n
            sel = n == n_
            limit[sel] = overlap_limits(int(n_), a[sel], b[sel], total, SHARED_FALSE_ALARM) if n_ > 0 else 0
        can = limit < np.minimum(a, b)
        informative += int(can.sum())
        tail = sps.hypergeom.sf(x - 1, np.maximum(n, 1), a, b)
        for k in np.flatnonzero(can & (x > limit)):
            r1, r2 = g[i[k]], g[j[k]]
            where = "in one training forward" if r1[1] == r2[1] else "in two training forwards (a cached mask)"
            same = "the same mask" if x[k] == a[k] == b[k] else f"overlapping masks ({x[k]} units dropped by both)"
            fails.append(f"{_who(r1)} and {_who(r2)} draw {same} {where}: {a[k]} and {b[k]} of {n[k]} units "
                         f"{tuple(shape)} dropped, P(overlap >= {x[k]}) = {tail[k]:.3g} if independent")
        k = int(np.argmin(np.where(can, tail, np.inf)))
        if can[k] and (worst is None or tail[k] < worst[0]):
            worst = (float(tail[k]), f"{g[i[k]][0]} / {g[j[k]][0]}")
    details = {"pairs": total, "informative_pairs": informative, "false_alarm": SHARED_FALSE_ALARM,
               "smallest_tail": None if worst is None else worst[0]}
    if fails:
        more = f" ({len(fails) - 2} more pair(s))" if len(fails) > 2 else ""
        return _res(SHARED, target, FAIL, "; ".join(fails[:2]) + more + ": a shared or cached mask (sites must "
                    f"draw independently; hypergeometric bound at {SHARED_FALSE_ALARM:g} over {total} pairs)",
                    **details)
    return _res(SHARED, target, PASS, f"{total} pairs of masks over one unit shape (2 training forwards), "
                f"{informative} able to show sharing: none overlaps beyond chance given its drop counts "
                f"(hypergeometric, false alarm <= {SHARED_FALSE_ALARM:g})" + (f"; smallest tail {worst[0]:.3g} "
                                                                      f"({worst[1]})" if worst else ""), **details)


# ------------------------------------------------------------------------------ (h) channel dropout rank


def channel_rank(sites: Sequence[Site], records: Sequence[Rec], target: str) -> CheckResult:
    """(h): a channel dropout's training input has the rank its class draws one mask per channel for."""
    bad: List[str] = []
    checked = 0
    for site in sites:
        m = _CHANNEL.search(site.kind if site.is_module else site.op)
        calls = [c for c in site.phase("train") if c.applied and c.shapes]
        if m is None or not calls:
            continue
        checked += 1
        dims = int(m.group(1))
        shape = calls[0].shapes[0]
        if len(shape) == dims + 2 or (len(shape) == dims + 1 and dims != 2):
            continue
        rec = next((r.pair for r in records if r.pair is not None and r.site.label == site.label), None)
        seen = ""
        if rec is not None and rec[0].shape == rec[1].shape:
            x, y = rec
            obs = (x != 0) & torch.isfinite(x)
            drop, keep = (y == 0) & obs, (y != 0) & obs
            shared = [k for k in range(x.dim()) if not bool((drop.any(k) & keep.any(k)).any())]
            seen = (f"; observed: each draw shared along axis {', '.join(map(str, shared))} only" if shared else
                    "; observed: no axis shared")
        reading = {3: "(N, C, L): one draw per (axis 0, axis 1) row, shared along axis 2 only"}.get(len(shape), "")
        bad.append(f"{site.label}: {site.kind.split(' (')[0]} fed a {len(shape)}-D input {tuple(shape)}"
                   + (f"; torch reads it as {reading} (and warns), not one draw per channel over (H, W) of an "
                      f"unbatched (C, H, W) map" if dims == 2 and len(shape) == 3 else
                      f"; it draws one mask per channel for {dims + 1}-D (unbatched) or {dims + 2}-D input")
                   + seen + ": add the batch axis (x.unsqueeze(0)) for an unbatched map"
                   + (", or use nn.Dropout1d for (N, C, L)" if dims == 2 and len(shape) == 3 else ""))
    if bad:
        return _res(UNBATCHED, target, FAIL, "; ".join(bad), sites=len(bad))
    return _res(UNBATCHED, target, PASS, f"{checked} channel-dropout site(s) fed the rank they draw per channel for",
                sites=0)


# ------------------------------------------------------------------------------ (c) DropPath placement


def placement(blocks: Sequence[Dict[str, Any]], target: str) -> CheckResult:
    """(c): dropped samples leave their block's output equal to its input (the skip path); ``blocks``:
    the recorder's summaries of DropPath parents' calls."""
    checked = sum(b["checked"] for b in blocks)
    wrong = [b for b in blocks if b["wrong"]]
    if wrong:
        b = wrong[0]
        return _res(PLACEMENT, target, FAIL,
                    f"{shown(b['path'])}: for {b['wrong']} of {b['checked']} sample(s) that {', '.join(b['dropped'])} "
                    f"dropped, the block's output is not its input (the skip path)"
                    + (f"; sample {b['first']}'s output is all zero" if b["zero_out"] else "")
                    + ": the drop path wraps the residual sum, drop_path(x + f(x)); apply it to the branch: "
                      "x + drop_path(f(x))" + (f" ({len(wrong) - 1} more block call(s))" if len(wrong) > 1 else ""),
                    blocks=list(dict.fromkeys(b["path"] for b in wrong)), samples_checked=checked)
    if checked == 0:
        zero = sum(b.get("zero", 0) for b in blocks)
        why = (f"; {zero} sample(s) reached the drop-path sites as exact zeros (a zero-initialised branch, e.g. "
               "timm's zero_init_last): placement shows only on a branch that computes something" if zero else "")
        return _res(PLACEMENT, target, INCONCLUSIVE, f"no sample dropped by every drop-path call of a block in "
                    f"2 training forwards at p = {PLACEMENT_P:g}: placement not observed" + why, zero_inputs=zero)
    return _res(PLACEMENT, target, PASS, f"{checked} dropped sample(s) in {len({b['path'] for b in blocks})} block(s):"
                f" each block's output equals its input exactly (x + drop_path(f(x)))", samples_checked=checked)


# ------------------------------------------------------------------------------ (d) LayerDrop


def _layerdrop_rate(model: nn.Module, path: str) -> Optional[Tuple[float, str, str]]:
    """(p, where, owner) of the nearest ancestor of ``path`` keeping a layerdrop-like rate in (0, 1]."""
    mods = dict(model.named_modules())
    parts = path.split(".") if path else []
    for cut in range(len(parts) - 1, -1, -1):
        owner = ".".join(parts[:cut])
        for name, v in vars(mods.get(owner, nn.Module())).items():
            if _LAYERDROP_ATTR.search(name) and isinstance(v, (float, int)) and not isinstance(v, bool) \
                    and 0 < float(v) <= 1:
                return float(v), f"{shown(owner)}.{name}", owner
    return None


def layerdrop_candidates(model: nn.Module, counts: Mapping[str, Counter]) -> List[str]:
    """Modules whose call count differs between passes (outermost only), and the layers of ModuleLists
    held by a module with a layerdrop-like rate > 0."""
    paths = set().union(*[set(c) for c in counts.values()]) if counts else set()
    varying = {p for p in paths if len({c.get(p, 0) for c in counts.values()}) > 1}
    for path, module in model.named_modules():
        if any(_LAYERDROP_ATTR.search(n) and isinstance(v, float) and v > 0 for n, v in vars(module).items()):
            for name, child in module.named_children():
                if isinstance(child, nn.ModuleList):
                    varying |= {f"{path}.{name}.{k}".lstrip(".") for k in range(len(child))}
    return sorted((p for p in varying if not any(p.startswith(q + ".") for q in varying)),
                  key=lambda p: [int(t) if t.isdigit() else t for t in p.split(".")])


def layerdrop(model: nn.Module, candidates: Sequence[str], train: Sequence[Counter], evals: Sequence[Counter],
              target: str) -> CheckResult:
    """(d): per owner (the module keeping the rate), skips over ``train`` passes within the equal-tailed
    binomial acceptance region at LAYERDROP_ALPHA; no layer skipped in any eval pass."""
    if not candidates:
        return _res(LAYERDROP, target, PASS, "no module skipped at random between passes and no LayerDrop rate "
                    "configured", layers=0)
    full = {p: max(c.get(p, 0) for c in [*evals, *train]) for p in candidates}
    in_eval = [p for p in candidates if min(c.get(p, 0) for c in evals) < full[p] or full[p] == 0]
    if in_eval:
        return _res(LAYERDROP, target, FAIL, f"{', '.join(map(shown, in_eval[:3]))}: skipped in eval (called "
                    f"{min(c.get(in_eval[0], 0) for c in evals)} time(s) in an eval forward, {full[in_eval[0]]} in "
                    "another or never): LayerDrop must skip in training only (check self.training)",
                    layers=in_eval)
    owners: Dict[Optional[Tuple[float, str, str]], List[str]] = {}
    for p in candidates:
        owners.setdefault(_layerdrop_rate(model, p), []).append(p)
    words, ok = [], True
    for rate, layers in owners.items():
        skips = int(sum(full[p] - c.get(p, 0) for c in train for p in layers))
        trials = int(sum(full[p] for p in layers)) * len(train)
        names = f"{shown(layers[0])} .. {shown(layers[-1])}" if len(layers) > 1 else shown(layers[0])
        seen = f"{len(layers)} layer(s) {names} skipped in {skips} of {trials} training calls ({skips / trials:.3g})"
        if rate is None:
            words.append(f"{seen}; no layerdrop-like rate found on an ancestor to compare (looked for "
                         f"{_LAYERDROP_ATTR.pattern})")
            continue
        p, where, _ = rate
        lo = int(sps.binom.ppf(LAYERDROP_ALPHA / 2, trials, p))
        hi = int(sps.binom.isf(LAYERDROP_ALPHA / 2, trials, p))
        if lo <= skips <= hi:
            words.append(f"{seen}, as {where} = {p:g} (accepted {lo}..{hi}, false alarm <= {LAYERDROP_ALPHA:g})")
            continue
        ok = False
        flip = abs(skips / trials - (1 - p)) < abs(skips / trials - p)
        words.insert(0, f"{seen}, but {where} = {p:g} (accepted {lo}..{hi} at false alarm {LAYERDROP_ALPHA:g})"
                     + (f": layers are KEPT with probability {p:g} instead of dropped (skip rate near 1 - p; "
                        f"skip when rand < p)" if flip else ": the skip rate is not the configured LayerDrop rate"))
    return _res(LAYERDROP, target, PASS if ok else FAIL, "; ".join(words) + f" ({len(train)} training forwards; "
                "never skipped in eval)", layers=list(candidates), passes=len(train))


# ------------------------------------------------------------------------------ (f) backward


def backward_masks(work: nn.Module, args: Tuple[Any, ...], kwargs: Dict[str, Any], seed: int,
                   target: str) -> CheckResult:
    """(f): one training forward + backward; every site run again during the backward (recomputed)
    gives the forward's output on the forward's input."""
    from .api import _clone
    rec = _Wire(work, capture=True)
    rec.grads = True
    params = [p for p in work.parameters() if p.requires_grad]
    grads = [p.grad for p in params]
    work.train(True)
    torch.manual_seed(seed)
    a, k = _clone(args, kwargs)
    try:
        from torch.utils.checkpoint import set_checkpoint_early_stop  # recompute whole segments: every site's output
        with torch.enable_grad(), set_checkpoint_early_stop(False), rec.recording("train"):
            rec.tag = "forward"
            out = work(*a, **k)
            ts = [t for t in mc.tensors_of(out) if t.requires_grad and t.is_floating_point()]
            if ts:
                rec.tag = "backward"
                sum(t.float().sum() for t in ts).backward()
    finally:
        for p, g in zip(params, grads):
            p.grad = g
    if not ts:
        return _res(BACKWARD, target, PASS, "not run: no model output requires a gradient", recomputed=0)
    bad: Dict[str, List[str]] = {}
    for k, g in rec.node_grads.items():  # the gradient of a unit the forward dropped must be 0
        r = rec.records[k]
        if g is None or r.dropped is None or g.shape != r.dropped.shape:
            continue
        leak = r.dropped & (g != 0)
        if bool(leak.any()):
            bad.setdefault(r.site.label, []).append(
                f"the backward pass sends a gradient through {int(leak.sum())} of {int(r.dropped.sum())} element(s) "
                "the forward dropped")
    fwd = {(r.site.name, r.x_key): r for r in rec.records if r.tag == "forward"}
    again = [r for r in rec.records if r.tag == "backward"]
    unmatched, same = 0, 0
    for r in again:
        match = fwd.get((r.site.name, r.x_key))
        if match is None:
            unmatched += 1
            continue
        if match.y_key != r.y_key:
            units = "" if match.mask is None or r.mask is None else (
                f": {int((match.mask[1] != r.mask[1]).sum())} of {match.mask[1].size} units dropped differently")
            bad.setdefault(r.site.label, []).insert(0, (
                f"run again in the backward pass (activation checkpointing) on its forward input, it gives another "
                f"output{units}"))
        else:
            same += 1
    tail = f" ({unmatched} recomputation(s) on an input the forward never gave the site, left out)" if unmatched else ""
    if bad:
        return _res(BACKWARD, target, FAIL, "; ".join(f"{label}: " + "; ".join(dict.fromkeys(w)) for label, w in
                                                      bad.items())
                    + ": the backward uses another mask than the forward (a recomputation drew a new one), so the "
                      "gradient flows through units the forward dropped; keep checkpoint(..., preserve_rng_state=True)"
                      " (the default) around dropout" + tail, recomputed=len(again), sites=list(bad))
    grads = sum(1 for g in rec.node_grads.values() if g is not None)
    if not again:
        return _res(BACKWARD, target, PASS, "one training forward + backward: no dropout site ran again in the "
                    f"backward (no recomputation); {grads} dropout node(s) pass no gradient to a unit the forward "
                    "dropped", recomputed=0, gradients_checked=grads)
    return _res(BACKWARD, target, PASS, f"one training forward + backward: {same} site call(s) recomputed in the "
                f"backward give the forward's output exactly (the same mask); {grads} dropout node(s) pass no "
                "gradient to a unit the forward dropped" + tail, recomputed=len(again), gradients_checked=grads)


# ------------------------------------------------------------------------------ (g) schedule in execution order


def schedule_order(model: nn.Module, sites: Sequence[Site], order: Mapping[int, int], target: str) -> CheckResult:
    """(g): DropPath / stochastic-depth rates per block in execution order: non-decreasing, on one line
    from 0 or from rate / L."""
    mods = dict(model.named_modules())
    members = [(s.path, float(s.configured)) for s in sites if s.is_module and s.module_kind is not None
               and s.module_kind.variant in _DROP_PATH and s.configured is not None]
    leaves = {p.rpartition(".")[2] for p, _ in members}
    members += [(p, 0.0) for p, m in mods.items() if type(m) is nn.Identity and p.rpartition(".")[2] in leaves]
    index = {p: k for k, p in enumerate(mods)}

    def when(path: str) -> Optional[Tuple[int, int]]:
        """Its first call, else (a site its block never calls: a depth slot all the same) its nearest called
        ancestor's, then definition order."""
        parts = path.split(".")
        for cut in range(len(parts), -1, -1):
            m = mods.get(".".join(parts[:cut]))
            if m is not None and id(m) in order:
                return order[id(m)], index[path]
        return None

    members = [(p, r, when(p)) for p, r in members if p in mods]
    members = sorted((m for m in members if m[2] is not None), key=lambda m: m[2])
    blocks: Dict[str, List[Tuple[str, float]]] = {}
    for p, r, _ in members:
        blocks.setdefault(p.rpartition(".")[0], []).append((p, r))
    steps = list(blocks)
    if len(steps) < 2:
        return _res(SCHEDULE_ORDER, target, PASS, f"{len(steps)} block(s) with a drop-path site: no schedule",
                    blocks=steps)
    for b, ms in blocks.items():
        if len({r for _, r in ms}) > 1:
            return _res(SCHEDULE_ORDER, target, FAIL, f"{shown(b)}: its drop-path sites have different rates ("
                        + ", ".join(f"{p} {r:.4g}" for p, r in ms) + "): one block, one depth", blocks=steps)
    rates = [ms[0][1] for ms in blocks.values()]
    n = len(rates)
    listed = ", ".join(f"{r:.4g}" for r in rates)
    tol = lambda v: mc.SCHEDULE_TOL * (1 + abs(v))  # noqa: E731
    details = {"blocks": steps, "rates": rates}
    for k in range(n - 1):
        if rates[k + 1] < rates[k] - tol(rates[k]):
            a, b = steps[k], steps[k + 1]
            stage = re.sub(r"\.\d+$", "", a) != re.sub(r"\.\d+$", "", b)
            why = (f"the schedule restarts at {b} (a new stage): each stage runs its own line, the depth cursor must "
                   f"run across all {n} blocks of the model" if stage else "rates decrease with depth")
            return _res(SCHEDULE_ORDER, target, FAIL, f"drop-path rates in execution order fall from {a} {rates[k]:.4g}"
                        f" to {b} {rates[k + 1]:.4g}: {why}; schedule {listed}", **details)
    step = (rates[-1] - rates[0]) / (n - 1)
    for k, r in enumerate(rates):
        if abs(r - (rates[0] + k * step)) > tol(r):
            return _res(SCHEDULE_ORDER, target, FAIL, f"drop-path rates in execution order are not linear in depth: "
                        f"{steps[k]} has {r:.4g}, the line from {rates[0]:.4g} to {rates[-1]:.4g} gives "
                        f"{rates[0] + k * step:.4g} there; schedule {listed}", **details)
    if abs(step) <= tol(0):
        return _res(SCHEDULE_ORDER, target, PASS, f"constant rate {rates[0]:.4g} over {n} blocks in execution "
                    "order", rule="constant", **details)
    m = rates[0] / step
    if abs(rates[0] - round(m) * step) > tol(rates[0]) or round(m) < 0:
        return _res(SCHEDULE_ORDER, target, FAIL, f"drop-path rates in execution order are linear but start at "
                    f"{rates[0]:.4g}, which neither rule gives (from 0: p_0 = 0; from rate / L: p_0 = step "
                    f"{step:.4g}); schedule {listed}", **details)
    rule = {0: f"from 0: rate x k / (L - 1) with rate {rates[-1]:.4g} (timm, torchvision), the line of rate x k / L "
               f"with rate {step * n:.4g} (torchvision EfficientNet)",
            1: f"from rate / L: rate x l / L with rate {rates[-1]:.4g} (the stochastic-depth paper; also the rule "
               "from 0 where the first block carries no site)"}.get(
        int(round(m)), f"from 0 with the first {int(round(m))} block(s) carrying no site")
    return _res(SCHEDULE_ORDER, target, PASS, f"{n} blocks in execution order, rates rising linearly {rule}; "
                f"schedule {listed}", rule=rule, **details)


# ------------------------------------------------------------------------------ the passes


def wiring_results(work: nn.Module, args: Tuple[Any, ...], kwargs: Dict[str, Any], sites: Sequence[Site],
                   seed: int, target: str) -> List[CheckResult]:
    """Every wiring check on the scan's working copy ``work`` (its drop-path rates and parameters'
    gradients as they were afterwards; the caller restores train flags and the RNG). The two training
    passes run with DropPath sites raised to PLACEMENT_P (placement needs dropped samples; a mask's
    drop count does not matter to the sharing rule). A pass that raises is one ERROR result for the
    checks it feeds; the others still run."""
    out: List[CheckResult] = []
    mods = dict(work.named_modules())
    dp = [s for s in sites if s.is_module and s.module_kind is not None and s.module_kind.variant in _DROP_PATH
          and s.phase("train") and s.path in mods and s.path]
    rec = _Wire(work, blocks={id(mods[s.path.rpartition(".")[0]]): [] for s in dp})
    saved = [(mods[s.path], s.module_kind.p_attr, getattr(mods[s.path], s.module_kind.p_attr)) for s in dp]
    try:
        try:
            for m, attr, _ in saved:
                setattr(m, attr, PLACEMENT_P)
            torch.manual_seed(seed + 101)
            for tag in ("t1", "t2"):
                rec.run(work, args, kwargs, tag, True)
        finally:
            for m, attr, v in saved:
                setattr(m, attr, v)
        torch.manual_seed(seed + 102)
        for tag in ("e1", "e2"):
            rec.run(work, args, kwargs, tag, False, "eval")
    except Exception as exc:  # noqa: BLE001
        return [mc.error_result(c, target, "model", exc, "in the wiring passes")
                for c in (SHARED, UNBATCHED, SCHEDULE_ORDER, LAYERDROP, PLACEMENT, BACKWARD)]
    out.append(shared_masks(rec.records, target))
    out.append(channel_rank(sites, rec.records, target))
    out.append(schedule_order(work, sites, rec.order, target))
    try:
        cands = layerdrop_candidates(work, rec.counts)
        if cands:
            light = _Wire(work, capture=False)
            light.counts = rec.counts
            for k in range(LAYERDROP_PASSES - 2):
                light.run(work, args, kwargs, f"t{k + 3}", True)
            for k in range(LAYERDROP_EVAL_PASSES - 2):
                light.run(work, args, kwargs, f"e{k + 3}", False, "eval")
        train = [c for t, c in rec.counts.items() if t.startswith("t")]
        evals = [c for t, c in rec.counts.items() if t.startswith("e")]
        out.append(layerdrop(work, cands, train, evals, target))
    except Exception as exc:  # noqa: BLE001
        out.append(mc.error_result(LAYERDROP, target, "model", exc, "in the LayerDrop passes"))
    out.append(placement(rec.placed, target) if dp else
               _res(PLACEMENT, target, PASS, "no drop-path site called in training", samples_checked=0))
    try:
        out.append(backward_masks(work, args, kwargs, seed + 104, target))
    except Exception as exc:  # noqa: BLE001 - the model cannot run backward here: (f) is not checked, not failed
        text = str(exc).splitlines()[0][:200] if str(exc) else ""
        out.append(_res(BACKWARD, target, INCONCLUSIVE, f"not checked: the model raised {type(exc).__name__}"
                        f"{': ' + text if text else ''} in a training forward + backward"))
    return out


__all__ = ["BACKWARD", "LAYERDROP", "PLACEMENT", "SCHEDULE_ORDER", "SHARED", "UNBATCHED", "backward_masks",
           "channel_rank", "layerdrop", "placement", "schedule_order", "shared_masks", "wiring_results"]
