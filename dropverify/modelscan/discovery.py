"""Discovery: every dropout-family site of a torch model, and what each received while the model ran.

Promises:

* :func:`module_sites` finds every dropout-family *module* in the tree: torch.nn ``Dropout``,
  ``Dropout1d/2d/3d``, ``AlphaDropout``, ``FeatureAlphaDropout`` (and subclasses), timm
  ``DropPath`` / ``DropBlock2d``, torchvision ``StochasticDepth`` / ``DropBlock2d`` / ``DropBlock3d``,
  classes registered with :func:`register`, and parameter-free classes whose name says
  DropPath / StochasticDepth / DropBlock / Dropout and that keep a drop probability (marked
  ``guessed``; their variant, and a subclass's, is confirmed from behaviour in situ:
  :mod:`.behaviour`), and ``nn.LSTM / GRU / RNN`` with ``dropout > 0`` (the dropout between
  stacked layers; with one layer it never drops). timm DropBlock's ``gamma_scale`` and options
  no contract covers are read from the module.
* :class:`Recorder` runs the model with forward pre/post hooks on every module (a stack of
  module paths) and a ``TorchFunctionMode`` that sees ``F.dropout`` and its family,
  ``torch.dropout`` and friends, ``F.scaled_dot_product_attention`` (``dropout_p``) and
  ``F.multi_head_attention_forward``. A functional call made inside a module site belongs to
  that site; any other becomes a *functional site* keyed by (calling module path, op, ordinal
  of the call within one forward of that module). Every call records the p it received, the
  training flag passed (and whether it was passed or defaulted), the calling module's
  ``.training``, the input shapes, dtype and device. A functional call made by a dropout module
  the model does not register (kept in a plain list, or built inside ``forward``) records that
  module and where it is held (``Site.outside``). A dropout call in training whose input is,
  unchanged (same tensor, same version), the output of an applied dropout of the same group
  records that call (``extra["after"]``): two dropouts in series.
* :func:`configured_rates` reads, before the model runs, the rate each module is configured
  with: attributes named like ``p``, ``dropout_p``, ``attn_drop``, ``drop_rate`` ... (floats,
  or dropout modules whose ``p`` / ``drop_prob`` is read).
"""
from __future__ import annotations

import copy
import inspect
import sys
import weakref
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from .kinds import P_ATTRS, ModuleKind, _number, classify, module_rate, register, unregister  # noqa: F401
from .sites import ROOT, Call, Site, shown  # noqa: F401 - the shared records, re-exported


def module_sites(model: nn.Module) -> Dict[int, Site]:
    """Every dropout-family module of ``model`` by ``id``, each with a pristine copy and its
    configured rate (read now, before the model runs)."""
    out: Dict[int, Site] = {}
    for path, module in model.named_modules():
        kind = classify(module)
        if kind is None or (kind.rnn and not (module_rate(module, "dropout") or 0.0) > 0):
            continue  # an RNN without dropout has no dropout site
        try:
            snap = copy.deepcopy(module)
        except Exception:  # noqa: BLE001 - an uncopyable module is verified as it is after the passes
            snap = None
        rate = module_rate(module, kind.p_attr)
        out[id(module)] = Site(path=path, kind=kind.name, op="module", module_kind=kind, snapshot=snap,
                               configured=rate, configured_from=f"{shown(path)}.{kind.p_attr}",
                               looked_for=(kind.p_attr,))
    return out


def rnn_extra(module: nn.Module) -> Dict[str, Any]:
    """What the in-situ replay of an RNN's inter-layer dropout needs: layers, layout, the width of a
    layer's output (hidden or projection size times directions)."""
    width = int(getattr(module, "proj_size", 0) or module.hidden_size) * (2 if module.bidirectional else 1)
    return {"num_layers": int(module.num_layers), "batch_first": bool(module.batch_first), "width": width}


# ------------------------------------------------------------------------------ configured rates

SDPA_ATTRS = ("dropout_p", "attn_drop", "attn_dropout", "attention_dropout", "attn_drop_rate", "attn_dropout_p",
              "attn_p", "dropout_prob", "attention_probs_dropout_prob", "dropout_rate", "dropout", "drop_rate",
              "drop", "p")
