"""Adapter for Keras 3 layers on the torch backend (``KERAS_BACKEND=torch``; no TensorFlow).

Translation only: canonical ``p`` -> Keras ``rate``; numpy -> torch tensors (dtype kept) on
the device Keras uses; ``layer(x, training=...)``; gradients from torch autograd.

Seeding. A Keras layer takes ``seed=`` at construction and owns a ``SeedGenerator`` whose
state ``[seed, counter]`` advances on every call, so ``seed(s)`` calls
``keras.utils.set_random_seed(s)`` (for layers on the global RNG) and rebuilds the layer with
``seed=s`` where the factory takes one: the same seed reproduces, successive calls advance.
Keras seeds are int32, so the harness's seed is taken modulo 2**31.

Dtypes. Keras casts floating inputs to the layer's compute dtype (a default float32 layer
returns float32 for a float64 input, by design); the adapter therefore builds one layer per
input dtype with ``dtype=<input dtype>``, which is how a Keras user runs a layer in that dtype.
"""
from __future__ import annotations

import inspect
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402

import keras  # noqa: E402  (ImportError here -> TargetUnavailable in the registry)
import torch  # noqa: E402

if keras.backend.backend() != "torch":
    raise ImportError(f"the keras adapter needs KERAS_BACKEND=torch, but keras runs on "
                      f"{keras.backend.backend()!r} (set the variable before keras is first imported)")

from ..contracts import Inputs, get_contract  # noqa: E402
from ._base import TargetSpec  # noqa: E402

Factory = Callable[..., Any]
_DTYPES = (np.float16, np.float32, np.float64)
_SEED_MOD = 2 ** 31


def _device() -> str:
    try:
        from keras.src.backend.torch.core import get_device
        return str(get_device())
    except Exception:  # noqa: BLE001 - private helper moved: same rule as Keras' own default
        return "cuda" if torch.cuda.is_available() else "cpu"


def _to_tensor(a: np.ndarray, layout: str) -> torch.Tensor:
    """Same logical values as ``a`` (same dtype), in the memory layout asked for."""
    a = np.asarray(a)
    dev = _device()
    if layout == "contiguous" or a.ndim < 2:
        return torch.tensor(np.ascontiguousarray(a), device=dev)
    if layout == "transposed":  # axes reversed in memory: a non-contiguous permuted view
        rev = tuple(reversed(range(a.ndim)))
        return torch.tensor(np.ascontiguousarray(a.transpose(rev)), device=dev).permute(rev)
    if layout == "strided":     # every other element of a buffer twice as long on the last axis
        t = torch.tensor(np.ascontiguousarray(a), device=dev)
        big = torch.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype=t.dtype, device=dev)
        big[..., ::2] = t
        return big[..., ::2]
    if layout == "channels_last" and a.ndim in (4, 5):
        fmt = torch.channels_last if a.ndim == 4 else torch.channels_last_3d
        return torch.tensor(np.ascontiguousarray(a), device=dev).contiguous(memory_format=fmt)
    raise ValueError(f"layout={layout!r}, but should be one of contiguous, transposed, strided, "
                     "channels_last (rank 4 or 5)")


def _to_numpy(t: Any) -> np.ndarray:
    """A numpy copy of the output, in the output's own dtype."""
    if isinstance(t, torch.Tensor):
        return t.detach().cpu().numpy().copy()
    return np.array(keras.ops.convert_to_numpy(t), copy=True)


def _compute_dtype(layer: Any) -> Optional[str]:
    return getattr(layer, "compute_dtype", None)


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    return name in sig.parameters or any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())


