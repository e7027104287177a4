"""Adapter for Keras 3 layers on the torch, jax and tensorflow backends.

Translation only: canonical ``p`` -> Keras ``rate``; numpy -> backend tensors (dtype kept);
``layer(x, training=...)``; gradients from the backend's own mechanism (torch autograd,
``jax.vjp`` over ``layer.stateless_call``, ``tf.GradientTape``).

Backends. Keras reads ``KERAS_BACKEND`` once, when it is first imported, so one process runs
one backend. Built-in names say which: ``keras:Dropout`` (torch, the default here),
``keras[jax]:Dropout``, ``keras[tensorflow]:Dropout``. Every built-in spec carries the
environment its backend needs (:data:`BACKEND_ENV`, e.g. ``KERAS_BACKEND=jax`` and
``JAX_ENABLE_X64=1``); a runner executes a spec whose ``env`` differs from its own process in a
worker started with it. Building a spec of another backend than this process's raises
TargetUnavailable naming the variable to set. Importing this module sets
``KERAS_BACKEND=torch`` only if the variable is unset and keras is not yet imported.

Seeding. A Keras layer takes ``seed=`` at construction and owns a ``SeedGenerator`` whose
state ``[seed, counter]`` advances on every call, so ``seed(s)`` calls
``keras.utils.set_random_seed(s)`` (for layers on the global RNG) and rebuilds the layer with
``seed=s`` where the factory takes one: the same seed reproduces, successive calls advance.
Keras seeds are int32, so the harness's seed is taken modulo 2**31. What the state becomes is
the backend's: torch seeds a ``torch.Generator`` with ``seed + counter``, jax uses
``[seed, counter]`` as a raw threefry key, tensorflow as a stateless-op seed pair.

Dtypes. Keras casts floating inputs to the layer's compute dtype (a default float32 layer
returns float32 for a float64 input, by design); the adapter therefore builds one layer per
input dtype with ``dtype=<input dtype>``, which is how a Keras user runs a layer in that dtype.
float16, bfloat16 (numpy side ``ml_dtypes.bfloat16``), float32 and float64 on every backend
(jax: float64 needs ``jax_enable_x64``, which this module turns on on the jax backend).

Layouts. torch tensors have strides: ``transposed`` / ``strided`` / ``channels_last`` are
real non-contiguous tensors. jax and TF tensors have no user-visible layout: there the
layouts hand the conversion a non-contiguous numpy array (Fortran order, every other element
of a wider buffer), which checks that the host-to-device copy keeps each value in place.
"""
from __future__ import annotations

import inspect
import os
import sys
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

if "keras" not in sys.modules:
    os.environ.setdefault("KERAS_BACKEND", "torch")
if os.environ.get("KERAS_BACKEND") == "tensorflow":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from .tf_compat import load_triton_first  # noqa: E402

load_triton_first()  # keras on jax / tensorflow imports tensorflow: triton after it segfaults (see tf_compat)

import numpy as np  # noqa: E402

import keras  # noqa: E402  (ImportError here -> TargetUnavailable in the registry)

from ..contracts import Inputs  # noqa: E402
from ..errors import TargetUnavailable  # noqa: E402
from ._base import TargetSpec, layout_fits, relayout  # noqa: E402

BACKEND: str = keras.backend.backend()
BACKENDS = ("torch", "jax", "tensorflow")
# built-in name prefix per backend, and the environment a process needs to run that backend
PREFIX = {"torch": "keras", "jax": "keras[jax]", "tensorflow": "keras[tensorflow]"}
BACKEND_ENV: Dict[str, Dict[str, str]] = {
    "torch": {"KERAS_BACKEND": "torch"},
    "jax": {"KERAS_BACKEND": "jax", "JAX_ENABLE_X64": "1"},
    "tensorflow": {"KERAS_BACKEND": "tensorflow"},
}
if BACKEND not in BACKENDS:
    raise ImportError(f"the keras adapter supports the backends {', '.join(BACKENDS)}, but keras runs on "
                      f"{BACKEND!r}")