"""Attributes read, in this order, for the rate a module passes to scaled_dot_product_attention."""
MHA_ATTRS = ("dropout", "dropout_p", "attn_drop", "attn_dropout", "p")
DROPOUT_ATTRS = ("p", "dropout_p", "drop_prob", "drop_rate", "dropout_rate", "dropout_prob", "dropout", "drop",
                 "proj_drop", "resid_drop", "hidden_dropout", "rate", "attention_dropout", "attn_dropout", "attn_drop_rate",
                 "attention_probs_dropout_prob", "attn_pdrop")
"""Attributes read, in this order, for the rate a module passes to F.dropout and its family (the attention
names last: F.dropout on attention weights, as torchvision's shifted_window_attention and Hugging Face's eager
attention do, receives one of them, an alternative of the module's first rate attribute)."""


def _configured_value(v: Any) -> Optional[float]:
    """A float rate, or the rate of a dropout module (``p`` / ``drop_prob``)."""
    n = _number(v)
    if n is not None:
        return n
    if isinstance(v, nn.Module):
        for attr in ("p", "drop_prob"):
            n = module_rate(v, attr)
            if n is not None:
                return n
    return None


def configured_rates(model: nn.Module) -> Dict[str, Dict[str, Tuple[float, str]]]:
    """path -> {attribute: (rate, where)} for every module, read before the model runs."""
    names = dict.fromkeys(SDPA_ATTRS + MHA_ATTRS + DROPOUT_ATTRS)
    out: Dict[str, Dict[str, Tuple[float, str]]] = {}
    for path, module in model.named_modules():
        found: Dict[str, Tuple[float, str]] = {}
        for name in names:
            try:
                raw = getattr(module, name, None)
            except Exception:  # noqa: BLE001
                continue
            v = _configured_value(raw)
            if v is not None:
                where = f"{shown(path)}.{name}" + (".p" if isinstance(raw, nn.Module) and _number(raw) is None
                                                   and module_rate(raw, "p") is not None else
                                                   ".drop_prob" if isinstance(raw, nn.Module) else "")
                found[name] = (v, where)
        if found:
            out[path] = found
    return out


def lookup_configured(site: Site, rates: Mapping[str, Mapping[str, Tuple[float, str]]]) -> None:
    """Fill ``site.configured`` for a functional site: the first attribute of the op's list
    found on the calling module, else on its parent (the module's other rate attributes of
    the list go to ``site.alternatives``)."""
    attrs = SDPA_ATTRS if site.op == "scaled_dot_product_attention" else \
        MHA_ATTRS if site.op == "multi_head_attention_forward" else DROPOUT_ATTRS
    site.looked_for = attrs
    candidates = [site.path]
    if site.path:
        candidates.append(site.path.rpartition(".")[0])
    for path in candidates:
        found = rates.get(path, {})
        names = [n for n in attrs if n in found]
        if names:
            site.configured, site.configured_from = found[names[0]]
            site.alternatives = tuple(found[n] for n in names[1:])
            return


# ------------------------------------------------------------------------------ functional ops


@dataclass(frozen=True)
class FunctionalOp:
    """A functional op the recorder intercepts: its argument names (positional order), the
    defaults of those that have one, the argument holding p and the training flag."""

    name: str                      # "dropout", "scaled_dot_product_attention"
    shown: str                     # "F.dropout"
    variant: Optional[str]         # None: from the input rank (feature dropout)
    names: Tuple[str, ...]
    defaults: Mapping[str, Any]
    p_arg: str
    flag_arg: Optional[str]


