"""The recorder of the scan's wiring checks (:mod:`.wiring`): the scan's :class:`~.discovery.Recorder`,
also keeping each applied call's input and output (and, on a backward pass, the gradient a
``x * mask`` dropout node passes to x), every module's first-call order and call counts per pass,
and the input / output of DropPath parents with the samples their sites dropped; and the binary
mask a recorded call shows over its units.
"""
from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from . import model_checks as mc
from .discovery import Recorder, Site, _first_tensor, bind, module_sites

_DROP_PATH = ("drop_path", "stochastic_depth")


def _lead(site: Site, rank: int) -> Optional[int]:
    """How many leading axes index a site's draws (units) at input ``rank``; None: not readable as a
    binary mask (alpha dropout, DropBlock, attention)."""
    if site.is_module:
        kind = site.module_kind
        if kind is None or kind.rnn:
            return None
        variant = kind.variant or (kind.variant_for(rank) if kind.variant_for else None)
    else:
        variant = site.fop.variant if site.fop is not None else None
    if variant == "dropout":
        return rank
    if variant in _DROP_PATH:
        return 1
    m = re.match(r"spatial_dropout_(\d)d", variant or "")
    if m:
        return 2 if rank >= int(m.group(1)) + 2 or (int(m.group(1)) == 2 and rank == 3) else 1
    return None


MAX_UNITS = 4096
"""A mask is read on at most this many of its units (an even stride through them, fixed by the unit shape alone,
so independent of the masks: the hypergeometric law holds on the subset)."""
_CHANNEL = re.compile(r"dropout([123])d", re.I)


@dataclass
class Rec:
    """One applied call: its mask over its units (:func:`_mask`), hashes of its input and output, and
    (channel dropout's first call) the tensors; (``grads``) where the forward dropped."""

    site: Site
    tag: str
    mask: Optional[Tuple[Tuple[int, ...], np.ndarray, np.ndarray]]
    x_key: str
    y_key: str
    pair: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
    dropped: Optional[torch.Tensor] = None


def _key(t: torch.Tensor) -> str:
    """An exact fingerprint of a tensor (shape, dtype, bytes)."""
    raw = t.detach().contiguous().flatten().view(torch.uint8).cpu().numpy().tobytes()
    return f"{tuple(t.shape)}{t.dtype}" + hashlib.blake2b(raw, digest_size=16).hexdigest()


class _Wire(Recorder):
    """The scan's recorder, also keeping (when ``capture``) each applied call's input and output,
    every module's first-call order and call counts per pass, and (``blocks``: module ids) the
    input / output of DropPath parents with the samples their sites dropped."""

    def __init__(self, model: nn.Module, capture: bool = True, blocks: Optional[Dict[int, List[str]]] = None) -> None:
        super().__init__(model, module_sites(model))
        self.capture = capture
        self.blocks = blocks or {}
        self.tick = 0
        self.tag = ""
        self.order: Dict[int, int] = {}
        self.counts: Dict[str, Counter] = {}
        self.records: List[Rec] = []
        self._paired: set = set()
        self.open: List[Dict[str, Any]] = []
        self.placed: List[Dict[str, Any]] = []
        self._pending: Optional[Tuple[Site, torch.Tensor]] = None
        self.grads = False
        self.node_grads: Dict[int, Optional[torch.Tensor]] = {}

    def _pre(self, module: nn.Module, args: Tuple[Any, ...]) -> None:
        self.tick += 1
        self.order.setdefault(id(module), self.tick)
        self.counts.setdefault(self.tag, Counter())[self._paths.get(id(module), "?")] += 1
        x = _first_tensor(args)
        if id(module) in self.blocks and x is not None and self.current == "train":
            self.open.append({"path": self._paths[id(module)], "x": x.detach().clone(), "dropped": {}})
        super()._pre(module, args)
        frame = self.stack[-1]
        if frame.site is not None and x is not None and (self.capture or self.blocks):
            frame.wire_in = x.detach().clone()  # type: ignore[attr-defined]

    def _post(self, module: nn.Module, args: Tuple[Any, ...], output: Any) -> None:
        frame = self.stack[-1] if self.stack else None
        x = getattr(frame, "wire_in", None)
        if frame is not None and frame.site is not None and x is not None and isinstance(output, torch.Tensor):
            if frame.call.applied and self.capture:
                self._keep(frame.site, x, output)
            parent = frame.site.path.rpartition(".")[0]
            block = next((b for b in reversed(self.open) if b["path"] == parent), None)
            if block is not None and output.shape == x.shape and output.dim() >= 1:
                hit = (output.detach().flatten(1) == 0).all(1) & (x.flatten(1) != 0).any(1)
                block["zero"] = block.get("zero", 0) + int((x.flatten(1) == 0).all(1).sum())
                prev = block["dropped"].get(frame.site.label)
                block["dropped"][frame.site.label] = hit if prev is None else prev & hit
        super()._post(module, args, output)
        if id(module) in self.blocks and self.open and self.open[-1]["path"] == self._paths.get(id(module)):
            block = self.open.pop()
            y = output if isinstance(output, torch.Tensor) else next(iter(mc.tensors_of(output)), None)
            if block["dropped"] and y is not None:
                self.placed.append(_placed(block, y.detach()))

    def _keep(self, site: Site, x: torch.Tensor, y: torch.Tensor) -> None:
        """Keep one applied call; with ``grads``, also the gradient its dropout node passes to its input."""
        k = len(self.records)
        yd = y.detach()
        rec = Rec(site, self.tag, _mask(site, x, yd), _key(x), _key(yd))
        if _CHANNEL.search(site.kind if site.is_module else site.op) and site.label not in self._paired:
            self._paired.add(site.label)
            rec.pair = (x, yd.clone())
        self.records.append(rec)
        node = y.grad_fn
        if not self.grads or node is None or node.name() not in ("MulBackward0", "NativeDropoutBackward0"):
            return  # y = x * (a saved mask): the gradient to x is zero wherever the saved mask is
        slots = [i for i, (f, _) in enumerate(node.next_functions) if f is not None]
        if len(slots) == 1 and yd.shape == x.shape:
            rec.dropped = (yd == 0) & (x != 0)
            node.register_hook(lambda gi, go, k=k, i=slots[0]: self.node_grads.__setitem__(
                k, gi[i].detach().clone() if len(gi) > i and gi[i] is not None else None))

    def _record(self, op: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        out = super()._record(op, args, kwargs)
        if out is not None and self.capture:
            values, _ = bind(op, args, kwargs)
            x = next((v for v in values.values() if isinstance(v, torch.Tensor)), None)
            site = next(s for s in self.functional.values() if s.label == out[0] and s.op == op.name)
            if x is not None:
                self._pending = (site, x.detach().clone())
        return out

    def __torch_function__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: Any = None) -> Any:
        self._pending = None
        out = super().__torch_function__(func, types, args, kwargs)
        if self._pending is not None and isinstance(out, torch.Tensor):
            self._keep(self._pending[0], self._pending[1], out)
        self._pending = None
        return out

    def run(self, work: nn.Module, args: Tuple[Any, ...], kwargs: Dict[str, Any], tag: str, training: bool,
            phase: str = "train") -> Any:
        from .api import _clone
        work.train(training)
        self.tag = tag
        a, k = _clone(args, kwargs)
        with torch.no_grad(), self.recording(phase):
            return work(*a, **k)