class KerasTarget:
    """A Keras layer built by ``factory(**params, seed=..., dtype=...)``.

    ``seed`` and ``dtype`` are passed only if the factory's signature accepts them. One
    layer is built per input dtype (``dtype=<input dtype>``) when the factory honours
    ``dtype``; otherwise one layer serves every input and ``dtypes`` is its compute dtype.
    """

    has_gradients = True

    def __init__(self, factory: Factory, params: Mapping[str, Any], dtypes: Optional[Tuple[Any, ...]] = None,
                 layouts: Tuple[str, ...] = ("contiguous",)) -> None:
        self.factory, self.params = factory, dict(params)
        self.layouts = tuple(layouts)
        self._takes_seed = _accepts(factory, "seed")
        self._takes_dtype = _accepts(factory, "dtype")
        self._seed: Optional[int] = None
        self._layers: Dict[str, Any] = {}
        self.layer = self._layer(np.dtype(np.float32))  # built now: invalid rates raise here, as in Keras
        if self._takes_dtype and _compute_dtype(self._layer(np.dtype(np.float64))) != "float64":
            self._takes_dtype = False                    # e.g. **kwargs that drop dtype: one layer for all
            self._layers = {"*": self.layer}
        if dtypes is None:
            dtypes = _DTYPES if self._takes_dtype else (np.dtype(_compute_dtype(self.layer) or "float32").type,)
        self.dtypes = tuple(dtypes)

    def _layer(self, dtype: np.dtype) -> Any:
        key = np.dtype(dtype).name if self._takes_dtype else "*"
        if key not in self._layers:
            kw: Dict[str, Any] = {}
            if self._takes_seed:
                kw["seed"] = self._seed
            if self._takes_dtype:
                kw["dtype"] = key
            self._layers[key] = self.factory(**self.params, **kw)
        return self._layers[key]

    def seed(self, seed: int) -> None:
        """``keras.utils.set_random_seed(s)``, then rebuild (with ``seed=s`` where the factory
        takes it: generator state [s, 0]). Keras seeds are int32 (its SeedGenerator state is an
        int32 tensor), so ``s = seed mod 2**31``."""
        self._seed = int(seed) % _SEED_MOD
        keras.utils.set_random_seed(self._seed)
        self._layers = {}
        self.layer = self._layer(np.dtype(np.float32))

    def _call(self, inputs: Inputs, args: List[torch.Tensor], training: bool) -> Any:
        return self._layer(np.asarray(inputs[0]).dtype)(*args, training=training)

    def forward(self, inputs: Inputs, *, training: bool = True, layout: str = "contiguous") -> np.ndarray:
        args = [_to_tensor(a, layout) for a in inputs]
        with torch.no_grad():
            return _to_numpy(self._call(inputs, args, training))

    def forward_backward(self, inputs: Inputs, grad_out: np.ndarray) -> Tuple[np.ndarray, Tuple[np.ndarray, ...]]:
        """Training call, then d sum(grad_out * y) / d(inputs, trainable weights) by autograd
        (a quantity the output does not depend on gets a zero gradient)."""
        args = [_to_tensor(a, "contiguous").requires_grad_(True) for a in inputs]
        y = self._call(inputs, args, True)
        weights = [w.value for w in getattr(self._layer(np.asarray(inputs[0]).dtype), "trainable_weights", [])]
        wrt = args + [w for w in weights if isinstance(w, torch.Tensor) and w.requires_grad]
        g = torch.as_tensor(np.asarray(grad_out), device=y.device).to(y.dtype)
        if y.requires_grad:
            grads = torch.autograd.grad(y, wrt, grad_outputs=g, allow_unused=True)
        else:  # e.g. rate=1 returns zeros_like(x), detached from x: the gradient is zero
            grads = (None,) * len(wrt)
        out = tuple(_to_numpy(torch.zeros_like(t) if gr is None else gr) for t, gr in zip(wrt, grads))
        return _to_numpy(y), out


def keras_spec(name: str, variant: str, factory: Factory, params: Optional[Mapping[str, Any]] = None,
               **kw: Any) -> TargetSpec:
    """A spec for a Keras layer built by ``factory(**canonical_params, seed=..., dtype=...)``.

    The factory receives every canonical parameter of the variant as a keyword (``p=0.5``;
    for spatial dropout also ``channels_last``) and should pass ``seed`` and ``dtype`` on to
    the layer; either may be left out of its signature (seeding then relies on
    ``keras.utils.set_random_seed``, and the layer keeps its own dtype policy). It may raise
    for values the layer rejects. ``dtypes`` / ``layouts`` in ``kw`` go to
    :class:`KerasTarget` (layouts default by the probe's rank); the rest to :class:`TargetSpec`.
    """
    dtypes = kw.pop("dtypes", None)
    layouts = kw.pop("layouts", None)
    if layouts is None:
        contract = kw.get("contract") or get_contract(variant)
        rank = len(kw.get("shape") or contract.default_shape)
        layouts = ("contiguous", "transposed", "strided") + (("channels_last",) if rank in (4, 5) else ())
    dtypes = None if dtypes is None else tuple(dtypes)
    layouts = tuple(layouts)
    return TargetSpec(name=name, variant=variant,
                      build=lambda prm: KerasTarget(factory, prm, dtypes, layouts),
                      params=dict(params or {}), **kw)


# ------------------------------------------------------------------------------ built-in targets

L = keras.layers
_COMMON = ("Keras layers autocast inputs to their compute dtype; the adapter builds each layer with "
           "dtype=<input dtype> so dtype is preserved.",
           "seed(s) calls keras.utils.set_random_seed and rebuilds the layer with seed=s mod 2**31 (Keras "
           "seeds are int32); on the torch backend call k then draws from torch.Generator.manual_seed(s + k).")


def _dropout() -> TargetSpec:
    return keras_spec("keras:Dropout", "dropout", lambda p, **k: L.Dropout(float(p), **k),
                      conventions=("canonical p -> Keras rate",) + _COMMON,
                      description="keras.layers.Dropout(rate, seed=s): Bernoulli keep mask, kept / (1 - rate); "
                                  "the seeded path of keras.random.dropout on torch (torch.bernoulli).")


