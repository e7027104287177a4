"""In situ: each discovered site as a TargetSpec, at the shape, dtype, device and p it saw.

Promises:

* a module site is verified through the torch adapter on a copy of the module taken before
  the model ran (so a module that rewrites its own rate is verified as configured);
* a functional site is *replayed*: a module that applies the same functional op with the
  arguments recorded in training (p, training flag) when in training mode, and those recorded
  in eval when in eval mode (the identity where the site was not called in eval), on a probe
  of the recorded shape and dtype. ``scaled_dot_product_attention`` and
  ``multi_head_attention_forward`` go through the torch adapter's attention plumbing, whose
  output is the dropped attention weights (B, H, Lq, Lk);
* sites whose replay is identical by construction (the same library op or library class with
  the same arguments, shape, dtype and device) share one spec, so one run stands for all;
* an in-place module receives clones of the probe (non-leaf tensors, as inside a model);
  a timm DropBlock with ``gamma_scale`` is verified at p = drop_prob x gamma_scale (the same
  gamma); a guessed class or a subclass is verified as the variant its behaviour shows
  (:mod:`.behaviour`);
* an RNN's between-layer dropout is observed through ``nn.RNN(relu, 2 layers, dropout=p)`` with
  identity weights (:class:`RNNDropoutReplay`) at the site's p, dtype and layer-output shape;
* a site declared eval-active (MC dropout) is replayed in eval mode (module sites) or with its
  eval arguments (functional sites) in both modes, and the eval check is not applicable;
* a site that cannot be sampled (not called in training, p = 0 in training, inactive in
  training, a rank or an option no contract covers) gets no spec and a reason.

The specs run through :func:`dropverify.runner.verify` in ONE call: one Holm family for the
model. The layer's edge cases (p = 0, p = 1, invalid p, other dtypes, non-finite inputs, an
empty batch) are not the site's: they are listed as not applicable, with the reason.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..contracts import Contract
from ..errors import InvalidArgument
from ..targets._base import TargetSpec
from ..targets.torch_nn import (FLOAT_DTYPES, TorchTarget, layouts_for, mha_call, mha_factory, sdpa_call,
                                unbatched_call)
from .discovery import Call, Site
from .plan import (EDGE_CHECKS, QUICK_CHECKS, Plan, choose_checks,  # noqa: F401 - re-exported
                   eval_active_match, not_applicable as _not_applicable, plan)

def _np_dtype(name: str) -> Any:
    from ..targets._base import numpy_dtype
    return numpy_dtype(name)


class FunctionalReplay(nn.Module):
    """``fn(x, p, flag)`` with the arguments a site passed in training (training mode) or in
    eval (eval mode; ``None``: the site was not called in eval, so the identity)."""

    def __init__(self, fn: Callable[..., torch.Tensor], train: Tuple[float, bool],
                 eval_: Optional[Tuple[float, bool]]) -> None:
        super().__init__()
        self.fn, self.train_args, self.eval_args = fn, train, eval_

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        args = self.train_args if self.training else self.eval_args
        if args is None:
            return x
        return self.fn(x, args[0], args[1])


class SDPAReplay(nn.Module):
    """``F.scaled_dot_product_attention(q, k, v, dropout_p=p, scale=1)`` with the dropout_p a site
    passed in training (training mode) or in eval (eval mode; 0 where not called in eval). On
    CPU under the MATH backend (the only CPU kernel that applies dropout); on CUDA the default
    kernel selection."""

    def __init__(self, p_train: float, p_eval: float, math_backend: bool) -> None:
        super().__init__()
        self.p_train, self.p_eval, self.math_backend = p_train, p_eval, math_backend

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        p = self.p_train if self.training else self.p_eval
        if self.math_backend:
            from torch.nn.attention import SDPBackend, sdpa_kernel
            with sdpa_kernel(SDPBackend.MATH):
                return F.scaled_dot_product_attention(q, k, v, dropout_p=p, scale=1.0)
        return F.scaled_dot_product_attention(q, k, v, dropout_p=p, scale=1.0)


def _weights_shape(q: Tuple[int, ...], k: Tuple[int, ...]) -> Tuple[int, ...]:
    w = tuple(q[:-1]) + (k[-2],)
    if len(w) > 4:
        w = (int(np.prod(w[:-3])),) + w[-3:]
    while len(w) < 3:
        w = (1,) + w
    return w


def _spec(site: Site, name: str, variant: str, params: Dict[str, Any], shape: Tuple[int, ...], dtype: str,
          device: str, make: Callable[[], nn.Module], description: str, call: Any = None,
          contract: Optional[Contract] = None, conventions: Sequence[str] = (),
          layouts: Optional[Tuple[str, ...]] = None, extra_na: Optional[Mapping[str, str]] = None) -> TargetSpec:
    """A spec whose target is ``make()`` behind the torch adapter, at this site's parameters only."""
    if contract is None:
        from ..variants import get_contract
        contract = get_contract(variant)
    canonical = contract.validate_params(params)
    contract.check_shape(shape)
    dt = _np_dtype(dtype)
    dtypes = (dt,) + tuple(d for d in FLOAT_DTYPES if d is not dt)
    lay = layouts or layouts_for(len(shape))

    def build(prm: Mapping[str, Any]) -> TorchTarget:
        if any(prm.get(k) != v for k, v in canonical.items()):
            raise ValueError(f"the site {site.label} is verified at its own parameters {canonical} only, not {dict(prm)}")
        return TorchTarget(make(), call=call, device=device, dtypes=dtypes, layouts=lay)

    na = _not_applicable()
    na.update(extra_na or {})
    return TargetSpec(name=name, variant=variant, build=build, params=canonical, shape=tuple(shape),
                      contract=contract, conventions=tuple(conventions), description=description,
                      not_applicable=na, dtype=dtype if dtype in ("float16", "bfloat16", "float32", "float64")
                      else "float32")


