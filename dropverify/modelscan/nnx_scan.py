"""``dropverify.scan`` of a Flax NNX module.

Promises:

* discovery walks the module graph (``nnx.iter_graph``) for ``nnx.Dropout`` and its subclasses,
  reading rate, ``broadcast_dims`` and ``deterministic``; the configured rate is the owning
  module's ``rate`` / ``dropout_rate`` / ``drop_rate`` / ``dropout`` where it keeps one
  (:func:`.layer_sites.owner_rate`), else the Dropout's own;
* the model runs four times: ``model.train()`` then a call, ``model.eval()`` and two calls,
  ``model.train()`` and a call; randomness comes from the model's own RngStreams, which advance
  between calls (no global seed). Each Dropout's ``__call__`` is wrapped (at class level, for the
  scan's duration, recording only the instances found) to record the rate, the effective
  ``deterministic`` (passed, else the attribute), shapes, dtype and whether the output differs
  from the input. Afterwards the module's state (stream counts, batch statistics) and every
  ``deterministic`` / ``use_running_average`` attribute are restored;
* exact results as the Keras scan's, plus :func:`.layer_sites.rng_advances`: a site whose dropped
  set is the same in both training passes (a key that does not advance, e.g. a fresh
  ``nnx.Rngs(0)`` per call) FAILs;
* in situ, a stock ``nnx.Dropout`` is verified as ``nnx.Dropout(rate, broadcast_dims=...)`` with
  its own stream, a subclass as a clone of the instance (given a ``dropout`` stream at the call
  where it holds none), through the flax adapter (:class:`~dropverify.targets.flax_layers.NNXTarget`).
"""
from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..checks import Settings
from ..errors import InvalidArgument
from .sites import Site
from .layer_sites import CallLog, describe_arrays, finish, new_site, owner_rate, prepare, run_passes

SEARCHED = "searched the NNX module graph (nnx.iter_graph) for nnx.Dropout and its subclasses"
FLAGS = ("deterministic", "use_running_average")


def broadcast_variant(dims: Sequence[int], rank: int) -> Tuple[Optional[str], Dict[str, Any], str]:
    """(variant, params beside p, why none) of ``nnx.Dropout(broadcast_dims=dims)`` on a rank-``rank`` input."""
    d = tuple(sorted(int(a) % rank for a in dims)) if rank else tuple(dims)
    table = {(): ("dropout", {})}
    if rank == 3:
        table.update({(1,): ("variational_dropout", {"batch_first": True}),
                      (0,): ("variational_dropout", {"batch_first": False}),
                      (2,): ("spatial_dropout_1d", {"channels_last": False})})
    if rank == 4:
        table.update({(1, 2): ("spatial_dropout_2d", {"channels_last": True}),
                      (2, 3): ("spatial_dropout_2d", {"channels_last": False})})
    if rank == 5:
        table.update({(1, 2, 3): ("spatial_dropout_3d", {"channels_last": True}),
                      (2, 3, 4): ("spatial_dropout_3d", {"channels_last": False})})
    if d in table:
        return table[d][0], dict(table[d][1]), ""
    return None, {}, f"no contract covers nnx.Dropout(broadcast_dims={tuple(dims)}) on a rank-{rank} input"


def discover(model: Any) -> List[Tuple[Site, Any]]:
    """(site, the Dropout instance) for every nnx.Dropout in the graph, in graph order."""
    from flax import nnx
    nodes = {tuple(path): node for path, node in nnx.iter_graph(model)}
    found = []
    for path, node in nodes.items():
        if not isinstance(node, nnx.Dropout):
            continue
        shown = ".".join(str(p) for p in path)
        exact = type(node) is nnx.Dropout
        kind = "nnx.Dropout" + ("" if exact else f" subclass {type(node).__name__}")
        site = new_site(shown, kind, broadcast_variant(node.broadcast_dims, 0)[0] if not node.broadcast_dims
                        else None, "rate", float(node.rate), library=exact)
        owner_path = path[:-1]
        owner_rate(site, nodes.get(owner_path) if path else None, ".".join(str(p) for p in owner_path))
        found.append((site, node))
    return found


