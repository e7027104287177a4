"""Adapter for TensorFlow: ``tf.nn.dropout``, ``tf.nn.experimental.stateless_dropout`` and a
user's ``tf.Module`` (including tf-keras 2 layers, which are ``tf.Module`` s), eagerly and
inside ``tf.function``.

Translation only: numpy probes -> ``tf.constant`` (dtype kept; bfloat16 through ml_dtypes),
``training`` -> whether the op is applied, gradients from ``tf.GradientTape``. Importing this
module imports tensorflow (an ImportError if it is missing), triton first where torch's triton
is installed (:mod:`.tf_compat`), and sets ``TF_CPP_MIN_LOG_LEVEL=2`` if unset (TF's C++ info
lines otherwise flood stderr). TensorFlow imports keras, so with ``KERAS_BACKEND`` unset keras
then runs on its default backend, tensorflow.

Seeding, stateful ops (``tf.nn.dropout``). TF derives each stateful op's Philox key from a
(global seed, op seed) pair. ``seed(s)`` calls ``tf.random.set_seed(s)``, which sets the global
seed *and* resets the counter from which eager ops without an op seed take theirs, so the same
seed reproduces the same sequence of calls and each eager call draws with a new op seed
(a fresh mask). ``tf.nn.dropout(..., seed=k)`` with a fixed op seed still draws a fresh mask
per eager call (TF caches one kernel per seed pair and its state advances). Inside a
``tf.function`` the op's seeds are fixed when it is traced and its kernel keeps its state
across calls, so calls draw fresh masks; ``tf.random.set_seed`` restarts that state too (TF
2.21, tested). ``seed(s)`` also rebuilds the layer (a new ``tf.function``, a re-trace), as a
user re-running a program does, so Python state a layer closes over starts afresh as well.
TF seeds are taken modulo 2**31.

Seeding, stateless ops. ``stateless_dropout(x, rate, seed)``'s mask is a pure function of
the seed pair. The built-in target draws call ``k`` after ``seed(s)`` with the pair ``[s, k]``
(TF hashes the pair into a Philox key and counter, so pairs are independent); inside a
``tf.function`` the pair is an argument, so one trace serves every call and each call must
still draw the mask of its own pair. The ``[generator]`` target follows TF's guide instead:
a ``tf.random.Generator.from_seed(s)`` captured by the ``tf.function`` makes each call's pair
with ``make_seeds()``.

Eval mode. ``tf.nn.dropout`` has no training flag: eval is the caller not applying the op
(the identity), so the eval check says nothing about TF and is marked not applicable for the
functional targets. User modules are called ``module(x, training=...)``.

Layouts. TF tensors have no user-visible memory layout; ``transposed`` and ``strided`` hand
``tf.constant`` a non-contiguous numpy array (Fortran order, every other element of a wider
buffer), which checks that the host-to-device copy keeps every value in place.
"""
from __future__ import annotations

import inspect
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from .tf_compat import load_triton_first

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
load_triton_first()  # before tensorflow: triton loaded after TF's LLVM segfaults (see tf_compat)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402  (ImportError here -> TargetUnavailable in the registry)

from ..contracts import Inputs  # noqa: E402
from ..errors import InvalidArgument  # noqa: E402
from ._base import TargetSpec, numpy_dtype, relayout  # noqa: E402

DTYPES = tuple(numpy_dtype(n) for n in ("float16", "bfloat16", "float32", "float64"))
LAYOUTS = ("contiguous", "transposed", "strided")
_SEED_MOD = 2 ** 31
_EVAL_NA = {"eval_mode_deterministic_and_exact": "tf.nn dropout ops have no training flag: eval mode is the caller "
                                                 "not applying the op (the identity), nothing of TF to check"}

# A layer here is any callable ``layer(*tensors, training=bool) -> tf.Tensor``; ``Make`` builds
# one for a seed (``None`` before the first ``seed()``).
Make = Callable[[Optional[int]], Any]