if BACKEND == "jax":
    import jax  # noqa: E402
    jax.config.update("jax_enable_x64", True)  # float64 layers stay float64 (process-wide JAX setting)

Factory = Callable[..., Any]
_DTYPES = (np.float16, "bfloat16", np.float32, np.float64)
_SEED_MOD = 2 ** 31


def _np_dtype(d: Any) -> Any:
    if isinstance(d, str) and d == "bfloat16":
        import ml_dtypes
        return ml_dtypes.bfloat16
    return np.dtype(d).type


# ------------------------------------------------------------------------------ per-backend plumbing

class _TorchOps:
    """numpy <-> torch tensors on the device Keras uses; torch autograd."""

    def __init__(self) -> None:
        import torch
        self.torch = torch

    def device(self) -> str:
        try:
            from keras.src.backend.torch.core import get_device
            return str(get_device())
        except Exception:  # noqa: BLE001 - private helper moved: same rule as Keras' own default
            return "cuda" if self.torch.cuda.is_available() else "cpu"

    def to_tensor(self, a: np.ndarray, layout: str) -> Any:
        """Same logical values as ``a`` (same dtype), in the memory layout asked for."""
        torch = self.torch
        a = np.asarray(a)
        dev = self.device()
        if a.dtype.name == "bfloat16":  # torch cannot read ml_dtypes arrays: via float32 (exact)
            t = torch.tensor(np.ascontiguousarray(a.astype(np.float32)), device=dev).to(torch.bfloat16)
        else:
            t = torch.tensor(np.ascontiguousarray(a), device=dev)
        if layout == "contiguous" or a.ndim < 2:
            return t
        if layout == "transposed":  # axes reversed in memory: a non-contiguous permuted view
            rev = tuple(reversed(range(a.ndim)))
            return t.permute(rev).contiguous().permute(rev)
        if layout == "strided":     # every other element of a buffer twice as long on the last axis
            big = torch.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype=t.dtype, device=dev)
            big[..., ::2] = t
            return big[..., ::2]
        if layout == "channels_last" and a.ndim in (4, 5):
            fmt = torch.channels_last if a.ndim == 4 else torch.channels_last_3d
            return t.contiguous(memory_format=fmt)
        raise ValueError(f"layout={layout!r}, but should be one of contiguous, transposed, strided, "
                         "channels_last (rank 4 or 5)")

    def to_numpy(self, t: Any) -> np.ndarray:
        """A numpy copy of the output, in the output's own dtype (bfloat16 via ml_dtypes)."""
        torch = self.torch
        if isinstance(t, torch.Tensor):
            t = t.detach().cpu()
            if t.dtype == torch.bfloat16:
                return t.float().numpy().astype(_np_dtype("bfloat16"))
            return t.numpy().copy()
        return np.array(keras.ops.convert_to_numpy(t), copy=True)

    def forward(self, layer: Any, args: List[Any], training: bool, cache: Optional[dict] = None) -> Any:
        with self.torch.no_grad():
            return layer(*args, training=training)

    def forward_backward(self, layer: Any, inputs: Inputs, grad_out: np.ndarray,
                         cache: Optional[dict] = None, layout: str = "contiguous") -> Tuple[Any, List[Any]]:
        torch = self.torch
        args = [self.to_tensor(a, _fit(layout, a)).requires_grad_(True) for a in inputs]
        y = layer(*args, training=True)
        weights = [w.value for w in getattr(layer, "trainable_weights", [])]
        wrt = args + [w for w in weights if isinstance(w, torch.Tensor) and w.requires_grad]
        g = np.asarray(grad_out)  # in its own dtype (bfloat16 via to_tensor): a no-op cast keeps the layout
        g = self.to_tensor(g, _fit(layout, g)).to(device=y.device, dtype=y.dtype)
        if y.requires_grad:
            grads = torch.autograd.grad(y, wrt, grad_outputs=g, allow_unused=True)
        else:  # e.g. rate=1 returns zeros_like(x), detached from x: the gradient is zero
            grads = (None,) * len(wrt)
        return y, [torch.zeros_like(t) if gr is None else gr for t, gr in zip(wrt, grads)]