def _op_table() -> Dict[Any, FunctionalOp]:
    table: Dict[Any, FunctionalOp] = {}

    def python(fn: Any, shown_name: str, variant: Optional[str], p_arg: str = "p",
               flag_arg: Optional[str] = "training") -> None:
        sig = inspect.signature(fn)
        names = tuple(sig.parameters)
        defaults = {k: v.default for k, v in sig.parameters.items() if v.default is not inspect.Parameter.empty}
        table[fn] = FunctionalOp(fn.__name__, shown_name, variant, names, defaults, p_arg, flag_arg)

    python(F.dropout, "F.dropout", "dropout")
    python(F.dropout1d, "F.dropout1d", "spatial_dropout_1d")
    python(F.dropout2d, "F.dropout2d", "spatial_dropout_2d")
    python(F.dropout3d, "F.dropout3d", "spatial_dropout_3d")
    python(F.alpha_dropout, "F.alpha_dropout", "alpha_dropout")
    python(F.feature_alpha_dropout, "F.feature_alpha_dropout", "feature_alpha_dropout")
    python(F.multi_head_attention_forward, "F.multi_head_attention_forward", "attention_dropout", "dropout_p")
    for name, variant in (("dropout", "dropout"), ("alpha_dropout", "alpha_dropout"), ("feature_dropout", None),
                          ("feature_alpha_dropout", "feature_alpha_dropout")):
        for suffix in ("", "_"):
            fn = getattr(torch, name + suffix, None)
            if fn is not None:
                table[fn] = FunctionalOp(name + suffix, f"torch.{name}{suffix}", variant, ("input", "p", "train"),
                                         {}, "p", "train")
    table[F.scaled_dot_product_attention] = FunctionalOp(
        "scaled_dot_product_attention", "F.scaled_dot_product_attention", "attention_dropout",
        ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa"),
        {"attn_mask": None, "dropout_p": 0.0, "is_causal": False, "scale": None, "enable_gqa": False},
        "dropout_p", None)
    return table


OPS = _op_table()


def bind(op: FunctionalOp, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Tuple[Dict[str, Any], set]:
    """The op's arguments by name (defaults filled in) and the names that were passed."""
    values = dict(zip(op.names, args))
    values.update(kwargs)
    given = set(values)
    for k, v in op.defaults.items():
        values.setdefault(k, v)
    return values, given


# ------------------------------------------------------------------------------ the recorder


@dataclass
class _Frame:
    path: str
    module: nn.Module
    counters: Dict[str, int] = field(default_factory=dict)
    site: Optional[Site] = None
    call: Optional[Call] = None
    saved: Optional[torch.Tensor] = None


def _first_tensor(args: Sequence[Any]) -> Optional[torch.Tensor]:
    return next((a for a in args if isinstance(a, torch.Tensor)), None)


def _dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).replace("torch.", "")