def to_tensor(a: np.ndarray, layout: str = "contiguous") -> tf.Tensor:
    """A tensor with ``a``'s values and dtype, converted from the numpy layout asked for."""
    a = np.asarray(a)
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r}, but should be one of {', '.join(LAYOUTS)}")
    return tf.constant(relayout(a, layout) if a.ndim else a)


def to_numpy(t: Any) -> np.ndarray:
    """The tensor's values as a numpy copy in its own dtype (bfloat16 as ml_dtypes.bfloat16)."""
    return np.array(t.numpy() if hasattr(t, "numpy") else t, copy=True)


def _variables(layer: Any) -> List[tf.Variable]:
    return [v for v in getattr(layer, "trainable_variables", ()) if isinstance(v, tf.Variable)]


class TFTarget:
    """A TF layer rebuilt by ``make(seed)`` on every ``seed()`` (after ``tf.random.set_seed``)."""

    has_gradients = True
    strided_tensors = False  # tf tensors have no strides: a layout is the host array's only

    def __init__(self, make: Make, dtypes: Tuple[Any, ...] = DTYPES, layouts: Tuple[str, ...] = LAYOUTS) -> None:
        self.make = make
        self.dtypes = tuple(dtypes)
        self.layouts = tuple(layouts)
        self.layer = make(None)  # built now: parameters the layer rejects at construction raise here

    def seed(self, seed: int) -> None:
        """``tf.random.set_seed(s)`` and a rebuilt layer (a fresh ``tf.function`` trace); ``s =
        seed mod 2**31``."""
        s = int(seed) % _SEED_MOD
        tf.random.set_seed(s)
        self.layer = self.make(s)

    def _call(self, args: List[tf.Tensor], training: bool) -> tf.Tensor:
        """``layer(*args, training=...)``; an error raised while tracing a tf.function is re-raised
        (same type) with its last line, the original error, instead of TF's "in user code:" trace."""
        try:
            return self.layer(*args, training=training)
        except (ValueError, TypeError) as exc:
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            if len(lines) > 1 and lines[0].startswith("in user code"):
                raise type(exc)(f"{lines[-1]} (raised while tracing a tf.function)") from exc
            raise

    def forward(self, inputs: Inputs, *, training: bool = True, layout: str = "contiguous") -> np.ndarray:
        args = [to_tensor(a, layout) for a in inputs]
        return to_numpy(self._call(args, training))

    def forward_backward(self, inputs: Inputs, grad_out: np.ndarray, *,
                         layout: str = "contiguous") -> Tuple[np.ndarray, Tuple[np.ndarray, ...]]:
        """One training call under ``tf.GradientTape``: d sum(grad_out * y) / d(inputs, then the
        layer's trainable variables); zeros where the output does not depend on one. Inputs and
        grad_out are converted from host arrays in ``layout``."""
        args = [to_tensor(a, layout) for a in inputs]
        with tf.GradientTape() as tape:
            for t in args:
                tape.watch(t)
            y = self._call(args, True)
        wrt = args + _variables(self.layer)
        g = tf.cast(to_tensor(np.asarray(grad_out, np.float64), layout), y.dtype)
        grads = tape.gradient(y, wrt, output_gradients=g, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return to_numpy(y), tuple(to_numpy(gr) for gr in grads)


def tf_spec(name: str, variant: str, make: Callable[..., Make], params: Optional[Mapping[str, Any]] = None,
            **kw: Any) -> TargetSpec:
    """A spec whose ``build(prm)`` is ``TFTarget(make(**prm))``: ``make`` takes the canonical
    parameters and returns ``Make`` (seed -> layer). ``dtypes`` / ``layouts`` in ``kw`` go to
    :class:`TFTarget`; the rest to :class:`TargetSpec`."""
    target_kw = {k: tuple(kw.pop(k)) for k in ("dtypes", "layouts") if k in kw}
    return TargetSpec(name=name, variant=variant, build=lambda prm: TFTarget(make(**dict(prm)), **target_kw),
                      params=dict(params or {}), **kw)


# ------------------------------------------------------------------------------ user modules

def _takes(fn: Callable[..., Any], name: str) -> bool:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    return name in sig.parameters or any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())


