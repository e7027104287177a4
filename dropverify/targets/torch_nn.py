"""Adapter for PyTorch: ``torch.nn`` dropout layers, ``F.dropout``, attention dropout in
``nn.MultiheadAttention`` and ``F.scaled_dot_product_attention``, and any user ``nn.Module``.

Pure translation: canonical parameters -> the layer's own, numpy <-> tensors (dtype kept),
seeding with ``torch.manual_seed``, ``train()``/``eval()``, memory layouts, and gradients from
autograd. Deviations of the library are exposed, never corrected; ``conventions`` says what
PyTorch documents. Importing this module imports torch (an ImportError if it is missing).
"""
from __future__ import annotations

import copy
import math
from typing import Any, Callable, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..contracts import Inputs
from ._base import InputWatch, TargetSpec, layout_fits, same_values

CallHook = Callable[[nn.Module, Tuple[torch.Tensor, ...]], torch.Tensor]
FLOAT_DTYPES = (np.float16, np.float32, np.float64)  # all three run every layer below on CPU (torch 2.13)
SWEEP_DTYPES = ("float16", "bfloat16", "float32", "float64")  # what a sweep may ask of a torch layer
_MEMORY_FORMATS = {4: torch.channels_last, 5: torch.channels_last_3d}


def layouts_for(rank: int) -> Tuple[str, ...]:
    """Layouts offered for rank-``rank`` probes: contiguous, transposed, channels_last (4-D/5-D)."""
    return ("contiguous", "transposed") + (("channels_last",) if rank in _MEMORY_FORMATS else ())


def to_tensor(a: np.ndarray, layout: str = "contiguous", device: str = "cpu",
              requires_grad: bool = False) -> torch.Tensor:
    """A fresh tensor (never sharing the probe's memory) with ``a``'s values and dtype.

    ``transposed``: a permuted view of memory laid out in reversed axis order (non-contiguous;
    a 1-D input becomes a stride-2 view); ``channels_last``: torch's channels-last memory
    format (4-D) or channels-last-3d (5-D). The logical values are the same for every layout.
    """
    a = np.asarray(a)
    if a.dtype.name == "bfloat16":  # numpy has no bfloat16: via float32 (exact both ways)
        t = to_tensor(a.astype(np.float32), layout, device).to(torch.bfloat16)
        return t.requires_grad_(True) if requires_grad else t
    if layout == "contiguous":
        t = torch.from_numpy(np.array(a, copy=True, order="C")).to(device)
    elif layout == "transposed" and a.ndim >= 2:
        perm = tuple(reversed(range(a.ndim)))
        t = torch.from_numpy(np.array(a.transpose(perm), copy=True, order="C")).to(device).permute(perm)
    elif layout == "transposed":
        src = torch.from_numpy(np.array(a, copy=True)).to(device).reshape(-1)
        big = torch.zeros(2 * src.numel(), dtype=src.dtype, device=device)
        t = big[::2]
        t.copy_(src)
        t = t.reshape(a.shape)
    elif layout == "channels_last":
        if a.ndim not in _MEMORY_FORMATS:
            raise ValueError(f"layout='channels_last' needs a 4-D or 5-D input, got shape {a.shape}")
        t = torch.from_numpy(np.array(a, copy=True)).to(device).contiguous(memory_format=_MEMORY_FORMATS[a.ndim])
    else:
        raise ValueError(f"layout={layout!r}, but should be one of contiguous, transposed, channels_last")
    return t.requires_grad_(True) if requires_grad else t


def _fit(layout: str, a: Any) -> str:
    """``layout`` where it exists at ``a``'s rank, else contiguous (channels_last on a 2-D array)."""
    return layout if layout_fits(layout, np.ndim(a)) else "contiguous"


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """The tensor's values as numpy, in its own dtype (bfloat16 as ml_dtypes.bfloat16)."""
    t = t.detach().to("cpu")
    if t.dtype == torch.bfloat16:
        import ml_dtypes
        return t.float().numpy().astype(ml_dtypes.bfloat16)
    return t.numpy()


def _module_call(module: nn.Module, tensors: Tuple[torch.Tensor, ...]) -> torch.Tensor:
    return module(*tensors)