def _dropout_unseeded() -> TargetSpec:
    return keras_spec("keras:Dropout[unseeded]", "dropout", lambda p, dtype: L.Dropout(float(p), dtype=dtype),
                      conventions=("canonical p -> Keras rate", "seed=None: seeded only through "
                                   "keras.utils.set_random_seed(s mod 2**31), i.e. torch.manual_seed") + _COMMON[:1],
                      description="keras.layers.Dropout(rate) without a seed: on torch this is the fast path "
                                  "torch.nn.functional.dropout on the global torch RNG.")


def _noise_shape() -> TargetSpec:
    def make(p: float, batch_first: bool = True, **k: Any) -> Any:
        return L.Dropout(float(p), noise_shape=(None, 1, None) if batch_first else (1, None, None), **k)
    return keras_spec("keras:Dropout[noise_shape]", "variational_dropout", make, {"batch_first": True},
                      conventions=("noise_shape=(None, 1, None) on (N, T, H): None takes the input's size, 1 shares "
                                   "one draw along time, so one mask per (n, h) = variational_dropout with "
                                   "batch_first=True (batch_first=False -> noise_shape=(1, None, None))",) + _COMMON,
                      description="keras.layers.Dropout(rate, noise_shape=(None, 1, None)): locked dropout.")


def _spatial(dims: int) -> List[TargetSpec]:
    cls = {1: L.SpatialDropout1D, 2: L.SpatialDropout2D, 3: L.SpatialDropout3D}[dims]
    variant = f"spatial_dropout_{dims}d"

    def make(p: float, channels_last: bool = True, **k: Any) -> Any:
        if dims == 1:
            if not channels_last:
                raise ValueError("keras.layers.SpatialDropout1D has no data_format: it reads (N, L, C) only")
            return cls(float(p), **k)
        return cls(float(p), data_format="channels_last" if channels_last else "channels_first", **k)

    last = {1: (64, 16, 32), 2: (64, 8, 8, 32), 3: (32, 4, 4, 4, 32)}[dims]
    first = {2: (64, 32, 8, 8), 3: (32, 32, 4, 4, 4)}.get(dims)
    name = f"keras:SpatialDropout{dims}D"
    conv = ("canonical p -> Keras rate", "channels_last=True is Keras' default data_format") + _COMMON
    specs = [keras_spec(name, variant, make, {"channels_last": True}, shape=last, conventions=conv,
                        description=f"keras.layers.SpatialDropout{dims}D(rate): one draw per (sample, channel), "
                                    "channels last.")]
    if first is not None:
        specs.append(keras_spec(f"{name}[channels_first]", variant, make, {"channels_last": False}, shape=first,
                                conventions=("canonical p -> Keras rate", "data_format='channels_first'") + _COMMON,
                                description=f"keras.layers.SpatialDropout{dims}D(rate, data_format="
                                            "'channels_first')."))
    return specs


def _gaussian() -> TargetSpec:
    return keras_spec("keras:GaussianDropout", "gaussian_dropout",
                      lambda p, **k: L.GaussianDropout(float(p), **k),
                      conventions=("canonical p -> Keras rate; Keras multiplies by N(1, sqrt(rate/(1-rate)))",)
                      + _COMMON,
                      description="keras.layers.GaussianDropout(rate): accepts rate=1 at construction and raises "
                                  "ZeroDivisionError when called in training.")


def _alpha() -> TargetSpec:
    return keras_spec("keras:AlphaDropout", "alpha_dropout", lambda p, **k: L.AlphaDropout(float(p), **k),
                      conventions=("canonical p -> Keras rate; same formula as the contract: alpha' = "
                                   "-1.6732632423543772 * 1.0507009873554805, a = ((1-p)(1+p alpha'^2))^-1/2, "
                                   "b = -a alpha' p, kept where uniform >= rate",) + _COMMON,
                      description="keras.layers.AlphaDropout(rate): accepts rate=1 at construction but the call "
                                  "raises ZeroDivisionError (a is 0 ** -0.5) instead of returning zeros; its "
                                  "docstring's 'multiplicative noise with std sqrt(rate/(1-rate))' is copied from "
                                  "GaussianDropout and does not describe the layer.")


TARGETS: Dict[str, Callable[[], Any]] = {
    "keras:Dropout": _dropout,
    "keras:Dropout[unseeded]": _dropout_unseeded,
    "keras:Dropout[noise_shape]": _noise_shape,
    "keras:SpatialDropout1D": lambda: _spatial(1),
    "keras:SpatialDropout2D": lambda: _spatial(2),
    "keras:SpatialDropout3D": lambda: _spatial(3),
    "keras:GaussianDropout": _gaussian,
    "keras:AlphaDropout": _alpha,
}

__all__ = ["KerasTarget", "TARGETS", "keras_spec"]