def is_tf_module(obj: Any) -> bool:
    """True for a ``tf.Module`` (tf-keras 2 layers included); Keras 3 layers are not."""
    return isinstance(obj, tf.Module)


def module_spec(name: str, variant: str, factory: Callable[..., Any], params: Optional[Mapping[str, Any]] = None,
                shape: Optional[Tuple[int, ...]] = None) -> TargetSpec:
    """The spec of the ``tf.Module`` that ``factory(**params[, seed=s])`` returns.

    The module is called ``module(*inputs, training=bool)``; InvalidArgument if its ``__call__``
    takes no ``training``. ``seed(s)`` calls ``tf.random.set_seed(s)`` and rebuilds the module,
    passing ``seed=s`` when the factory accepts it (a module drawing from its own
    ``tf.random.Generator.from_seed(seed)`` or stateless seeds then reproduces too).
    """
    takes_seed = _takes(factory, "seed")
    probe = factory(**dict(params or {}))
    if not _takes(probe.__call__, "training"):
        raise InvalidArgument(f"{name} returned a {type(probe).__name__} whose __call__ takes no 'training' "
                              "keyword: a tf.Module target is called as module(x, training=True/False)")

    def make(**prm: Any) -> Make:
        return lambda s: factory(**prm, **({"seed": s} if takes_seed and s is not None else {}))

    return tf_spec(name, variant, make, params, shape=shape,
                   conventions=("called module(x, training=...); seed(s) = tf.random.set_seed(s) and a rebuilt "
                                "module" + (" with seed=s" if takes_seed else ""),))


# ------------------------------------------------------------------------------ built-in targets

def _nn_dropout(p: float, function: bool, noise_shape: Optional[Callable[[tf.Tensor], Any]] = None) -> Make:
    """``tf.nn.dropout(x, rate=p)`` with no op seed (seeded by ``tf.random.set_seed``)."""
    def make(seed: Optional[int]) -> Any:
        def call(x: tf.Tensor, training: bool) -> tf.Tensor:
            if not training:
                return x
            ns = None if noise_shape is None else noise_shape(x)
            return tf.nn.dropout(x, rate=p, noise_shape=ns)
        fn = tf.function(call) if function else call
        return lambda x, training=True: fn(x, training=bool(training))
    return make


class _StatelessDropout:
    """Call ``k`` after ``seed(s)`` is ``stateless_dropout(x, p, seed=[s, k])``; the pair is an
    argument of the (optional) ``tf.function``, so one trace serves every call."""

    def __init__(self, p: float, seed: Optional[int], function: bool) -> None:
        self.p, self.s, self.k = p, 0 if seed is None else seed, 0

        def call(x: tf.Tensor, pair: tf.Tensor) -> tf.Tensor:
            return tf.nn.experimental.stateless_dropout(x, rate=self.p, seed=pair)
        self.fn = tf.function(call) if function else call

    def __call__(self, x: tf.Tensor, training: bool = True) -> tf.Tensor:
        if not training:
            return x
        pair = tf.constant([self.s, self.k], dtype=tf.int64)
        self.k += 1
        return self.fn(x, pair)


def _generator_dropout(p: float) -> Make:
    """TF's guide: a ``tf.random.Generator`` captured by a ``tf.function`` makes each call's
    seed pair for the stateless op."""
    def make(seed: Optional[int]) -> Any:
        gen = tf.random.Generator.from_seed(0 if seed is None else seed)

        @tf.function
        def fn(x: tf.Tensor) -> tf.Tensor:
            pair = gen.make_seeds(1)[:, 0]
            return tf.nn.experimental.stateless_dropout(x, rate=p, seed=pair)
        return lambda x, training=True: fn(x) if training else x
    return make


