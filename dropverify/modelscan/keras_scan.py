"""``dropverify.scan`` of a Keras 3 model or layer, on the backend this process runs (torch, jax or
tensorflow: Keras fixes it at import, ``KERAS_BACKEND``).

Promises:

* discovery walks the layer tree (``layer._layers``, recursively: Sequential, functional,
  subclassed and nested models; a layer reached twice is one site) for ``Dropout``,
  ``SpatialDropout1D/2D/3D``, ``GaussianDropout``, ``AlphaDropout``, ``GaussianNoise`` (subclasses
  included, marked as such), the ``dropout`` / ``recurrent_dropout`` of ``LSTM`` / ``GRU`` /
  ``SimpleRNN`` cells (rate > 0) and ``MultiHeadAttention``'s inner dropout (found as its Dropout
  sub-layer, its rate configured by the attention's ``dropout``);
* the model runs four times (train, eval twice under different ``keras.utils.set_random_seed``
  seeds, train again) with each found layer's ``call`` wrapped to record the ``training`` flag it
  was passed, its input shape and dtype, and whether its output differs from its input; an RNN
  site records whether its cell drew a mask (``get_dropout_mask`` / ``get_recurrent_dropout_mask``).
  Afterwards every wrapper is removed and the model's non-trainable variables (seed-generator
  states, batch-norm statistics), Python's, numpy's and (torch backend) torch's RNG states are
  restored;
* the model-level and per-site exact results, the site table and the report are the torch
  scan's (:func:`.api.assemble`); a layer that drops in eval although it is passed
  ``training=False`` FAILs naming it;
* in situ, a stock layer is verified as a clone from its ``get_config`` at the site's rate, shape
  and dtype, a subclass as the layer instance itself (its seed generators reset per harness seed),
  an RNN's mask through its cell's own mask function (:class:`CellMask`), all through the keras
  adapter (:class:`~dropverify.targets.keras_layers.KerasTarget`).
"""
from __future__ import annotations

import random
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..checks import Settings
from ..errors import InvalidArgument
from .sites import Site
from .layer_sites import (CallLog, describe_arrays, dtype_name, finish, new_site, owner_rate, prepare, run_passes,
                          to_numpy)

STOCK = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout", "AlphaDropout",
         "GaussianNoise")
RNNS = ("LSTM", "GRU", "SimpleRNN")
SEARCHED = ("searched the Keras layer tree for Dropout, SpatialDropout1D/2D/3D, GaussianDropout, AlphaDropout, "
            "GaussianNoise (and subclasses), LSTM / GRU / SimpleRNN with dropout or recurrent_dropout > 0 and "
            "MultiHeadAttention with dropout > 0")


def _stock(layer: Any) -> Optional[Tuple[str, bool]]:
    """(Keras class name, exact class?) of a dropout-family layer or an RNN, else None."""
    for cls in type(layer).__mro__:
        if (cls.__module__ or "").startswith("keras.") and cls.__name__ in STOCK + RNNS:
            return cls.__name__, cls is type(layer)
    return None


def _variant(layer: Any, name: str, rank: int) -> Tuple[Optional[str], Dict[str, Any], str]:
    """(variant, contract params beside p, why none) of a stock layer on a rank-``rank`` input."""
    if name.startswith("SpatialDropout"):
        last = getattr(layer, "data_format", "channels_last") == "channels_last"
        return f"spatial_dropout_{name[-2]}d", {"channels_last": last}, ""
    if name == "GaussianDropout":
        return "gaussian_dropout", {}, ""
    if name == "GaussianNoise":
        return None, {}, "no contract covers additive Gaussian noise (GaussianNoise(stddev)); the exact checks judge it"
    shape = getattr(layer, "noise_shape", None)
    if shape is None:
        return ("alpha_dropout" if name == "AlphaDropout" else "dropout"), {}, ""
    shape = tuple(shape)
    if name == "Dropout" and rank == 3 and shape in ((None, 1, None), (1, None, None)):
        return "variational_dropout", {"batch_first": shape[1] == 1}, ""
    return None, {}, f"no contract covers {name}(noise_shape={shape}) on a rank-{rank} input"


