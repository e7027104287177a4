"""What a check works with: its context, its seeds and a few mask helpers.

A check is a small function ``check(ctx) -> list[CheckResult]``; the registry in
``dropverify.checks`` says which checks apply to a contract and how many statistical
results each will produce (the runner needs that count up front to split the run's
family-wise error rate).

Promises: :class:`CheckContext` (guarded target calls, streams, decoding) and
:class:`SeedStream` (every random number derived from the run's seed and the check's name).
The settings live in :mod:`dropverify.settings`, results in :mod:`dropverify.results`, the
target thread (and :class:`TargetError`, which it raises) in :mod:`._worker`, the streams and budget
in :mod:`._stream`, the sequential driver in :mod:`._sequential`: import each name from its home
(nothing is re-exported here).
Run state (the time budget's cutoff, the running check's share, the hang flag, the shared
stream's hub) lives on the context, ``ctx.scope`` (:class:`._worker.RunScope`), set by the runner
through :mod:`.engine`; rebind ``STREAM_BATCH`` through ``engine.set_stream_batch``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..contracts import Contract, Decoded, Inputs
from ..settings import Settings
from ..targets._base import Target, TargetSpec
from ._memo import DecodeMemo
from ._stream import Stream
from ._worker import RunScope, TargetError, guarded

__all__ = ["CheckContext", "SeedStream", "mask_values", "unit_view", "units_per_call"]


@dataclass
class CheckContext:
    """What a check receives: the target spec, its contract and parameters, the probe
    shape, the run settings and the alpha budget of each statistical result."""

    spec: TargetSpec
    contract: Contract
    params: Dict[str, Any]
    shape: Tuple[int, ...]
    settings: Settings
    alpha_each: float
    seed: int
    _target: Optional[Target] = None
    dtype: Any = np.float64       # probe dtype of the configuration (statistical and exact checks)
    layout: str = "contiguous"    # input memory layout of the configuration's calls
    scope: RunScope = field(default_factory=RunScope)  # the run's cutoff, hang flag, check share, hub
    _memo: DecodeMemo = field(default_factory=DecodeMemo, repr=False, compare=False)  # shared-stream decodes

    @property
    def label(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.contract.name}({args}) on {self.spec.name}"

    @property
    def target(self) -> Target:
        if self._target is None:
            self._target = guarded(lambda: self.spec.build(self.params), self.settings.call_timeout_s, "build",
                                   scope=self.scope)
        return self._target

    def build(self, **overrides: Any) -> Target:
        params = dict(self.params)
        params.update(overrides)
        return guarded(lambda: self.spec.build(params), self.settings.call_timeout_s, "build", scope=self.scope)

    def seeds(self, name: str) -> "SeedStream":
        """The random numbers of the check (or stream) called ``name`` in this configuration:
        derived from the run's seed and the name, so no two checks share draws by accident and
        adding a check changes no other check's numbers."""
        return SeedStream(self, name)

    def call(self, target: Target, inputs: Inputs, training: bool = True, layout: Optional[str] = None,
             expect_shape: Optional[Tuple[int, ...]] = None) -> np.ndarray:
        """One guarded forward (default layout: the configuration's): exceptions, hangs and
        wrong shapes become TargetError."""
        layout = self.layout if layout is None else layout
        y = guarded(lambda: target.forward(inputs, training=training, layout=layout),
                    self.settings.call_timeout_s, "forward", scope=self.scope)
        y = np.asarray(y)
        if expect_shape is not None and y.shape != tuple(expect_shape):
            raise TargetError(f"output shape {y.shape}, but should be {tuple(expect_shape)}")
        return y

    def stream(self, inputs: Inputs, seed: int, expect_shape: Optional[Tuple[int, ...]] = None,
               target: Optional[Target] = None) -> "Stream":
        """Seed the target once (at the first draw), then yield the outputs of successive
        training calls. :class:`CallCounter` draws several calls of one stream per dispatch to
        the worker thread (:meth:`Stream.take`): same calls, same order, same outputs."""
        tgt = target or self.target
        if expect_shape is None:
            expect_shape = self.output_shape(inputs)
        return Stream(self, tgt, inputs, seed, expect_shape)

    def shared_stream(self) -> Tuple[Inputs, Any]:
        """(inputs, stream) of the configuration's ONE shared stream of training calls (see
        :mod:`._shared`): inside a run, every ``shares_stream`` check reads the same calls 0,
        1, 2, ... of one seeded stream; called outside a run (a check on its own) it is a
        private stream with the same probe and seed, so results agree either way."""
        from ._shared import SHARED
        if self.scope.hub is not None:
            return self.scope.hub.inputs, self.scope.hub.reader()
        seeds = self.seeds(SHARED)
        inputs = seeds.probe()
        return inputs, self.stream(inputs, seeds.seed())

    def output_shape(self, inputs: Inputs) -> Tuple[int, ...]:
        """The output shape the contract promises (that of its eval output)."""
        if self.contract.eval_output is None:
            return tuple(np.shape(inputs[0]))
        return tuple(np.shape(self.contract.eval_output(inputs, self.params)))

    def decode(self, inputs: Inputs, y: np.ndarray) -> Decoded:
        """The mask read back from ``y`` (an output of the shared stream is decoded once for all
        its readers, and its arrays are read-only: :mod:`._memo`)."""
        return self._memo.get("decode", (self.contract, self.params), inputs, y,
                              lambda: self.contract.decode_output(inputs, y, self.params))

    def dropped(self, inputs: Inputs, y: np.ndarray) -> Optional[np.ndarray]:
        """``decode(inputs, y).dropped`` alone (cheaper: see :meth:`Contract.decode_dropped`)."""
        return self._memo.get("dropped", (self.contract, self.params), inputs, y,
                              lambda: self.contract.decode_dropped(inputs, y, self.params))