class Recorder(TorchFunctionMode):
    """Records every dropout-family call of ``model`` while active (``with recorder.phase(...)``).

    Use::

        rec = Recorder(model, module_sites(model))
        with rec.recording("train"):
            model(x)
        rec.sites  # module sites first, then functional sites in the order first seen
    """

    def __init__(self, model: nn.Module, modules: Dict[int, Site]) -> None:
        super().__init__()
        self.model = model
        self.modules = modules
        self.functional: Dict[Tuple[str, str, int], Site] = {}
        self.stack: List[_Frame] = []
        self.current = "train"
        self.seq = 0
        self._handles: List[Any] = []
        self._paths = {id(m): p for p, m in model.named_modules()}
        self._outputs: Dict[int, Tuple[Any, int, str, float, str]] = {}  # id -> (weakref, version, label, p, group)

    @property
    def sites(self) -> List[Site]:
        """Every site in the order of its first recorded call (never-called module sites last)."""
        every = list(self.modules.values()) + list(self.functional.values())
        return sorted(every, key=lambda s: min((c.seq for c in s.calls), default=1 << 62))

    # -- hooks ---------------------------------------------------------------------------
    def _pre(self, module: nn.Module, args: Tuple[Any, ...]) -> None:
        frame = _Frame(self._paths.get(id(module), "?"), module)
        site = self.modules.get(id(module))
        if site is not None:
            x = _first_tensor(args)
            kind = site.module_kind
            p = module_rate(module, kind.p_attr) if kind else None
            frame.site = site
            stacked = not kind.rnn or int(getattr(module, "num_layers", 1)) > 1  # torch drops between layers only
            frame.call = Call(self.current, float(p or 0.0), bool(module.training and (p or 0.0) > 0 and stacked),
                              None, False, bool(module.training), (tuple(x.shape),) if x is not None else (),
                              _dtype_name(x) if x is not None else "?", str(x.device) if x is not None else "?")
            if kind.rnn:
                frame.call.extra.update(rnn_extra(module))
            elif x is not None and frame.call.applied:
                self._consume(x, frame.call, site.label, _group(site))
            self.seq += 1
            frame.call.seq = self.seq
            site.calls.append(frame.call)
            if self.current == "eval" and x is not None and not kind.rnn:
                frame.saved = x.detach().clone()
        self.stack.append(frame)

    def _post(self, module: nn.Module, args: Tuple[Any, ...], output: Any) -> None:
        if not self.stack:
            return
        frame = self.stack.pop()
        if frame.saved is not None and isinstance(output, torch.Tensor) and frame.site is not None:
            frame.call.eval_off = _eval_off(frame.site, frame.saved, output, frame.call.p)
        if frame.site is not None and not frame.site.module_kind.rnn and frame.call.applied:
            self._produce(output, frame.site.label, frame.call.p, _group(frame.site))

    # -- dropouts in series: the output of one applied dropout fed unchanged to another of its kind ------
    def _produce(self, out: Any, label: str, p: float, group: str) -> None:
        if self.current == "train" and isinstance(out, torch.Tensor):
            self._outputs[id(out)] = (weakref.ref(out), out._version, label, p, group)

    def _consume(self, x: torch.Tensor, call: "Call", label: str, group: str) -> None:
        """Mark ``call`` when ``x`` is, unchanged (same object, no in-place op since), the output of an
        applied dropout call of the same kind (group) in this training pass."""
        if self.current != "train":
            return
        prev = self._outputs.get(id(x))
        if prev is not None and prev[0]() is x and prev[1] == x._version and prev[4] == group:
            call.extra["after"] = (prev[2], prev[3])

    def __enter__(self) -> "Recorder":
        for module in self.model.modules():
            self._handles.append(module.register_forward_pre_hook(self._pre))
            self._handles.append(module.register_forward_hook(self._post, always_call=True))
        return super().__enter__()

    def __exit__(self, *exc: Any) -> None:
        try:
            super().__exit__(*exc)
        finally:
            for h in self._handles:
                h.remove()
            self._handles.clear()
            self.stack.clear()

    # -- the functional ops ----------------------------------------------------------------
    def __torch_function__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        op = OPS.get(func)
        call = self._record(op, args, kwargs) if op is not None else None
        out = func(*args, **kwargs)
        if call is not None:  # a functional site's applied call: its output may feed another dropout
            self._produce(out, call[0], call[1].p, call[2])
        return out

    def _record(self, op: FunctionalOp, args: Sequence[Any],
                kwargs: Mapping[str, Any]) -> Optional[Tuple[str, "Call", str]]:
        values, given = bind(op, args, kwargs)
        p = float(values.get(op.p_arg, 0.0) or 0.0)
        flag = None if op.flag_arg is None else bool(values.get(op.flag_arg, True))
        applied = p > 0 and (flag is None or flag)
        named = [values[n] for n in op.names if isinstance(values.get(n), torch.Tensor)]  # signature order
        tensors = named + [v for k, v in values.items() if k not in op.names and isinstance(v, torch.Tensor)]
        frame = self.stack[-1] if self.stack else None
        if frame is not None and frame.site is not None:  # inside a module site: what it really passed
            call = frame.call
            call.p, call.flag, call.flag_given, call.applied = p, flag, op.flag_arg in given, applied
            call.extra["via"] = op.shown
            return None
        path = frame.path if frame is not None else ""
        module = frame.module if frame is not None else self.model
        ordinal = 0
        if frame is not None:
            ordinal = frame.counters.get(op.name, 0)
            frame.counters[op.name] = ordinal + 1
        key = (path, op.name, ordinal)
        site = self.functional.get(key)
        if site is None:
            site = Site(path=path, kind=op.shown, op=op.name, ordinal=ordinal, fop=op)
            self.functional[key] = site
        extra: Dict[str, Any] = {}
        outside = self._unregistered_caller()
        if outside is not None:  # an nn.Dropout (or kin) the model does not register made this call
            extra["module"] = f"{classify(outside).name}(p={p:g})"
            extra["module_id"] = id(outside)
            site.outside = self._holder(outside)
        if op.name == "scaled_dot_product_attention":
            extra = {"is_causal": bool(values.get("is_causal")), "attn_mask": values.get("attn_mask") is not None,
                     "scale": values.get("scale"), "enable_gqa": bool(values.get("enable_gqa"))}
        elif op.name == "multi_head_attention_forward":
            extra = {"num_heads": int(values.get("num_heads", 1))}
        first = tensors[0] if tensors else None
        self.seq += 1
        call = Call(self.current, p, applied, flag, op.flag_arg in given, bool(module.training),
                    tuple(tuple(t.shape) for t in tensors[:3]), _dtype_name(first) if first is not None else "?",
                    str(first.device) if first is not None else "?", extra, seq=self.seq)
        site.calls.append(call)
        if not applied or op.name in ("scaled_dot_product_attention", "multi_head_attention_forward"):
            return None  # attention dropout drops weights, not its input: no series
        if first is not None:
            self._consume(first, call, site.label, _group(site))
        return site.label, call, _group(site)

    def _unregistered_caller(self) -> Optional[nn.Module]:
        """The dropout-family module whose forward made the current functional call when the model
        does not register it (the Python frames up to the nearest registered module)."""
        frame = sys._getframe(2)
        for _ in range(16):
            if frame is None:
                return None
            obj = frame.f_locals.get("self")
            if isinstance(obj, nn.Module):
                if id(obj) in self._paths:
                    return None
                if classify(obj) is not None:
                    return obj
            frame = frame.f_back
        return None

    def _holder(self, obj: nn.Module) -> str:
        """Where an unregistered module lives: ``list (model).drops`` (a plain container of a
        registered module), else ``forward`` (not held: built inside a forward)."""
        for path, module in self.model.named_modules():
            for name, value in vars(module).items():
                if name.startswith("_"):
                    continue
                items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) \
                    else ()
                if any(item is obj for item in items):
                    return f"{type(value).__name__} {shown(path)}.{name}"
        return "forward"

    def recording(self, phase: str) -> "_Phase":
        return _Phase(self, phase)