def _clone_call(inner: Optional[Callable[..., torch.Tensor]]) -> Callable[..., torch.Tensor]:
    """A call hook feeding the module clones of the probe tensors: an in-place layer then writes into
    a non-leaf tensor (gradients flow through the clone), as it does inside a model."""
    def call(module: nn.Module, tensors: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        clones = tuple(t.clone() for t in tensors)
        return inner(module, clones) if inner is not None else module(*clones)
    return call


class RNNDropoutReplay(nn.Module):
    """The dropout torch applies between the stacked layers of an RNN, observable: ``nn.RNN(relu,
    num_layers=2, dropout=p, bias=False)`` with identity input weights and zero recurrent weights
    gives ``D relu(x)`` for the inter-layer mask ``D``; run on relu(x) and relu(-x) under the same
    RNG state, the difference is ``D x``. ATen applies the same ``at::dropout`` between the layers
    of LSTM, GRU and RNN (RNN.cpp, ``apply_layer_stack``)."""

    def __init__(self, p: float, width: int, batch_first: bool) -> None:
        super().__init__()
        self.rnn = nn.RNN(width, width, num_layers=2, nonlinearity="relu", bias=False, dropout=p,
                          batch_first=batch_first)
        with torch.no_grad():
            for k in range(2):
                getattr(self.rnn, f"weight_ih_l{k}").copy_(torch.eye(width))
                getattr(self.rnn, f"weight_hh_l{k}").zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = torch.random.get_rng_state()
        a, _ = self.rnn(x.clamp(min=0))
        torch.random.set_rng_state(state)
        b, _ = self.rnn((-x).clamp(min=0))
        return a - b


class EvalModeReplay(nn.Module):
    """A declared eval-active (MC dropout) site: the module runs in eval mode whatever mode the
    harness asks for, so the training-mode checks verify the rate it applies in eval."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        self.inner.eval()
        return self.inner(*xs)


EVAL_ACTIVE_NA = {"eval_mode_deterministic_and_exact": "declared eval-active (MC dropout, eval_active=...): the "
                                                       "site drops in eval by design; its eval rate is what the "
                                                       "training-mode checks verify"}


def _rnn_spec(site: Site, first: Call, note: str) -> Tuple[Optional[TargetSpec], Optional[tuple], str]:
    extra = first.extra
    shape = first.shapes[0] if first.shapes else ()
    if len(shape) not in (2, 3):
        return None, None, f"the recorded input is not a (T, N, H) / (N, T, H) / (T, H) tensor: {shape or 'none'}"
    if first.device.startswith("cuda"):
        return None, None, ("on CUDA cuDNN keeps its own dropout state for RNNs: the observable replay runs on the "
                            "CPU kernel only (the exact checks judge the site)")
    probe = tuple(shape[:-1]) + (int(extra["width"]),)
    batch_first = bool(extra["batch_first"])
    description = (f"{site.label}: {site.kind.split(' ')[0]}(num_layers={extra['num_layers']}, dropout={first.p:g}): "
                   f"the dropout between stacked layers, on a layer's output {probe} {first.dtype} (element-wise, "
                   f"one fresh mask per call).{note}")
    conventions = ["Replay: nn.RNN(relu, num_layers=2, dropout=p, bias=False) with identity input weights and zero "
                   "recurrent weights, run on relu(x) and relu(-x) under one RNG state: the difference is the "
                   "inter-layer dropout of x. ATen applies the same at::dropout between the layers of LSTM, GRU "
                   "and RNN on the CPU; the site's own weights do not enter the dropout."]
    try:
        spec = _spec(site, site.name, "dropout", {"p": first.p}, probe, first.dtype, "cpu",
                     lambda: RNNDropoutReplay(first.p, probe[-1], batch_first), description,
                     conventions=conventions, layouts=("contiguous",))
    except InvalidArgument as exc:
        return None, None, str(exc)
    return spec, ("rnn", first.p, probe, batch_first, first.dtype), ""


def _module_spec(site: Site, first: Call, note: str,
                 eval_active: bool = False) -> Tuple[Optional[TargetSpec], Optional[tuple], str]:
    kind = site.module_kind
    module = site.snapshot
    if kind is None or module is None:
        return None, None, "the module could not be copied before the model ran"
    if kind.rnn:
        return _rnn_spec(site, first, note)
    shape = first.shapes[0] if first.shapes else ()
    rank = len(shape)
    variant = kind.variant or (kind.variant_for(rank) if kind.variant_for else None)
    conventions = []
    read = dict(kind.params(module, rank))
    gamma_scale = float(read.pop("_gamma_scale", 1.0))
    unsupported = read.pop("_unsupported", ())
    if unsupported:
        return None, None, f"no contract covers {kind.name} with {', '.join(unsupported)}"
    if kind.observe:
        from .behaviour import identify
        found = identify(module, tuple(shape), getattr(torch, first.dtype, torch.float32), _device(first.device),
                         first.p)
        if found is not None:
            site.identified, site.identified_words = found.variant, found.words
            if found.variant != variant:
                conventions.append(f"Identified as {found.variant} by its behaviour ({found.words}); its class "
                                   f"name alone suggested {variant or 'no variant'}.")
                variant, read = found.variant, dict(found.params)
            else:
                conventions.append(f"Its behaviour confirms {variant}: {found.words}.")
    if variant is None:
        return None, None, f"no contract covers {kind.name} on a rank-{rank} input {shape}"
    params = {"p": first.p * gamma_scale, **read}
    if gamma_scale != 1.0:
        conventions.append(f"gamma_scale={gamma_scale:g} (read from the module): timm multiplies the paper's gamma "
                           f"by it, which is the paper's rule at p = drop_prob x gamma_scale = {first.p:g} x "
                           f"{gamma_scale:g} = {params['p']:g}; verified at that p.")
    call = None
    probe = shape
    if variant.startswith("spatial_dropout_") and rank == int(variant[-2]) + 1:
        call, probe = unbatched_call, (1,) + tuple(shape)
        conventions.append(f"The site receives unbatched input {shape}: the probe adds a batch axis of 1 and feeds "
                           "x[0] unbatched, as the model does.")
    if kind.name == "nn.Dropout2d" and rank == 3:
        conventions.append("PyTorch treats a 3-D input to Dropout2d as batched 1-D (N, C, L) and drops whole (n, c) "
                           "rows (it warns): verified against that. If the site's 3-D input is an unbatched (C, H, W) "
                           "map, it drops rows, not channels (pytorch 69801): add the batch axis.")
    if getattr(module, "inplace", False) is True:
        call = _clone_call(call)
        conventions.append("The module works in place (inplace=True): each call receives a clone of the probe, a "
                           "non-leaf tensor under autograd, as inside a model.")
    contract = None
    if kind.name.startswith("torchvision DropBlock"):
        from ..targets.torchvision_ops import eps_contract
        contract = eps_contract(variant, float(getattr(module, "eps", 1e-6)))
    if kind.guessed and site.identified is None:
        conventions.append(f"Classified as {variant} from its class name ({type(module).__name__}); "
                           "dropverify.modelscan.register(cls, variant, p=..., ...) states it explicitly.")
    make: Callable[[], nn.Module] = lambda: copy.deepcopy(module)  # noqa: E731
    extra_na = None
    if eval_active:
        make = lambda: EvalModeReplay(copy.deepcopy(module))  # noqa: E731
        extra_na = EVAL_ACTIVE_NA
        conventions.append("Declared eval-active (MC dropout): every call runs the module in eval mode, so the "
                           "rate, scale and mask checks verify what it applies in eval.")
    description = (f"{site.label}: {site.kind} (p={first.p:g}) as the model configures it, on its input shape "
                   f"{tuple(shape)} {first.dtype} on {first.device}.{note}")
    key = None
    if kind.library:
        key = ("module", kind.name, tuple(sorted(params.items())), repr(module), tuple(shape), first.dtype,
               first.device, eval_active)
    try:
        spec = _spec(site, site.name, variant, params, probe, first.dtype, _device(first.device),
                     make, description, call=call, contract=contract,
                     conventions=conventions, extra_na=extra_na)
    except InvalidArgument as exc:
        return None, None, str(exc)
    return spec, key, ""


def _device(device: str) -> str:
    return "cuda" if device.startswith("cuda") else "cpu"


def _functional_spec(site: Site, first: Call, note: str,
                     eval_active: bool = False) -> Tuple[Optional[TargetSpec], Optional[tuple], str]:
    op = site.fop
    evals = site.phase("eval")
    e = evals[0] if evals else None
    device = _device(first.device)
    if eval_active:  # MC dropout: the replay applies what the site applied in eval, in both modes
        if e is None or not e.applied:
            return None, None, "declared eval-active, but it did not drop in eval (site_inactive_in_eval says how)"
        first = dataclasses.replace(first, p=e.p, flag=e.flag)
    if op.name == "scaled_dot_product_attention":
        if len(first.shapes) < 2:
            return None, None, "the recorded call has no query / key shapes"
        shape = _weights_shape(first.shapes[0], first.shapes[1])
        p_eval = e.p if e is not None else 0.0
        if eval_active:
            p_eval = first.p
        math_backend = device == "cpu"
        description = (f"{site.label} calls F.scaled_dot_product_attention with dropout_p={first.p:g} in training "
                       f"and {p_eval:g} in eval (q {first.shapes[0]}, k {first.shapes[1]}, {first.dtype} on "
                       f"{first.device}); replayed on its attention weights {shape}.{note}")
        conventions = ["Replay: the torch adapter's plumbing (logits [log x, log(2 - sum x)] against identity keys, "
                       "v = 2 [I; 0], scale = 1) makes the output the dropped attention weights; the site's own "
                       "attn_mask / is_causal / scale are not replayed (the plumbing needs every weight positive).",
                       "On CPU the MATH backend (the only CPU kernel that applies dropout, as the site runs); on CUDA "
                       "the default kernel selection for the replay's head dimension Lk + 1, which may differ from "
                       "the kernel the site's own head dimension selects."]
        spec = _spec(site, site.name, "attention_dropout", {"p": first.p, "renormalize": False}, shape, first.dtype,
                     device, lambda: SDPAReplay(first.p, p_eval, math_backend), description, call=sdpa_call,
                     conventions=conventions, layouts=("contiguous", "transposed"), extra_na=EVAL_ACTIVE_NA if eval_active else None)
        return spec, ("sdpa", first.p, p_eval, shape, first.dtype, first.device, eval_active), ""
    if op.name == "multi_head_attention_forward":
        q, k = first.shapes[0], first.shapes[1]
        heads = int(first.extra.get("num_heads", 1))
        n = q[1] if len(q) == 3 else 1
        shape = (n, heads, q[0], k[0])
        description = (f"{site.label} calls F.multi_head_attention_forward with dropout_p={first.p:g} (query {q}, "
                       f"key {k}, {heads} heads, {first.dtype} on {first.device}); verified as "
                       f"nn.MultiheadAttention(dropout={first.p:g}) with identity projections on its attention "
                       f"weights {shape}.{note}")
        spec = _spec(site, site.name, "attention_dropout", {"p": first.p, "renormalize": False}, shape, first.dtype,
                     device, lambda: mha_factory(heads, shape[-1])(first.p), description, call=mha_call,
                     conventions=["nn.MultiheadAttention passes its own training flag: the eval behaviour of the "
                                  "site's own call is judged by site_inactive_in_eval from the recorded flags."],
                     layouts=("contiguous",), extra_na=EVAL_ACTIVE_NA if eval_active else None)
        return spec, ("mha", first.p, shape, first.dtype, first.device, eval_active), ""
    shape = first.shapes[0] if first.shapes else ()
    variant = op.variant
    if variant is None:  # torch.feature_dropout: channel dropout of (N, C, *spatial)
        variant = {3: "spatial_dropout_1d", 4: "spatial_dropout_2d", 5: "spatial_dropout_3d"}.get(len(shape))
        if variant is None:
            return None, None, f"no contract covers {op.shown} on a rank-{len(shape)} input {shape}"
    params: Dict[str, Any] = {"p": first.p}
    if variant.startswith("spatial_dropout_"):
        params["channels_last"] = False
    fn = next(f for f, o in _ops().items() if o is op)
    train = (first.p, bool(first.flag))
    eval_ = (e.p, bool(e.flag)) if e is not None else None
    if eval_active:
        eval_ = train
    eval_words = f"p={e.p:g}, {op.flag_arg}={e.flag}" if e is not None else "not called"
    description = (f"{site.label} calls {op.shown}(p={first.p:g}, {op.flag_arg}={first.flag}) in training ({eval_words} "
                   f"in eval) on {tuple(shape)} {first.dtype} on {first.device}; replayed with those arguments.{note}")
    spec = _spec(site, site.name, variant, params, tuple(shape), first.dtype, device,
                 lambda: FunctionalReplay(fn, train, eval_), description, extra_na=EVAL_ACTIVE_NA if eval_active else None)
    return spec, ("functional", op.name, train, eval_, tuple(shape), first.dtype, first.device, eval_active), ""


def _ops() -> Dict[Any, Any]:
    from .discovery import OPS
    return OPS


__all__ = ["EDGE_CHECKS", "EvalModeReplay", "FunctionalReplay", "Plan", "RNNDropoutReplay",
           "QUICK_CHECKS", "SDPAReplay", "choose_checks", "eval_active_match", "plan"]