def _fit(layout: str, a: Any) -> str:
    """``layout`` where it exists at ``a``'s rank, else contiguous (channels_last on a 2-D array)."""
    return layout if layout_fits(layout, np.ndim(a)) else "contiguous"


class _JaxOps:
    """numpy -> ``jnp`` arrays; gradients by ``jax.vjp`` over ``layer.stateless_call`` (the
    layer's seed state threads through and is written back, as a training step would)."""

    def __init__(self) -> None:
        import jax
        import jax.numpy as jnp
        self.jax, self.jnp = jax, jnp

    def to_tensor(self, a: np.ndarray, layout: str) -> Any:
        return self.jnp.asarray(relayout(np.asarray(a), "contiguous" if np.ndim(a) == 0 else layout))

    def to_numpy(self, t: Any) -> np.ndarray:
        return np.array(t, copy=True)

    @staticmethod
    def _build(layer: Any, args: List[Any]) -> None:
        if not layer.built:  # stateless_call needs the variables: build as the first call would
            layer.build(args[0].shape if len(args) == 1 else [a.shape for a in args])

    def _stateless(self, layer: Any, cache: Optional[dict]) -> Callable[..., Any]:
        """``(tv, ntv, *xs, training) -> (y, new ntv)``; ``jax.jit`` of it when ``cache`` is given:
        the path Keras compiles for ``fit`` on jax. The compiled function takes every variable as
        an argument, so one trace per compute dtype serves the layers rebuilt at each ``seed()``
        (same factory and parameters: same structure), as one trace serves a training run."""
        def fn(tv: List[Any], ntv: List[Any], *xs: Any, training: bool) -> Tuple[Any, List[Any]]:
            return layer.stateless_call(tv, ntv, *xs, training=training)
        if cache is None:
            return fn
        key = ("jit", layer.compute_dtype)
        if key not in cache:
            cache[key] = self.jax.jit(fn, static_argnames=("training",))
        return cache[key]

    def forward(self, layer: Any, args: List[Any], training: bool, cache: Optional[dict] = None) -> Any:
        if cache is None:
            return layer(*args, training=training)
        self._build(layer, args)
        y, new_state = self._stateless(layer, cache)([v.value for v in layer.trainable_variables],
                                                     [v.value for v in layer.non_trainable_variables], *args,
                                                     training=training)
        for var, value in zip(layer.non_trainable_variables, new_state):
            var.assign(value)
        return y

    def forward_backward(self, layer: Any, inputs: Inputs, grad_out: np.ndarray,
                         cache: Optional[dict] = None, layout: str = "contiguous") -> Tuple[Any, List[Any]]:
        jax = self.jax
        args = [self.to_tensor(a, layout) for a in inputs]
        self._build(layer, args)
        trainable = [v.value for v in layer.trainable_variables]
        state = [v.value for v in layer.non_trainable_variables]
        call = self._stateless(layer, cache)

        def f(xs: List[Any], tv: List[Any]) -> Tuple[Any, List[Any]]:
            y, new_state = call(tv, state, *xs, training=True)
            return y, new_state

        y, vjp, new_state = jax.vjp(f, args, trainable, has_aux=True)
        for var, value in zip(layer.non_trainable_variables, new_state):
            var.assign(value)
        dxs, dws = vjp(self.to_tensor(np.asarray(grad_out, np.float64), layout).astype(y.dtype))
        return y, list(dxs) + list(dws)