class _Found:
    """A site and how it is recorded: the layer (or the RNN layer), the cell and mask kind for RNNs."""

    def __init__(self, site: Site, layer: Any, name: str, exact: bool, which: Optional[str] = None) -> None:
        self.site, self.layer, self.name, self.exact, self.which = site, layer, name, exact, which


def discover(model: Any) -> List[_Found]:
    """Every dropout-family site of ``model`` (root included), in layer-tree order."""
    found: List[_Found] = []
    seen: set = set()

    def visit(layer: Any, path: str, owner: Any, owner_path: str) -> None:
        if id(layer) in seen:
            return
        seen.add(id(layer))
        got = _stock(layer)
        if got is not None:
            name, exact = got
            kind = f"keras.layers.{name}" + ("" if exact else f" subclass {type(layer).__name__}")
            if name in RNNS:
                cell = layer.cell
                for which in ("dropout", "recurrent_dropout"):
                    rate = float(getattr(cell, which, 0.0) or 0.0)
                    if rate > 0:
                        site = new_site(path, f"{kind} {which}", "dropout", which, rate, library=exact)
                        site.configured_from = f"{path or '(model)'}.{which}"
                        found.append(_Found(site, layer, name, exact, which))
            else:
                attr = "stddev" if name == "GaussianNoise" else "rate"
                if type(owner).__name__ == "MultiHeadAttention":  # its inner Dropout, named by the attention
                    kind = "keras.layers.MultiHeadAttention attention dropout"
                    path = f"{owner_path}.dropout" if owner_path else "dropout"
                site = new_site(path, kind, _variant(layer, name, 0)[0], attr, float(getattr(layer, attr)),
                                library=exact)
                if attr == "rate":
                    owner_rate(site, owner, owner_path)
                found.append(_Found(site, layer, name, exact))
        for child in list(getattr(layer, "_layers", None) or []):
            visit(child, f"{path}.{child.name}" if path else child.name, layer, path)

    visit(model, "", None, "")
    return found


# ------------------------------------------------------------------------------ recording

def _symbolic(x: Any) -> bool:
    """Whether ``x`` is a shape-inference stand-in (a KerasTensor, a torch meta tensor, a jax tracer, a
    TF graph tensor): calls made while Keras builds a model are not calls of the model."""
    import keras
    try:
        from keras.src.backend.common.symbolic_scope import in_symbolic_scope
        if in_symbolic_scope():
            return True
    except ImportError:  # a Keras without it: the type tests below
        pass
    if isinstance(x, keras.KerasTensor) or getattr(getattr(x, "device", None), "type", None) == "meta":
        return True
    name = type(x).__name__
    return "Tracer" in name or (name in ("Tensor", "SymbolicTensor") and not hasattr(x, "numpy"))


def _wrap(found: _Found, log: CallLog) -> List[Tuple[Any, str]]:
    """Instance-level wrappers recording each call; returns (object, attribute) to remove after."""
    layer, site = found.layer, found.site
    if found.which is None:
        attr = site.module_kind.p_attr
        orig = layer.call

        def call(*args: Any, **kwargs: Any) -> Any:
            y = orig(*args, **kwargs)
            flag = kwargs.get("training")
            x = args[0] if args else kwargs.get("inputs")
            if not _symbolic(x):
                log.record(site, float(getattr(layer, attr)), None if flag is None else bool(flag), x, y,
                           {"via": f"{type(layer).__name__}.call"})
            return y
        object.__setattr__(layer, "call", call)
        return [(layer, "call")]
    cell = layer.cell
    getter = "get_dropout_mask" if found.which == "dropout" else "get_recurrent_dropout_mask"
    seen: Dict[str, Any] = {}
    orig_get, orig_cell, orig_call = getattr(cell, getter), cell.call, layer.call

    def get(step: Any) -> Any:
        mask = orig_get(step)
        if mask is not None and "shape" not in seen and not _symbolic(step):
            seen["shape"], seen["dtype"] = tuple(int(s) for s in step.shape), step.dtype
            seen["mask"] = to_numpy(mask[0] if isinstance(mask, (list, tuple)) else mask)
        return mask

    def cell_call(*args: Any, **kwargs: Any) -> Any:
        seen.setdefault("flag", kwargs.get("training"))
        return orig_cell(*args, **kwargs)

    def rnn_call(*args: Any, **kwargs: Any) -> Any:
        seen.clear()
        y = orig_call(*args, **kwargs)
        x = args[0] if args else kwargs.get("sequences")
        if _symbolic(x) or "shape" not in seen:
            return y
        flag = seen.get("flag", kwargs.get("training"))
        flag = None if flag is None else bool(flag)
        mask = seen["mask"]
        applied = bool(flag) and bool(np.any(mask != 1))
        ones = np.ones(mask.shape, np.float32)
        call = log.record(site, float(getattr(cell, found.which)), flag, ones, mask if applied else ones,
                          {"via": f"{type(cell).__name__}.call"}, applied=applied)
        call.dtype = dtype_name(seen["dtype"])
        return y
    object.__setattr__(cell, getter, get)
    object.__setattr__(cell, "call", cell_call)
    object.__setattr__(layer, "call", rnn_call)
    return [(cell, getter), (cell, "call"), (layer, "call")]