def _mask(site: Site, x: torch.Tensor, y: torch.Tensor) -> Optional[Tuple[Tuple[int, ...], np.ndarray, np.ndarray]]:
    """(unit shape, dropped, observable) of one call, flattened; None where no binary mask is readable.
    Units: the site's draws (elements, channels, samples); an axis along which every unit's drop is
    the same (a mask shared over time, as a LockedDropout draws) is merged into the unit, so units are
    independent under the site's own law."""
    if y.shape != x.shape or not x.is_floating_point() or x.dim() == 0:
        return None
    lead = _lead(site, x.dim())
    if lead is None:
        return None
    shape = tuple(x.shape[:lead])
    obs = ((x != 0) & torch.isfinite(x)).reshape(shape + (-1,)).any(-1)
    dropped = (y == 0).reshape(shape + (-1,)).all(-1) & obs
    keep = obs & ~dropped
    for k in reversed(range(len(shape))):
        if dropped.shape[k] < 2 or (obs.sum(k) < 2).all():
            continue
        if not bool((dropped.any(k) & keep.any(k)).any()):  # never mixed along axis k: one draw shared along it
            dropped, obs = dropped.any(k), obs.any(k)
            keep = obs & ~dropped
    d, o = dropped.flatten().cpu().numpy(), obs.flatten().cpu().numpy()
    if d.size > MAX_UNITS:
        pick = np.unique(np.linspace(0, d.size - 1, MAX_UNITS).round().astype(np.int64))
        d, o = d[pick], o[pick]
    return tuple(dropped.shape), d, o


def _placed(block: Dict[str, Any], y: torch.Tensor) -> Dict[str, Any]:
    """A DropPath parent's call, summarised: the samples every call of its sites dropped, how many of them
    leave the output equal to the input, the first that does not (and whether its output is all zero)."""
    x = block.pop("x")
    hit = None
    for v in block["dropped"].values():
        hit = v if hit is None else hit & v
    block.update(checked=0, wrong=0, first=None, zero_out=False)
    if hit is None or y.shape != x.shape or not bool(hit.any()):
        return block
    idx = torch.nonzero(hit).flatten()
    xs, ys = x[idx].flatten(1), y[idx].flatten(1)
    equal = ((xs == ys) | (torch.isnan(xs) & torch.isnan(ys))).all(1)
    block.update(checked=int(idx.numel()), wrong=int((~equal).sum()))
    if not bool(equal.all()):
        k = int(idx[~equal][0])
        block.update(first=k, zero_out=bool((y[k] == 0).all()))
    return block