_RATE = ("canonical p -> TF rate; TF documents rate in [0, 1) and raises ValueError for rate = 1 (the contract "
         "wants zeros): p = 1 is an ERROR, not a FAIL",)
_SEED = "seed(s) = tf.random.set_seed(s mod 2**31) (global seed; resets the eager op-seed counter)"


def _dropout(function: bool) -> TargetSpec:
    suffix = "[function]" if function else ""
    where = ("inside a tf.function re-traced at every seed(): the op's seeds are fixed at trace time, its kernel "
             "state advances per call" if function else "eagerly: each call takes a new op seed from the counter")
    return tf_spec(f"tf:nn.dropout{suffix}", "dropout", lambda p: _nn_dropout(float(p), function),
                   not_applicable=_EVAL_NA, conventions=_RATE + (_SEED, where),
                   description="tf.nn.dropout(x, rate): stateful uniform >= rate kept, scaled 1/(1 - rate), "
                               + ("in a tf.function." if function else "eager."))


def _noise_shape() -> TargetSpec:
    def make(p: float, batch_first: bool = True) -> Make:
        shape = (lambda x: (tf.shape(x)[0], 1, tf.shape(x)[2])) if batch_first else \
            (lambda x: (1, tf.shape(x)[1], tf.shape(x)[2]))
        return _nn_dropout(float(p), False, shape)
    return tf_spec("tf:nn.dropout[noise_shape]", "variational_dropout", make, {"batch_first": True},
                   not_applicable=_EVAL_NA,
                   conventions=_RATE + (_SEED, "noise_shape=(N, 1, H) on (N, T, H): one draw shared along time = "
                                        "variational_dropout with batch_first=True (False -> (1, T, H))"),
                   description="tf.nn.dropout(x, rate, noise_shape=[N, 1, H]): locked dropout.")


def _stateless(function: bool) -> TargetSpec:
    suffix = "[function]" if function else ""
    return tf_spec(f"tf:nn.experimental.stateless_dropout{suffix}", "dropout",
                   lambda p: (lambda s: _StatelessDropout(float(p), s, function)), not_applicable=_EVAL_NA,
                   conventions=_RATE + ("call k after seed(s) uses the seed pair [s mod 2**31, k]"
                                        + (", passed to a tf.function traced once" if function else ""),),
                   description="tf.nn.experimental.stateless_dropout(x, rate, seed=[s, k]): the mask is a pure "
                               "function of the seed pair" + (", in a tf.function." if function else ", eager."))


def _generator() -> TargetSpec:
    return tf_spec("tf:nn.experimental.stateless_dropout[generator]", "dropout",
                   lambda p: _generator_dropout(float(p)), not_applicable=_EVAL_NA,
                   conventions=_RATE + ("seed(s) = tf.random.Generator.from_seed(s mod 2**31), captured by a "
                                        "tf.function that draws each call's pair with make_seeds()",),
                   description="tf.nn.experimental.stateless_dropout with seeds from a tf.random.Generator in a "
                               "tf.function (the pattern of TF's random-numbers guide).")


TARGETS: Dict[str, Callable[[], Any]] = {
    "tf:nn.dropout": lambda: _dropout(False),
    "tf:nn.dropout[function]": lambda: _dropout(True),
    "tf:nn.dropout[noise_shape]": _noise_shape,
    "tf:nn.experimental.stateless_dropout": lambda: _stateless(False),
    "tf:nn.experimental.stateless_dropout[function]": lambda: _stateless(True),
    "tf:nn.experimental.stateless_dropout[generator]": _generator,
}

__all__ = ["DTYPES", "LAYOUTS", "TARGETS", "TFTarget", "is_tf_module", "module_spec", "tf_spec", "to_numpy",
           "to_tensor"]