class TorchTarget:
    """One configured PyTorch module behind the :class:`~dropverify.targets.Target` protocol.

    Parameters
    ----------
    module : the layer; moved to ``device``. Where it has floating parameters or buffers of
        another dtype than an input, a copy cast to the input's dtype is called (the original
        is never cast down, so float64 calls keep full-precision weights).
    call : ``call(module, tensors) -> tensor``, input plumbing for layers that need it
        (default: ``module(*tensors)``).
    device : "cpu" or "cuda".
    dtypes, layouts, has_gradients : what the checks may ask for (see the protocol).
    """

    def __init__(self, module: nn.Module, call: Optional[CallHook] = None, device: str = "cpu",
                 dtypes: Sequence[Any] = FLOAT_DTYPES, layouts: Sequence[str] = ("contiguous", "transposed"),
                 has_gradients: bool = True) -> None:
        self.module = module.to(device)
        self.call = call or _module_call
        self.device = device
        self.dtypes = tuple(dtypes)
        self.layouts = tuple(layouts)
        self.has_gradients = has_gradients
        # what a sweep may ask for: bfloat16 too where the layer takes float16 (torch runs both on cpu)
        self.sweep_dtypes = tuple(SWEEP_DTYPES if np.float16 in self.dtypes else
                                  [np.dtype(d).name for d in self.dtypes])
        self._casts: dict = {}

    def seed(self, seed: int) -> None:
        """``torch.manual_seed(seed)``; on the CPU only the CPU generator it seeds (the same state,
        without the ~0.2 ms torch spends queueing lazy seeds for every other device type)."""
        if self.device.startswith("cuda"):
            torch.manual_seed(seed)
            torch.cuda.manual_seed_all(seed)
        else:
            torch.default_generator.manual_seed(seed)

    def _prepare(self, tensors: Tuple[torch.Tensor, ...], training: bool) -> nn.Module:
        """The module to call, in ``training`` mode: the original, or (when its floating
        parameters/buffers have another dtype than the input) a cached copy cast from it."""
        module = self.module
        dt = tensors[0].dtype if tensors else None
        state = [t for t in (*module.parameters(), *module.buffers()) if t.is_floating_point()]
        if dt is not None and dt.is_floating_point and any(t.dtype != dt for t in state):
            if dt not in self._casts:
                self._casts[dt] = copy.deepcopy(module).to(dtype=dt)
            module = self._casts[dt]
        return module.train(training)

    def forward(self, inputs: Inputs, *, training: bool = True, layout: str = "contiguous") -> np.ndarray:
        tensors = tuple(to_tensor(a, layout, self.device) for a in inputs)
        module = self._prepare(tensors, training)
        with torch.no_grad():
            y = self.call(module, tensors)
        return to_numpy(y)

    def forward_watched(self, inputs: Inputs, *, training: bool = True,
                        layout: str = "contiguous") -> Tuple[np.ndarray, InputWatch]:
        """:meth:`forward`, keeping the tensors it passed: whether the call changed them, and
        whether the output holds the (modified) input's values (what ``inplace=True`` promises)."""
        tensors = tuple(to_tensor(a, layout, self.device) for a in inputs)
        before = tuple(to_numpy(t).copy() for t in tensors)
        module = self._prepare(tensors, training)
        with torch.no_grad():
            y = self.call(module, tensors)
        out = to_numpy(y)
        changed = tuple(not same_values(b, to_numpy(t)) for b, t in zip(before, tensors))
        holds = bool(tensors) and same_values(out, to_numpy(tensors[0]))
        return out, InputWatch(changed, holds, bool(getattr(self.module, "inplace", False)))

    def forward_backward(self, inputs: Inputs, grad_out: np.ndarray, *,
                         layout: str = "contiguous") -> Tuple[np.ndarray, Tuple[np.ndarray, ...]]:
        """One training call; autograd gradients of ``sum(grad_out * y)`` w.r.t. each input
        (zeros where autograd reports no dependence, so a missing gradient shows as wrong).
        ``layout``: the inputs (leaf tensors, non-contiguous views where the layout makes them)
        and ``grad_out`` are handed to the layer and to autograd in that memory layout (an
        array whose rank the layout does not exist at stays contiguous)."""
        tensors = tuple(to_tensor(a, _fit(layout, a), self.device, requires_grad=True) for a in inputs)
        module = self._prepare(tensors, True)
        with torch.enable_grad():
            y = self.call(module, tensors)
            if y.requires_grad:
                g = np.asarray(grad_out)
                g = to_tensor(g, _fit(layout, g), y.device).to(y.dtype)  # bfloat16 numpy via float32 there
                grads = torch.autograd.grad(y, tensors, grad_outputs=g, allow_unused=True)
            else:
                grads = (None,) * len(tensors)
        out = tuple(to_numpy(gr) if gr is not None else np.zeros(t.shape, to_numpy(t).dtype)
                    for gr, t in zip(grads, tensors))
        return to_numpy(y), out