class _TFOps:
    """numpy -> ``tf.Tensor`` (dtype kept); gradients by ``tf.GradientTape``."""

    def __init__(self) -> None:
        import tensorflow as tf
        self.tf = tf

    def to_tensor(self, a: np.ndarray, layout: str) -> Any:
        return self.tf.constant(relayout(np.asarray(a), "contiguous" if np.ndim(a) == 0 else layout))

    def to_numpy(self, t: Any) -> np.ndarray:
        return np.array(t.numpy() if hasattr(t, "numpy") else t, copy=True)

    def _call(self, layer: Any, cache: Optional[dict]) -> Callable[..., Any]:
        """The layer, or a ``tf.function`` of its call (cached per layer) when ``cache`` is given:
        the path Keras compiles for ``fit`` on tensorflow."""
        if cache is None:
            return layer
        if id(layer) not in cache:
            cache[id(layer)] = (layer, self.tf.function(lambda *xs, training: layer(*xs, training=training)))
        return cache[id(layer)][1]

    def forward(self, layer: Any, args: List[Any], training: bool, cache: Optional[dict] = None) -> Any:
        return self._call(layer, cache)(*args, training=training)

    def forward_backward(self, layer: Any, inputs: Inputs, grad_out: np.ndarray,
                         cache: Optional[dict] = None, layout: str = "contiguous") -> Tuple[Any, List[Any]]:
        tf = self.tf
        args = [self.to_tensor(a, layout) for a in inputs]
        with tf.GradientTape() as tape:
            for t in args:
                tape.watch(t)
            y = self._call(layer, cache)(*args, training=True)
        wrt = args + [w.value for w in layer.trainable_weights]
        g = tf.cast(self.to_tensor(np.asarray(grad_out, np.float64), layout), y.dtype)
        grads = tape.gradient(y, wrt, output_gradients=g, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return y, list(grads)


_OPS: Dict[str, Any] = {}


def _ops() -> Any:
    if BACKEND not in _OPS:
        _OPS[BACKEND] = {"torch": _TorchOps, "jax": _JaxOps, "tensorflow": _TFOps}[BACKEND]()
    return _OPS[BACKEND]


def _compute_dtype(layer: Any) -> Optional[str]:
    return getattr(layer, "compute_dtype", None)


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    return name in sig.parameters or any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())


def _dtype_key(d: Any) -> str:
    return d if isinstance(d, str) else np.dtype(d).name


class KerasTarget:
    """A Keras layer built by ``factory(**params, seed=..., dtype=...)`` on this process's backend.

    ``seed`` and ``dtype`` are passed only if the factory's signature accepts them. One
    layer is built per input dtype (``dtype=<input dtype>``) when the factory honours
    ``dtype``; otherwise one layer serves every input and ``dtypes`` is its compute dtype.
    ``backend`` (default: this process's) must be the backend keras runs on here. ``compiled``
    calls the layer as Keras' ``fit`` compiles it: ``jax.jit`` of ``stateless_call`` (seed state
    threaded through and written back) on jax, a ``tf.function`` on tensorflow; torch: no.
    """

    has_gradients = True

    def __init__(self, factory: Factory, params: Mapping[str, Any], dtypes: Optional[Tuple[Any, ...]] = None,
                 layouts: Tuple[str, ...] = ("contiguous",), backend: Optional[str] = None,
                 compiled: bool = False) -> None:
        if backend is not None and backend != BACKEND:
            env = " ".join(f"{k}={v}" for k, v in BACKEND_ENV[backend].items())
            raise TargetUnavailable(f"this target runs Keras on the {backend} backend, but keras in this process "
                                    f"runs on {BACKEND!r} (start the process with {env})")
        self.backend = BACKEND
        if compiled and BACKEND == "torch":
            raise ValueError("compiled=True runs jax.jit / tf.function: not on the torch backend")
        self.compiled = compiled
        self._cache: Optional[dict] = {} if compiled else None
        self.ops = _ops()
        self.factory, self.params = factory, dict(params)
        self.layouts = tuple(layouts)
        self._takes_seed = _accepts(factory, "seed")
        self._takes_dtype = _accepts(factory, "dtype")
        self._seed: Optional[int] = None
        self._layers: Dict[str, Any] = {}
        self.layer = self._layer("float32")  # built now: invalid rates raise here, as in Keras
        if self._takes_dtype and _compute_dtype(self._layer("float64")) != "float64":
            self._takes_dtype = False                    # e.g. **kwargs that drop dtype: one layer for all
            self._layers = {"*": self.layer}
        if dtypes is None:
            dtypes = _DTYPES if self._takes_dtype else (_compute_dtype(self.layer) or "float32",)
        self.dtypes = tuple(_np_dtype(d) for d in dtypes)

    def _layer(self, dtype: Any) -> Any:
        key = _dtype_key(dtype) if self._takes_dtype else "*"
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
        if self.compiled and self.backend != "jax":  # a tf.function captures its layer: trace the new one
            self._cache = {}
        self.layer = self._layer("float32")

    def forward(self, inputs: Inputs, *, training: bool = True, layout: str = "contiguous") -> np.ndarray:
        args = [self.ops.to_tensor(a, layout) for a in inputs]
        layer = self._layer(np.asarray(inputs[0]).dtype)
        return self.ops.to_numpy(self.ops.forward(layer, args, training, self._cache))

    @property
    def strided_tensors(self) -> bool:
        """Whether a layout reaches the backend's tensors (torch: strided views; jax / TF: the
        host array only)."""
        return self.backend == "torch"

    def forward_backward(self, inputs: Inputs, grad_out: np.ndarray, *,
                         layout: str = "contiguous") -> Tuple[np.ndarray, Tuple[np.ndarray, ...]]:
        """Training call, then d sum(grad_out * y) / d(inputs, trainable weights) by the
        backend's own differentiation (a quantity the output does not depend on gets zeros);
        inputs and grad_out in ``layout`` (see the module docstring's Layouts)."""
        layer = self._layer(np.asarray(inputs[0]).dtype)
        y, grads = self.ops.forward_backward(layer, inputs, grad_out, self._cache, layout)
        return self.ops.to_numpy(y), tuple(self.ops.to_numpy(g) for g in grads)