def _patch(found: Dict[int, Tuple[Site, Any]], log: CallLog) -> List[Tuple[type, Any]]:
    """Wrap ``__call__`` of every class the found Dropouts have (outermost call recorded once)."""
    import jax
    from flax import nnx
    classes = {cls for _, node in found.values() for cls in type(node).__mro__
               if "__call__" in cls.__dict__ and issubclass(cls, nnx.Dropout)}
    depth = [0]
    patched = []

    def wrapper(orig: Any) -> Any:
        def __call__(self: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
            entry = found.get(id(self))
            if entry is None or depth[0]:
                return orig(self, inputs, *args, **kwargs)
            depth[0] += 1
            try:
                y = orig(self, inputs, *args, **kwargs)
            finally:
                depth[0] -= 1
            passed = kwargs.get("deterministic")
            det = passed if passed is not None else self.deterministic
            flag = None if det is None else not bool(det)
            via = f"{type(self).__name__}.__call__ (deterministic={det})"
            if isinstance(inputs, jax.core.Tracer) or isinstance(y, jax.core.Tracer):  # under a transform
                import numpy as np
                probe = np.zeros(tuple(inputs.shape), np.float32)
                call = log.record(entry[0], float(self.rate), flag, probe, probe, {"via": via},
                                  applied=bool(flag and self.rate > 0))
                call.extra.pop("dropped", None)
                call.dtype = str(inputs.dtype)
            else:
                log.record(entry[0], float(self.rate), flag, inputs, y, {"via": via})
            return y
        return __call__

    for cls in classes:
        patched.append((cls, cls.__dict__["__call__"]))
        setattr(cls, "__call__", wrapper(cls.__dict__["__call__"]))
    return patched


def _spec_for(found: Dict[int, Tuple[Site, Any]]) -> Any:
    from flax import nnx
    from ..targets.flax_layers import nnx_spec, nnx_streams
    from .plan import not_applicable as _not_applicable

    class WithStream(nnx.Module):
        """A Dropout that holds no stream, given one (``rngs=`` at every call)."""

        def __init__(self, inner: Any) -> None:
            self.inner, self.rngs = inner, nnx.Rngs(dropout=0)

        def __call__(self, x: Any) -> Any:
            return self.inner(x, rngs=self.rngs)

    def spec_for(site: Site, first: Any, note: str, eval_active: bool = False) -> Tuple[Any, Any, str]:
        _, node = found[id(site)]
        shape = tuple(first.shapes[0]) if first.shapes else ()
        dtype = first.dtype if first.dtype in ("float16", "bfloat16", "float32", "float64") else None
        if dtype is None:
            return None, None, f"the site ran in {first.dtype}, a dtype the harness does not sample"
        variant, params, why = broadcast_variant(node.broadcast_dims, len(shape))
        if variant is None:
            return None, None, why
        conventions = ["seed(s): nnx.reseed(module, dropout=jax.random.key(s)); train()/eval() switch deterministic."]
        if type(node) is nnx.Dropout:
            dims = tuple(node.broadcast_dims)
            make = lambda p, **_: nnx.Dropout(rate=float(p), broadcast_dims=dims, rngs=nnx.Rngs(dropout=0))  # noqa
            key = ("nnx.Dropout", dims, float(first.p), shape, dtype)
            conventions.append(f"nnx.Dropout(rate, broadcast_dims={dims}) with its own dropout stream: the site's "
                               "configuration, a fresh stream per harness seed.")
        else:
            own = any(t in ("dropout", "default") for t in nnx_streams(node)) if node.rngs is not None else False
            make = (lambda n, o: lambda p, **_: nnx.clone(n) if o else WithStream(nnx.clone(n)))(node, own)  # noqa
            key = None
            conventions.append(f"A clone of the site's {type(node).__name__} instance (a subclass: its __call__ is its "
                               "own)" + ("" if own else ", given a dropout stream at each call (it holds none)") + ".")
        description = (f"{site.label}: {site.kind} (rate={first.p:g}, broadcast_dims={tuple(node.broadcast_dims)}) as "
                       f"the model configures it, on its input shape {shape} {dtype}.{note}")
        try:
            spec = nnx_spec(site.name, variant, make, {"p": first.p, **params}, shape=shape, dtype=dtype,
                            dtypes=(_np(dtype),), layouts=("contiguous",), conventions=tuple(conventions),
                            description=description, not_applicable=_not_applicable())
        except Exception as exc:  # noqa: BLE001 - an unbuildable replay is reported, the scan goes on
            return None, None, f"could not build its replay: {type(exc).__name__}: {exc}"
        return spec, key, ""
    return spec_for


def _np(dtype: str) -> Any:
    from ..targets import numpy_dtype
    return numpy_dtype(dtype)


def record_passes(model: Any, args: Tuple[Any, ...], kwargs: Dict[str, Any], seed: int,
                  describe: str) -> Tuple[List[Tuple[Site, Any]], Dict[str, Any]]:
    """(sites with their Dropouts, the four passes' outputs): the model run train, eval, eval, train with
    every found Dropout's calls recorded; its state and mode flags restored afterwards."""
    import jax
    from flax import nnx
    pairs = discover(model)
    by_node = {id(node): (s, node) for s, node in pairs}
    log = CallLog()
    state = jax.tree_util.tree_map(lambda a: a.copy() if hasattr(a, "copy") else a, nnx.state(model))  # values
    flags = [(node, name, getattr(node, name)) for _, node in nnx.iter_graph(model) for name in FLAGS
             if isinstance(node, nnx.Module) and hasattr(node, name)]
    patched: List[Tuple[type, Any]] = []

    def call(training: bool) -> Any:
        model.train() if training else model.eval()
        return model(*args, **kwargs)
    try:
        patched = _patch(by_node, log)
        outputs = run_passes(call, log, lambda s: None, seed, describe)
    finally:
        for cls, orig in patched:
            setattr(cls, "__call__", orig)
        nnx.update(model, state)
        for node, name, value in flags:
            setattr(node, name, value)
    return pairs, outputs


def scan_nnx(model: Any, example_inputs: Any, *, seed: Optional[int] = None, alpha: Optional[float] = None,
             checks: Optional[Sequence[str]] = None, settings: Optional[Settings] = None, progress: Any = None,
             reproduce: Optional[str] = None, eval_active: Optional[Sequence[str]] = None,
             expect: Any = None, jobs: int = 1) -> Any:
    """:func:`dropverify.scan` of a Flax NNX module (see the module docstring)."""
    import flax
    import jax
    settings, chosen, args, kwargs, arrays, expected = prepare(example_inputs, seed, alpha, checks, settings,
                                                               eval_active, "an NNX", expect)
    args = tuple(jax.numpy.asarray(a) if not isinstance(a, list) else a for a in args)
    kwargs = {k: jax.numpy.asarray(v) for k, v in kwargs.items()}
    describe = describe_arrays(arrays) + " (Flax NNX)"
    start = time.perf_counter()
    pairs, outputs = record_passes(model, args, kwargs, settings.seed, describe)
    if not pairs:
        raise InvalidArgument(f"no dropout site found in {type(model).__module__}.{type(model).__qualname__}: "
                              f"{SEARCHED}; nothing to scan")
    sites = sorted((s for s, _ in pairs), key=lambda s: min((c.seq for c in s.calls), default=1 << 62))
    return finish(f"{type(model).__module__}.{type(model).__qualname__}", describe,
                  tuple(int(s) for s in arrays[0].shape), sites, outputs, settings, chosen, progress, reproduce,
                  _spec_for({id(s): (s, node) for s, node in pairs}), ("deterministic=True", "deterministic=False"),
                  {"flax": flax.__version__, "jax": jax.__version__}, start, rng_what="the model's RngStreams",
                  framework="nnx", expect=expected, jobs=jobs)


__all__ = ["SEARCHED", "broadcast_variant", "discover", "record_passes", "scan_nnx"]