_TARGET_KW = ("call", "dtypes", "layouts", "has_gradients")


def torch_spec(name: str, variant: str, factory: Callable[..., nn.Module],
               params: Optional[Mapping[str, Any]] = None, device: str = "cpu", **kw: Any) -> TargetSpec:
    """A spec for any ``nn.Module`` built by ``factory(**canonical_params)``.

    Parameters
    ----------
    name, variant : target name and canonical variant (its contract is the one checked).
    factory : called with every canonical parameter of the variant as a keyword argument
        (e.g. ``p=0.5`` and, for spatial dropout, ``channels_last=False``); it may raise for
        values the implementation rejects.
    params : canonical parameter values to verify at (contract defaults otherwise).
    device : "cpu" or "cuda".
    **kw : ``call``, ``dtypes``, ``layouts``, ``has_gradients`` go to :class:`TorchTarget`
        (layouts default to :func:`layouts_for` the probe's rank); the rest (``shape``,
        ``contract``, ``conventions``, ``description``) to :class:`TargetSpec`.
    """
    target_kw = {k: kw.pop(k) for k in _TARGET_KW if k in kw}
    from ..variants import get_contract
    contract = kw.get("contract") or get_contract(variant)
    rank = len(kw.get("shape") or contract.default_shape)
    target_kw.setdefault("layouts", layouts_for(rank))

    def build(prm: Mapping[str, Any]) -> TorchTarget:
        return TorchTarget(factory(**dict(prm)), device=device, **target_kw)

    return TargetSpec(name=name, variant=variant, build=build, params=dict(params or {}), **kw)


# ------------------------------------------------------------------------------ plumbing

class Functional(nn.Module):
    """Wraps a functional op ``fn(x, p=..., training=...)`` so train()/eval() drive ``training``."""

    def __init__(self, fn: Callable[..., torch.Tensor], p: float) -> None:
        super().__init__()
        self.fn, self.p = fn, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x, p=self.p, training=self.training)