def _unwrap(patched: Sequence[Tuple[Any, str]]) -> None:
    for obj, attr in patched:
        obj.__dict__.pop(attr, None)


# ------------------------------------------------------------------------------ in situ

def _reset_seeds(layer: Any, seed: int) -> None:
    """Every SeedGenerator of ``layer`` (and its sub-layers) back to state [seed, 0]."""
    import keras
    for sub in layer._flatten_layers(include_self=True, recursive=True):
        for g in getattr(sub, "_seed_generators", []) or []:
            state = g.state
            state.assign(keras.ops.convert_to_tensor(np.array([seed % 2 ** 31, 0]), dtype=state.dtype))


def _cell_mask_factory(cell: Any, which: str) -> Any:
    import keras

    class CellMask(keras.layers.Layer):
        """``x * mask`` with the mask a clone of the site's cell draws (``_create_dropout_mask`` at its
        ``dropout`` / ``recurrent_dropout``, the first of an LSTM's four), in training; x in eval."""

        def __init__(self, rate: float, seed: Optional[int] = None, dtype: Any = None) -> None:
            super().__init__(dtype=dtype)
            config = dict(cell.get_config(), seed=seed, **{which: rate})
            if dtype is not None:
                config["dtype"] = dtype
            self.cell, self.rate = type(cell).from_config(config), rate

        def build(self, input_shape: Any) -> None:
            self.built = True  # the mask needs no weights

        def call(self, x: Any, training: bool = False) -> Any:
            if not training:
                return x
            mask = self.cell._create_dropout_mask(x, self.rate)
            return x * (mask[0] if isinstance(mask, (list, tuple)) else mask)

    return lambda p, seed=None, dtype=None, **_: CellMask(float(p), seed, dtype)