def keras_spec(name: str, variant: str, factory: Factory, params: Optional[Mapping[str, Any]] = None,
               **kw: Any) -> TargetSpec:
    """A spec for a Keras layer built by ``factory(**canonical_params, seed=..., dtype=...)``.

    The factory receives every canonical parameter of the variant as a keyword (``p=0.5``;
    for spatial dropout also ``channels_last``) and should pass ``seed`` and ``dtype`` on to
    the layer; either may be left out of its signature (seeding then relies on
    ``keras.utils.set_random_seed``, and the layer keeps its own dtype policy). It may raise
    for values the layer rejects. ``backend`` in ``kw`` pins the Keras backend (the spec then
    carries :data:`BACKEND_ENV` of it, and building it in a process on another backend raises
    TargetUnavailable); without it the layer runs on this process's backend. ``dtypes`` /
    ``layouts`` go to :class:`KerasTarget` (layouts default by the probe's rank); the rest to
    :class:`TargetSpec`.
    """
    backend = kw.pop("backend", None)
    compiled = bool(kw.pop("compiled", False))
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}, but should be one of {', '.join(BACKENDS)}")
    dtypes = kw.pop("dtypes", None)
    layouts = kw.pop("layouts", None)
    if layouts is None:
        from ..variants import get_contract
        contract = kw.get("contract") or get_contract(variant)
        rank = len(kw.get("shape") or contract.default_shape)
        layouts = ("contiguous", "transposed", "strided") + (("channels_last",) if rank in (4, 5) else ())
        if (backend or BACKEND) != "torch":  # no strides: only numpy-side layouts reach the conversion
            layouts = tuple(lay for lay in layouts if lay != "channels_last")
    dtypes = None if dtypes is None else tuple(dtypes)
    layouts = tuple(layouts)
    if backend is not None:
        kw.setdefault("env", dict(BACKEND_ENV[backend]))
    return TargetSpec(name=name, variant=variant,
                      build=lambda prm: KerasTarget(factory, prm, dtypes, layouts, backend, compiled),
                      params=dict(params or {}), **kw)


# ------------------------------------------------------------------------------ built-in targets