def _name_key(name: str) -> int:
    import zlib
    return zlib.crc32(name.encode("utf-8"))


class SeedStream:
    """One check's seeds, generators and probe inputs, numbered ``i = 0, 1, ...`` within each
    kind: ``np.random.SeedSequence([run seed, crc32(name), kind, i])`` (kinds: target seeds,
    generators, probes), so the three never share a stream and every number depends only on the
    run's seed, the check's name and ``i``."""

    SEED, RNG, PROBE = 0, 1, 2

    def __init__(self, ctx: "CheckContext", name: str) -> None:
        self.ctx, self.name, self._key = ctx, name, _name_key(name)

    def _sequence(self, kind: int, i: int) -> np.random.SeedSequence:
        return np.random.SeedSequence([int(self.ctx.seed), self._key, kind, int(i)])

    def seed(self, i: int = 0) -> int:
        """The ``i``-th seed to give a target (an int in [0, 2**31))."""
        return int(self._sequence(self.SEED, i).generate_state(1, np.uint32)[0] >> 1)

    def rng(self, i: int = 0) -> np.random.Generator:
        """The ``i``-th numpy generator of the check (offsets, gradients, random choices)."""
        return np.random.default_rng(self._sequence(self.RNG, i))

    def probe_rng(self, i: int = 0) -> np.random.Generator:
        """The generator behind :meth:`probe` ``(i)`` (for probes the contract builds otherwise)."""
        return np.random.default_rng(self._sequence(self.PROBE, i))

    def probe(self, i: int = 0, dtype: Any = None, shape: Optional[Tuple[int, ...]] = None, **kw: Any) -> Inputs:
        """The ``i``-th probe inputs (default: the configuration's shape and dtype; ``kw`` go to
        the contract's ``probe_inputs``, e.g. ``zeros=True``: the same values with zeros planted)."""
        return self.ctx.contract.probe_inputs(shape or self.ctx.shape, self.probe_rng(i),
                                              self.ctx.dtype if dtype is None else dtype, **kw)


def unit_view(ctx: CheckContext, arr: np.ndarray, leading: int = 0, keepdims: bool = False) -> np.ndarray:
    """One representative per mask unit: index 0 along every shared axis of the output
    (``leading`` extra axes in front, e.g. a calls axis, are kept)."""
    shared = ctx.contract.shared_axes(ctx.params, ctx.shape)
    index: list = [slice(None)] * arr.ndim
    for ax in shared:
        index[leading + ax] = slice(0, 1) if keepdims else 0
    return arr[tuple(index)]


def mask_values(ctx: CheckContext, inputs: Inputs, y: np.ndarray) -> Tuple[np.ndarray, bool]:
    """The per-element random draw read from an output: the dropped indicator (binary), or
    the multiplier y / x for continuous variants."""
    dropped = ctx.dropped(inputs, y)
    if dropped is not None:
        return dropped, True
    return ctx.decode(inputs, y).multiplier, False


def units_per_call(ctx: CheckContext, shape: Optional[Tuple[int, ...]] = None) -> int:
    shape = shape or ctx.shape
    shared = set(ctx.contract.shared_axes(ctx.params, shape))
    return int(np.prod([s for i, s in enumerate(shape) if i not in shared], dtype=np.int64))