def unbatched_call(module: nn.Module, tensors: Tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Feed each sample ``x[n]`` unbatched and stack the outputs (a loop over the batch only;
    an empty batch stacks no outputs)."""
    (x,) = tensors
    if x.shape[0] == 0:
        return x.new_empty(x.shape)
    return torch.stack([module(x[n]) for n in range(x.shape[0])])


def _no_option(layer: str, option: str, value: Any, default: Any) -> None:
    if value != default:
        raise ValueError(f"{option}={value!r}, but torch {layer} has no such option (only {option}={default!r})")


def _spatial(cls: type) -> Callable[..., nn.Module]:
    def factory(p: float, channels_last: bool = False) -> nn.Module:
        _no_option(cls.__name__, "channels_last", channels_last, False)
        return cls(p)
    return factory


class SDPA(nn.Module):
    """``F.scaled_dot_product_attention(q, k, v, dropout_p=p, scale=1)`` under one backend.

    The functional API is stateless: ``dropout_p`` is passed whatever ``self.training`` says,
    exactly as a caller who forwards the configured rate would (pytorch 124464).
    """

    def __init__(self, p: float, backend: str = "MATH") -> None:
        super().__init__()
        self.p, self.backend = p, backend

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        from torch.nn.attention import SDPBackend, sdpa_kernel
        with sdpa_kernel(getattr(SDPBackend, self.backend)):
            return F.scaled_dot_product_attention(q, k, v, dropout_p=self.p, scale=1.0)


SINK_TOTAL = 2.0  # softmax normaliser the sink column fixes: rows of weights sum to 2, halved x


def sink_logits(x: torch.Tensor) -> torch.Tensor:
    """Logits (..., Lk + 1): log(x) and a sink column log(2 - sum(x)), so the softmax
    normaliser is exactly 2 for ANY x with sum(x) < 2: softmax = [x / 2, 1 - sum(x) / 2].

    The weights are then linear in x (not renormalised), so dropout(weights) * 2 on the first
    Lk columns is dropout(x) and autograd's dx is the contract's g * m up to rounding (the
    normaliser's dependence on x cancels exactly). The sink column is discarded.
    """
    rest = SINK_TOTAL - x.sum(-1, keepdim=True)
    return _like_layout(torch.log(torch.cat([x, rest], dim=-1)), x)


def _like_layout(t: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``t`` re-laid in ``ref``'s axis order in memory (keeps a transposed/channels-last probe
    non-contiguous after the plumbing)."""
    if ref.is_contiguous() or t.dim() != ref.dim():
        return t
    order = sorted(range(ref.dim()), key=lambda d: -ref.stride(d))
    inverse = sorted(range(ref.dim()), key=lambda d: order[d])
    return t.permute(order).contiguous().permute(inverse)


def sdpa_call(module: nn.Module, tensors: Tuple[torch.Tensor, ...]) -> torch.Tensor:
    """q = sink_logits(x), k = identity, v = 2 [I; 0] (per head), scale 1: the output is
    2 * dropout(softmax(q k^T))[..., :Lk] = dropout(x) up to rounding."""
    (x,) = tensors
    lk = x.shape[-1]
    eye = torch.eye(lk + 1, dtype=x.dtype, device=x.device)
    k = eye.expand(*x.shape[:-2], lk + 1, lk + 1)
    v = (SINK_TOTAL * eye[:, :lk]).expand(*x.shape[:-2], lk + 1, lk)
    return module(sink_logits(x), k, v)


def mha_factory(heads: int, lk: int) -> Callable[..., nn.Module]:
    """nn.MultiheadAttention(embed_dim=heads*(lk+1), num_heads=heads, dropout=p, bias=False,
    batch_first=True) with identity in/out projections (head_dim = lk + 1: Lk keys and a sink)."""
    def factory(p: float, renormalize: bool = False) -> nn.Module:
        _no_option("MultiheadAttention", "renormalize", renormalize, False)
        e = heads * (lk + 1)
        m = nn.MultiheadAttention(e, heads, dropout=p, bias=False, batch_first=True)
        with torch.no_grad():
            m.in_proj_weight.copy_(torch.eye(e).repeat(3, 1))
            m.out_proj.weight.copy_(torch.eye(e))
        return m
    return factory


def mha_call(module: nn.Module, tensors: Tuple[torch.Tensor, ...]) -> torch.Tensor:
    """query = sqrt(Lk+1) sink_logits(x) laid out per head, key = value = per-head identity:
    the softmax weights are [x / 2, sink]; returns 2 * the per-head weights' first Lk columns
    (B, H, Lq, Lk), as MultiheadAttention returns them (after dropout in training)."""
    (x,) = tensors
    squeeze = x.dim() == 3
    if squeeze:
        x = x.unsqueeze(1)
    b, h, lq, lk = x.shape
    if (h, lk + 1) != (module.num_heads, module.head_dim):
        raise ValueError(f"probe (H, Lk)={(h, lk)}, but this module was built for "
                         f"{(module.num_heads, module.head_dim - 1)}")
    q = (math.sqrt(lk + 1) * sink_logits(x)).permute(0, 2, 1, 3).reshape(b, lq, h * (lk + 1))
    k = torch.eye(lk + 1, dtype=x.dtype, device=x.device).repeat(1, h).expand(b, lk + 1, h * (lk + 1))
    _, w = module(q, k, k, need_weights=True, average_attn_weights=False)
    w = SINK_TOTAL * w[..., :lk]
    return w[:, 0] if squeeze else w


# ------------------------------------------------------------------------------ built-in targets

ATTENTION_SHAPE = (8, 4, 16, 16)
_SDPA_BACKENDS = ("MATH",)  # CPU: FLASH_ATTENTION rejects dropout_p > 0; EFFICIENT/CUDNN are CUDA-only
_UNBATCHED_NOTE = ("The adapter feeds each sample x[n] of the batched probe unbatched, (C, ...), and stacks "
                   "the outputs; the contract checked stays the per-(sample, channel) one.")


def _dropout() -> TargetSpec:
    return torch_spec("torch:Dropout", "dropout", lambda p: nn.Dropout(p),
                      description="torch.nn.Dropout(p): element-wise inverted dropout.")


def _f_dropout() -> TargetSpec:
    return torch_spec("torch:F.dropout", "dropout", lambda p: Functional(F.dropout, p),
                      description="torch.nn.functional.dropout(x, p, training): element-wise inverted dropout.")


def _spatial_spec(dims: int, unbatched: bool = False) -> TargetSpec:
    cls = {1: nn.Dropout1d, 2: nn.Dropout2d, 3: nn.Dropout3d}[dims]
    name = f"torch:{cls.__name__}" + ("[unbatched]" if unbatched else "")
    if not unbatched:
        return torch_spec(name, f"spatial_dropout_{dims}d", _spatial(cls),
                          description=f"torch.nn.{cls.__name__}(p) on batched (N, C, ...) input.")
    conventions = [_UNBATCHED_NOTE]
    if dims == 2:
        conventions.append(
            "PyTorch documents (and warns) that a 3-D input to Dropout2d is treated as batched 1-D (N, C, L) "
            "for backwards compatibility, so an unbatched (C, H, W) map gets one draw per (C, H) row, not per "
            "channel (pytorch 69801, open): the mask-structure check FAILS by the library's design. Give "
            "Dropout2d a batch axis (x[None]) or use Dropout1d/Dropout3d semantics knowingly.")
    else:
        conventions.append(f"{cls.__name__} accepts unbatched input of rank {dims + 1} and adds the batch axis "
                           "itself, so the per-channel contract is expected to hold.")
    shape = ((16, 32, 16), (16, 32, 8, 8), (8, 32, 4, 4, 4))[dims - 1]
    return torch_spec(name, f"spatial_dropout_{dims}d", _spatial(cls), call=unbatched_call, shape=shape,
                      conventions=tuple(conventions),
                      description=f"torch.nn.{cls.__name__}(p) called on each unbatched sample (C, ...).")


def _alpha() -> TargetSpec:
    return torch_spec("torch:AlphaDropout", "alpha_dropout", lambda p: nn.AlphaDropout(p),
                      conventions=("p = 1 returns zeros (input * 0), as the contract says.",),
                      description="torch.nn.AlphaDropout(p): SELU alpha dropout, one draw per element.")


def _feature_alpha() -> TargetSpec:
    return torch_spec("torch:FeatureAlphaDropout", "feature_alpha_dropout", lambda p: nn.FeatureAlphaDropout(p),
                      conventions=("Batched (N, C, ...) input only: unbatched input shares the mask along "
                                   "the wrong axes (pytorch 69960).",),
                      description="torch.nn.FeatureAlphaDropout(p): alpha dropout per (sample, channel).")


_ATTENTION_CONVENTIONS = (
    "Plumbing: logits [log(x), log(2 - sum(x))] against identity keys (one sink key per row), so the softmax "
    "weights are exactly [x / 2, sink] for any x with row sums < 2; the target returns 2 * the first Lk "
    "columns after dropout. The output is dropout(x) up to rounding and autograd's dx is the contract's "
    "g * m (the sink makes the normaliser independent of x).",
    "Rows of dropped weights may sum above 1 (pytorch 42929): expected, the renormalize=False convention.",
    "Dropout is applied (and p validated) only when p > 0, so p < 0 is silently accepted as no dropout: "
    "invalid_p_rejected FAILS (library behaviour; p > 1 raises).",
)

_ATTENTION_NOT_APPLICABLE = {
    "nonfinite_inputs_leave_others_untouched":
        "the probe reaches the dropout through softmax plumbing: a NaN/inf planted in x is a non-finite logit, "
        "which softmax (and, in MultiheadAttention, the identity projections: NaN * 0) spreads to other weights "
        "before dropout is applied, so the check would measure the plumbing, not the layer.",
}


def _mha() -> TargetSpec:
    _, h, _, lk = ATTENTION_SHAPE
    return torch_spec(
        "torch:MultiheadAttention", "attention_dropout", mha_factory(h, lk), call=mha_call,
        layouts=("contiguous",), shape=ATTENTION_SHAPE, not_applicable=_ATTENTION_NOT_APPLICABLE,
        conventions=(
            "nn.MultiheadAttention(embed_dim=H*(Lk+1), num_heads=H, dropout=p, bias=False, batch_first=True) "
            "with identity projections; query = sqrt(Lk+1) * logits per head; key = value = per-head identity; "
            "need_weights=True, average_attn_weights=False returns the per-head weights AFTER dropout in "
            "training (pytorch 42929), before it in eval.",
            *_ATTENTION_CONVENTIONS,
            "Only the contiguous layout: the module re-lays the query out internally anyway.",
        ),
        description="torch.nn.MultiheadAttention(dropout=p): dropout on the returned per-head attention weights.")


def _sdpa_factory(backend: str) -> Callable[..., nn.Module]:
    def factory(p: float, renormalize: bool = False) -> nn.Module:
        _no_option("scaled_dot_product_attention", "renormalize", renormalize, False)
        return SDPA(p, backend)
    return factory


def sdpa_spec(backend: str = "MATH", device: str = "cpu") -> TargetSpec:
    """``F.scaled_dot_product_attention`` restricted to one ``SDPBackend`` on ``device``."""
    suffix = "" if device == "cpu" else f"[{device}]"
    return torch_spec(
        f"torch:scaled_dot_product_attention[{backend.lower()}]{suffix}", "attention_dropout",
        _sdpa_factory(backend), device=device, call=sdpa_call, shape=ATTENTION_SHAPE,
        not_applicable=_ATTENTION_NOT_APPLICABLE,
        conventions=(
            "scaled_dot_product_attention is stateless: dropout_p is applied whenever it is > 0, in training and "
            "in eval alike (pytorch 124464); callers must pass dropout_p=0 in eval. The target passes "
            "dropout_p=p whatever the mode, so the eval check FAILS by the API's design.",
            "q = logits, k = identity, v = 2 [I; 0] per head, scale=1: the output is the dropped weights.",
            *_ATTENTION_CONVENTIONS,
            "On CPU only the MATH backend applies dropout: FLASH_ATTENTION rejects dropout_p > 0 ('No available "
            "kernel') and EFFICIENT_ATTENTION / CUDNN_ATTENTION are CUDA-only.",
        ),
        description=f"torch.nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=p) with "
                    f"sdpa_kernel(SDPBackend.{backend}).")


TARGETS = {
    "torch:Dropout": _dropout,
    "torch:F.dropout": _f_dropout,
    "torch:Dropout1d": lambda: _spatial_spec(1),
    "torch:Dropout2d": lambda: _spatial_spec(2),
    "torch:Dropout3d": lambda: _spatial_spec(3),
    "torch:Dropout1d[unbatched]": lambda: _spatial_spec(1, True),
    "torch:Dropout2d[unbatched]": lambda: _spatial_spec(2, True),
    "torch:Dropout3d[unbatched]": lambda: _spatial_spec(3, True),
    "torch:AlphaDropout": _alpha,
    "torch:FeatureAlphaDropout": _feature_alpha,
    "torch:MultiheadAttention": _mha,
    "torch:scaled_dot_product_attention": lambda: [sdpa_spec(b) for b in _SDPA_BACKENDS],
}

__all__ = ["FLOAT_DTYPES", "Functional", "SDPA", "TARGETS", "TorchTarget", "layouts_for", "mha_call",
           "mha_factory", "sdpa_call", "sdpa_spec", "to_numpy", "to_tensor", "torch_spec", "unbatched_call"]