L = keras.layers
_COMMON = ("Keras layers autocast inputs to their compute dtype; the adapter builds each layer with "
           "dtype=<input dtype> so dtype is preserved.",
           "seed(s) calls keras.utils.set_random_seed and rebuilds the layer with seed=s mod 2**31 (Keras "
           "seeds are int32).")
_SEEDING = {
    "torch": "Keras on torch: call k of a layer seeded s draws from torch.Generator.manual_seed(s + k).",
    "jax": "Keras on jax: call k of a layer seeded s draws with the raw threefry key [s, k]; x64 mode on.",
    "tensorflow": "Keras on tensorflow: call k of a layer seeded s draws stateless TF ops with seed [s, k].",
}
SEEDING = _SEEDING
"""Per backend: how call k of a layer seeded s draws (the scan's in-situ specs quote it)."""
_RANDOM_PATH = {"torch": "torch.bernoulli", "jax": "jax.random.bernoulli",
                "tensorflow": "tf.random.stateless_uniform"}


def _common(backend: str) -> Tuple[str, ...]:
    return _COMMON + (_SEEDING[backend],)


def _dropout(backend: str) -> TargetSpec:
    return keras_spec(f"{PREFIX[backend]}:Dropout", "dropout", lambda p, **k: L.Dropout(float(p), **k),
                      backend=backend, conventions=("canonical p -> Keras rate",) + _common(backend),
                      description="keras.layers.Dropout(rate, seed=s): Bernoulli keep mask, kept / (1 - rate); "
                                  f"the seeded path of keras.random.dropout on {backend} "
                                  f"({_RANDOM_PATH[backend]}).")


def _dropout_compiled(backend: str) -> TargetSpec:
    how = {"jax": ("jit", "jax.jit of layer.stateless_call (the seed state an argument, written back after each "
                          "call)"),
           "tensorflow": ("function", "a tf.function of the layer call (the seed state a tf.Variable updated in "
                                      "the graph)")}[backend]
    return keras_spec(f"{PREFIX[backend]}:Dropout[{how[0]}]", "dropout", lambda p, **k: L.Dropout(float(p), **k),
                      backend=backend, compiled=True,
                      conventions=("canonical p -> Keras rate", f"called through {how[1]}, as model.fit compiles "
                                   "it: one trace must still draw a fresh mask per call") + _common(backend),
                      description=f"keras.layers.Dropout(rate, seed=s) called through {how[1]}.")


def _dropout_unseeded(backend: str) -> TargetSpec:
    global_rng = {"torch": "i.e. torch.manual_seed", "jax": "Keras' global SeedGenerator",
                  "tensorflow": "Keras' global SeedGenerator and tf.random.set_seed"}[backend]
    fast = {"torch": "on torch this is the fast path torch.nn.functional.dropout on the global torch RNG.",
            "jax": "on jax it draws from Keras' global SeedGenerator (reseeded by set_random_seed).",
            "tensorflow": "on tensorflow it draws from Keras' global SeedGenerator (reseeded by "
                          "set_random_seed)."}[backend]
    return keras_spec(f"{PREFIX[backend]}:Dropout[unseeded]", "dropout",
                      lambda p, dtype: L.Dropout(float(p), dtype=dtype), backend=backend,
                      conventions=("canonical p -> Keras rate", "seed=None: seeded only through "
                                   f"keras.utils.set_random_seed(s mod 2**31), {global_rng}") + _COMMON[:1],
                      description="keras.layers.Dropout(rate) without a seed: " + fast)


def _noise_shape(backend: str) -> TargetSpec:
    def make(p: float, batch_first: bool = True, **k: Any) -> Any:
        return L.Dropout(float(p), noise_shape=(None, 1, None) if batch_first else (1, None, None), **k)
    return keras_spec(f"{PREFIX[backend]}:Dropout[noise_shape]", "variational_dropout", make, {"batch_first": True},
                      backend=backend,
                      conventions=("noise_shape=(None, 1, None) on (N, T, H): None takes the input's size, 1 shares "
                                   "one draw along time, so one mask per (n, h) = variational_dropout with "
                                   "batch_first=True (batch_first=False -> noise_shape=(1, None, None))",)
                      + _common(backend),
                      description="keras.layers.Dropout(rate, noise_shape=(None, 1, None)): locked dropout.")