class _Phase:
    def __init__(self, rec: Recorder, phase: str) -> None:
        self.rec, self.phase = rec, phase

    def __enter__(self) -> Recorder:
        self.rec.current = self.phase
        return self.rec.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self.rec.__exit__(*exc)


def _group(site: Site) -> str:
    """Dropouts of one group compose into one of the same kind (two element-wise dropouts, two channel
    dropouts): in series they are one dropout at a higher rate. Different groups (Dropout then DropPath,
    as timm's blocks do) compose into something else on purpose."""
    kind = site.module_kind
    if kind is not None:
        return kind.variant or kind.name
    return (site.fop.variant or site.fop.name) if site.fop is not None else site.kind


def _eval_off(site: Site, x: torch.Tensor, y: torch.Tensor, p: float) -> Tuple[int, int]:
    """Elements of a module site's eval output off its contract's eval output (the identity
    for every torch, timm and torchvision layer; ``x (1 - p)`` under ``scaling='eval_scale'``)."""
    if y.shape != x.shape:
        return (int(y.numel()), int(y.numel()))
    kind = site.module_kind
    scale = 1.0
    if kind is not None:
        try:
            params = kind.params(site.snapshot or nn.Module(), x.dim())
        except Exception:  # noqa: BLE001
            params = {}
        if params.get("scaling") == "eval_scale":
            scale = 1.0 - p
    if scale == 1.0:
        off = ~((y == x) | (torch.isnan(y) & torch.isnan(x)))
    else:
        expected = x.double() * scale
        tol = 4 * torch.finfo(y.dtype).eps * expected.abs()
        off = (y.double() - expected).abs() > tol
    return (int(off.sum()), int(off.numel()))


__all__ = ["Call", "FunctionalOp", "ModuleKind", "OPS", "ROOT", "Recorder", "Site", "classify",
           "configured_rates", "lookup_configured", "module_sites", "register", "shown", "unregister"]