def _spec_for(found: Dict[int, _Found]) -> Any:
    from ..targets.keras_layers import BACKEND, SEEDING, keras_spec
    from .plan import not_applicable as _not_applicable

    def spec_for(site: Site, first: Any, note: str, eval_active: bool = False) -> Tuple[Any, Any, str]:
        f = found[id(site)]
        shape = tuple(first.shapes[0]) if first.shapes else ()
        dtype = first.dtype if first.dtype in ("float16", "bfloat16", "float32", "float64") else None
        if dtype is None:
            return None, None, f"the site ran in {first.dtype}, a dtype the harness does not sample"
        conventions = [f"Keras on {BACKEND}; seed(s): keras.utils.set_random_seed(s mod 2**31) and the layer "
                       "rebuilt with seed=s (generator state [s, 0]). " + SEEDING[BACKEND]]
        if f.which is not None:
            variant, params = "dropout", {}
            factory = _cell_mask_factory(f.layer.cell, f.which)
            conventions.append(f"Replay: x * mask, the mask drawn by a clone of the site's {type(f.layer.cell).__name__} "
                               f"(its own _create_dropout_mask at {f.which}={first.p:g}); Keras draws it once per call "
                               "and applies it at every time step (shared over time by construction).")
            key = ("rnn", f.name, f.which, repr(sorted(f.layer.cell.get_config().items())), shape, dtype)
            what = f"{f.name}'s {f.which} mask on a step input {shape}"
        else:
            variant, params, why = _variant(f.layer, f.name, len(shape))
            if variant is None:
                return None, None, why
            if f.exact:
                config = {k: v for k, v in f.layer.get_config().items() if k not in ("name", "seed")}
                cls = type(f.layer)
                factory = (lambda cfg, c: lambda p, seed=None, dtype=None, **_: c.from_config(
                    dict(cfg, rate=float(p), seed=seed, **({"dtype": dtype} if dtype else {}))))(config, cls)
                key = ("stock", f.name, repr(sorted(config.items())), shape, dtype)
                conventions.append("A clone from the layer's get_config (rate, noise_shape, data_format ...) with "
                                   "the harness's seed and the site's dtype.")
            else:
                layer = f.layer
                factory = (lambda lay: lambda p, seed=None, **_: (_reset_seeds(lay, 0 if seed is None else seed), lay)[1]
                           )(layer)
                key = None
                conventions.append(f"The site's own {type(layer).__name__} instance (a subclass: its call is its own), "
                                   "its seed generators reset to [s, 0] at each harness seed.")
            what = f"{site.kind} (rate={first.p:g})"
        description = (f"{site.label}: {what} as the model configures it, on its input shape {shape} {dtype}.{note}")
        try:
            spec = keras_spec(site.name, variant, factory, {"p": first.p, **params}, shape=shape, dtype=dtype,
                              dtypes=(dtype,), layouts=("contiguous",), conventions=tuple(conventions),
                              description=description, not_applicable=_not_applicable())
        except Exception as exc:  # noqa: BLE001 - an unbuildable replay is reported, the scan goes on
            return None, None, f"could not build its replay: {type(exc).__name__}: {exc}"
        return spec, key, ""
    return spec_for


# ------------------------------------------------------------------------------ the scan

def scan_keras(model: Any, example_inputs: Any, *, seed: Optional[int] = None, alpha: Optional[float] = None,
               checks: Optional[Sequence[str]] = None, settings: Optional[Settings] = None, progress: Any = None,
               reproduce: Optional[str] = None, eval_active: Optional[Sequence[str]] = None,
               expect: Any = None, jobs: int = 1) -> Any:
    """:func:`dropverify.scan` of a Keras 3 model or layer (see the module docstring)."""
    import keras
    settings, chosen, args, kwargs, arrays, expected = prepare(example_inputs, seed, alpha, checks, settings,
                                                               eval_active, "a Keras", expect)
    backend = keras.backend.backend()
    describe = describe_arrays(arrays) + f" (Keras on {backend})"
    start = time.perf_counter()
    found = discover(model)
    log = CallLog()
    states = [(v, keras.ops.convert_to_numpy(v.value)) for v in model.non_trainable_variables]
    rng = (random.getstate(), np.random.get_state())
    torch_rng = None
    if backend == "torch":
        import torch
        torch_rng = torch.random.get_rng_state()
    patched: List[Tuple[Any, str]] = []
    try:
        for f in found:
            patched += _wrap(f, log)
        outputs = run_passes(lambda training: model(*args, **kwargs, training=training), log,
                             keras.utils.set_random_seed, settings.seed, describe)
    finally:
        _unwrap(patched)
        for v, value in states:
            v.assign(value)
        random.setstate(rng[0])
        np.random.set_state(rng[1])
        if torch_rng is not None:
            import torch
            torch.random.set_rng_state(torch_rng)
    if not found:
        raise InvalidArgument(f"no dropout site found in {type(model).__module__}.{type(model).__qualname__}: "
                              f"{SEARCHED}; nothing to scan")
    sites = sorted((f.site for f in found), key=lambda s: min((c.seq for c in s.calls), default=1 << 62))
    versions = {"keras": keras.__version__, "keras_backend": backend}
    return finish(f"{type(model).__module__}.{type(model).__qualname__} ({model.name})", describe,
                  tuple(int(s) for s in arrays[0].shape), sites, outputs, settings, chosen, progress, reproduce,
                  _spec_for({id(f.site): f for f in found}), ("training=False", "training=True"), versions, start,
                  expect=expected, jobs=jobs)


__all__ = ["RNNS", "SEARCHED", "STOCK", "discover", "scan_keras"]