def _spatial(dims: int, backend: str) -> List[TargetSpec]:
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
    name = f"{PREFIX[backend]}:SpatialDropout{dims}D"
    conv = ("canonical p -> Keras rate", "channels_last=True is Keras' default data_format") + _common(backend)
    specs = [keras_spec(name, variant, make, {"channels_last": True}, shape=last, conventions=conv, backend=backend,
                        description=f"keras.layers.SpatialDropout{dims}D(rate): one draw per (sample, channel), "
                                    "channels last.")]
    if first is not None:
        specs.append(keras_spec(f"{name}[channels_first]", variant, make, {"channels_last": False}, shape=first,
                                backend=backend,
                                conventions=("canonical p -> Keras rate", "data_format='channels_first'")
                                + _common(backend),
                                description=f"keras.layers.SpatialDropout{dims}D(rate, data_format="
                                            "'channels_first')."))
    return specs


def _gaussian(backend: str) -> TargetSpec:
    return keras_spec(f"{PREFIX[backend]}:GaussianDropout", "gaussian_dropout",
                      lambda p, **k: L.GaussianDropout(float(p), **k), backend=backend,
                      conventions=("canonical p -> Keras rate; Keras multiplies by N(1, sqrt(rate/(1-rate)))",)
                      + _common(backend),
                      description="keras.layers.GaussianDropout(rate): accepts rate=1 at construction and raises "
                                  "ZeroDivisionError when called in training.")


def _alpha(backend: str) -> TargetSpec:
    return keras_spec(f"{PREFIX[backend]}:AlphaDropout", "alpha_dropout", lambda p, **k: L.AlphaDropout(float(p), **k),
                      backend=backend,
                      conventions=("canonical p -> Keras rate; same formula as the contract: alpha' = "
                                   "-1.6732632423543772 * 1.0507009873554805, a = ((1-p)(1+p alpha'^2))^-1/2, "
                                   "b = -a alpha' p, kept where uniform >= rate",) + _common(backend),
                      description="keras.layers.AlphaDropout(rate): accepts rate=1 at construction but the call "
                                  "raises ZeroDivisionError (a is 0 ** -0.5) instead of returning zeros; its "
                                  "docstring's 'multiplicative noise with std sqrt(rate/(1-rate))' is copied from "
                                  "GaussianDropout and does not describe the layer.")


def _targets(backend: str) -> Dict[str, Callable[[], Any]]:
    pre = PREFIX[backend]
    names: Dict[str, Callable[[], Any]] = {
        f"{pre}:Dropout": lambda: _dropout(backend),
        f"{pre}:Dropout[unseeded]": lambda: _dropout_unseeded(backend),
        f"{pre}:Dropout[noise_shape]": lambda: _noise_shape(backend),
        f"{pre}:SpatialDropout1D": lambda: _spatial(1, backend),
        f"{pre}:SpatialDropout2D": lambda: _spatial(2, backend),
        f"{pre}:SpatialDropout3D": lambda: _spatial(3, backend),
        f"{pre}:GaussianDropout": lambda: _gaussian(backend),
        f"{pre}:AlphaDropout": lambda: _alpha(backend),
    }
    if backend == "jax":
        names[f"{pre}:Dropout[jit]"] = lambda: _dropout_compiled(backend)
    if backend == "tensorflow":
        names[f"{pre}:Dropout[function]"] = lambda: _dropout_compiled(backend)
    return names


# every backend's built-ins: specs of another backend than this process's carry the env to run in
TARGETS: Dict[str, Callable[[], Any]] = {name: make for b in BACKENDS for name, make in _targets(b).items()}

__all__ = ["BACKEND", "BACKENDS", "BACKEND_ENV", "KerasTarget", "PREFIX", "SEEDING", "TARGETS", "keras_spec"]
