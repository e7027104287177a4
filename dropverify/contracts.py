"""What a dropout-family variant promises, as data the harness reads.

A :class:`Contract` is the only thing the checks know about a variant. Everything that
depends on the parameters or the input shape is a small pure function of
``(params, shape)`` or of the probe ``inputs``; everything else is a plain value.

Vocabulary
----------
inputs
    A tuple of numpy arrays, the positional arguments of ``forward`` (``(x,)`` for most
    variants, ``(h_prev, h_new)`` for zoneout).
decoded mask
    The harness reads the random mask back from an output: ``dropped[i]`` is True where the
    output took the contract's *dropped value* (0 for inverted dropout, the alpha value for
    alpha dropout, the previous state for zoneout). Its shape is the output's, unless the
    contract supplies its own ``decode`` (DropConnect decodes the weight mask).
mask unit
    The set of elements that share one random draw. ``shared_axes`` names the axes along
    which one draw is broadcast; one unit is one index of the remaining axes.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import InvalidArgument, did_you_mean, out_of_range

Inputs = Tuple[np.ndarray, ...]
Params = Mapping[str, Any]
Shape = Tuple[int, ...]

_MISSING = object()


@dataclass(frozen=True)
class ParamSpec:
    """One parameter of a variant: type, default and valid range.

    ``low``/``high`` bound numeric parameters; ``low_closed``/``high_closed`` say whether
    the bound itself is allowed. ``choices`` restricts str/bool parameters.
    """

    name: str
    kind: type
    default: Any
    low: Optional[float] = None
    high: Optional[float] = None
    low_closed: bool = True
    high_closed: bool = True
    choices: Optional[Tuple[Any, ...]] = None
    doc: str = ""

    def range_text(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.kind is bool:
            return "True or False"
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        lb = "[" if (self.low_closed and self.low is not None) else "("
        rb = "]" if (self.high_closed and self.high is not None) else ")"
        kind = "an integer" if self.kind is int else "a number"
        return f"{kind} in {lb}{lo}, {hi}{rb}"

    def validate(self, value: Any) -> Any:
        """Return ``value`` converted to ``kind``; raise InvalidArgument naming the range."""
        raw = value
        bad = out_of_range(self.name, raw, self.range_text())
        if self.choices is not None:
            if value not in self.choices:
                close = did_you_mean(value, [str(c) for c in self.choices]) if isinstance(value, str) else ""
                raise InvalidArgument(f"{bad}{close}") if close else bad
            return value
        if self.kind is bool:
            if not isinstance(value, (bool, np.bool_)):
                raise out_of_range(self.name, raw, "True or False")
            return bool(value)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
            raise bad
        if math.isnan(float(value)) or (self.kind is int and not math.isfinite(float(value))):
            raise bad
        if self.kind is int:
            if float(value) != int(value):
                raise bad
            value = int(value)
        else:
            value = float(value)
        if self.low is not None and (value < self.low or (value == self.low and not self.low_closed)):
            raise bad
        if self.high is not None and (value > self.high or (value == self.high and not self.high_closed)):
            raise bad
        return value


DEFAULT_P = 0.3
"""Default drop probability: asymmetric on purpose. At p = 0.5, 1/p = 1/(1-p) and dropping
equals keeping, so a layer scaling by 1/p or swapping keep and drop looks right."""


def P_SPEC(high_closed: bool = True, doc: str = "probability of dropping a mask unit") -> ParamSpec:
    """The drop probability ``p`` in [0, 1] (or [0, 1) where p = 1 is not allowed), default
    :data:`DEFAULT_P`."""
    return ParamSpec("p", float, DEFAULT_P, 0.0, 1.0, True, high_closed, doc=doc)


@dataclass(frozen=True)
class Decoded:
    """A mask read back from one output.

    ``dropped``: bool array, True where the unit took the dropped value (None if the
    variant has no dropped state, e.g. Gaussian dropout). ``valid``: bool array, True where
    the value equals the contract's dropped or kept value within float tolerance.
    ``multiplier``: y / x for multiplicative variants (None otherwise), NaN where x == 0.
    ``ambiguous``: bool array (or None: no element is), True where the contract's dropped
    and kept values coincide (x == 0 for multiplicative variants): there ``dropped`` says
    only that y took that common value, the element is valid iff it did, and mask
    statistics must leave it out (its multiplier is NaN).
    """

    dropped: Optional[np.ndarray]
    valid: Optional[np.ndarray]
    multiplier: Optional[np.ndarray] = None
    ambiguous: Optional[np.ndarray] = None


@dataclass(frozen=True)
class Contract:
    """The machine-readable promise of one variant.

    Callables take ``(params, shape)`` (``shape`` = the output shape) or the probe
    ``inputs``; all return numpy arrays broadcastable to the output shape unless stated.
    A field left ``None`` means "not promised", and the checks that need it do not apply.
    """

    name: str
    summary: str
    reference: str
    params: Tuple[ParamSpec, ...]
    layout: str                                    # e.g. "(N, C, H, W) or (N, H, W, C)"
    default_shape: Shape                           # probe shape used by `dropverify verify`
    ranks: Tuple[int, ...]                         # accepted input ranks
    # --- the mask ------------------------------------------------------------------
    structure: str                                 # "elementwise" | "shared" | "block" | "continuous"
    shared_axes: Callable[[Params, Shape], Tuple[int, ...]]
    drop_probability: Callable[[Params, Shape], Union[float, np.ndarray]]
    # value of a dropped / kept element given the probe inputs (and the decoded mask,
    # for variants whose kept value depends on the mask, e.g. DropBlock's renormalisation)
    dropped_value: Optional[Callable[[Inputs, Params], np.ndarray]] = None
    kept_value: Optional[Callable[[Inputs, Params, np.ndarray], np.ndarray]] = None
    # --- moments -------------------------------------------------------------------
    mean_scope: str = "elementwise"                # "elementwise" | "aggregate" | "none"
    output_mean: Optional[Callable[[Inputs, Params], np.ndarray]] = None
    output_variance: Optional[Callable[[Inputs, Params], np.ndarray]] = None
    eval_output: Optional[Callable[[Inputs, Params], np.ndarray]] = None
    # --- gradients -----------------------------------------------------------------
    gradient_rule: str = "dx = grad_out * multiplier of the forward mask"
    # expected gradients w.r.t. each input given the inputs, the observed output and grad_out
    input_gradients: Optional[Callable[[Inputs, np.ndarray, np.ndarray, Params], Tuple[np.ndarray, ...]]] = None
    # --- probing -------------------------------------------------------------------
    make_inputs: Optional[Callable[[Shape, np.random.Generator, Any], Inputs]] = None
    decode: Optional[Callable[[Inputs, np.ndarray, Params], Decoded]] = None
    p_one_allowed: bool = True
    multiplicative: bool = True                    # output = input * multiplier (False: zoneout, DropConnect)
    notes: Tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    # ---------------------------------------------------------------------------
    def validate_params(self, params: Optional[Params] = None, **overrides: Any) -> dict:
        """Fill defaults, validate every value; unknown names raise InvalidArgument."""
        merged = dict(params or {})
        merged.update(overrides)
        known = {s.name for s in self.params}
        unknown = sorted(set(merged) - known)
        if unknown:
            raise InvalidArgument(
                f"unknown parameter {unknown[0]!r} for {self.name}; known: {', '.join(sorted(known))}"
                f"{did_you_mean(unknown[0], sorted(known))}")
        out = {}
        for spec in self.params:
            out[spec.name] = spec.validate(merged.get(spec.name, spec.default))
        return out

    def check_shape(self, shape: Sequence[int]) -> None:
        """Raise InvalidArgument if the rank is not one of ``ranks``, quoting ``layout``."""
        if len(shape) not in self.ranks:
            raise InvalidArgument(
                f"{self.name} input rank={len(shape)} (shape {tuple(shape)}), but should be "
                f"{' or '.join(str(r) for r in self.ranks)}: layout {self.layout}")

    def probe_inputs(self, shape: Shape, rng: np.random.Generator, dtype: Any = np.float64,
                     zeros: bool = False) -> Inputs:
        """Probe inputs of ``dtype``: by default :func:`signed_probe` (random signs, magnitudes
        log-uniform over :func:`probe_magnitudes`), every element nonzero and distinguishable
        from the dropped value; a contract's ``make_inputs`` replaces it.

        ``zeros=True`` (for exact value checks only): the same law with exact zeros planted
        (:func:`signed_probe_with_zeros`), where the dropped and kept values may coincide. A
        ``make_inputs`` takes part only if it accepts a ``zeros`` keyword; otherwise its
        ordinary, zero-free probe is returned.
        """
        shape = tuple(shape)
        if self.make_inputs is not None:
            if zeros and _accepts_zeros(self.make_inputs):
                return self.make_inputs(shape, rng, dtype, zeros=True)
            return self.make_inputs(shape, rng, dtype)
        if zeros:
            return (signed_probe_with_zeros(shape, rng, dtype),)
        return (signed_probe(shape, rng, dtype),)

    def decode_output(self, inputs: Inputs, y: np.ndarray, params: Params) -> Decoded:
        """Read the mask back from an output (see :class:`Decoded`)."""
        if self.decode is not None:
            return self.decode(inputs, y, params)
        return decode_by_values(self, inputs, y, params)

    def decode_dropped(self, inputs: Inputs, y: np.ndarray, params: Params) -> Optional[np.ndarray]:
        """``decode_output(inputs, y, params).dropped`` alone, the same array, without the valid
        mask and the multiplier the mask statistics do not read (their hot path)."""
        if self.decode is not None:
            return self.decode(inputs, y, params).dropped
        if self.dropped_value is None:
            return None
        return _dropped_by_values(self, inputs, y, params)[0]

    def describe(self, params: Optional[Params] = None) -> dict:
        """A JSON-ready summary for reports."""
        p = self.validate_params(params)
        return {
            "name": self.name, "summary": self.summary, "reference": self.reference,
            "params": {s.name: {"value": p[s.name], "range": s.range_text(), "doc": s.doc} for s in self.params},
            "layout": self.layout, "structure": self.structure, "mean_scope": self.mean_scope,
            "gradient_rule": self.gradient_rule, "p_one_allowed": self.p_one_allowed,
            "notes": list(self.notes),
        }


# ------------------------------------------------------------------------------
# shared helpers used by many contracts

def positive_probe(shape: Shape, rng: np.random.Generator, dtype: Any = np.float64) -> np.ndarray:
    """Values in [0.5, 1.5): nonzero, sign-stable, distinct from 0 by a wide margin.

    Kept for callers that need positive inputs; the checks use :func:`signed_probe`."""
    return (0.5 + rng.random(shape)).astype(dtype)


PROBE_P_MAX = 0.999
"""Largest drop rate at which a probe's kept value x / (1 - p) must stay finite and normal."""

_PROBE_DECADES = 6          # at most 1e-6 .. 1e6, whatever the dtype allows
_PROBE_HEADROOM = 4.0       # x / (1 - PROBE_P_MAX) stays this far below the dtype's max
_PROBE_ATOL_MARGIN = 100.0  # the smallest magnitude is this many times value_tolerance's atol


def _finfo(dtype: Any) -> Any:
    """np.finfo, or ml_dtypes.finfo for the dtypes numpy lacks (bfloat16)."""
    try:
        return np.finfo(dtype)
    except (TypeError, ValueError):
        import ml_dtypes  # noqa: PLC0415 - only for bfloat16 and friends
        return ml_dtypes.finfo(dtype)


def probe_magnitudes(dtype: Any = np.float64) -> Tuple[float, float]:
    """``(lo, hi)``: powers of ten bounding ``|x|`` of :func:`signed_probe` in ``dtype``.

    ``hi`` is the largest power of ten <= 1e6 with ``hi / (1 - 0.999) * 4 <= finfo.max`` (kept
    values x / (1 - p) stay finite, with headroom, for every p <= 0.999); ``lo`` is the smallest
    power of ten >= 1e-6, >= 100 * the dtype's comparison atol (:func:`value_tolerance`, so a
    kept value is never within tolerance of 0) and the range is symmetric about 1 (lo = 1 / hi);
    ``lo`` is far above ``finfo.tiny`` (normal numbers). Values:

    ========  ==========  =========
    dtype     lo          hi
    ========  ==========  =========
    float64   1e-6        1e6
    float32   1e-4        1e4
    float16   0.1         10
    bfloat16  0.1         10
    ========  ==========  =========
    """
    fi = _finfo(dtype)
    _, atol = value_tolerance(dtype)
    cap = float(fi.max) * (1.0 - PROBE_P_MAX) / _PROBE_HEADROOM
    hi_exp = min(_PROBE_DECADES, math.floor(math.log10(cap)))
    lo_exp = max(-_PROBE_DECADES, math.ceil(math.log10(_PROBE_ATOL_MARGIN * atol)), -hi_exp,
                 math.ceil(math.log10(float(fi.tiny))) + 3)
    hi_exp = min(hi_exp, -lo_exp)
    if lo_exp > hi_exp:  # pragma: no cover - no IEEE-like float type is this narrow
        raise InvalidArgument(f"dtype={np.dtype(dtype).name} is too narrow for a signed probe")
    return 10.0 ** lo_exp, 10.0 ** hi_exp


def signed_magnitudes(shape: Shape, rng: np.random.Generator, dtype: Any = np.float64,
                      low: Optional[float] = None, high: Optional[float] = None) -> np.ndarray:
    """float64 magnitudes, log-uniform over [low, high) (default :func:`probe_magnitudes`)."""
    lo, hi = probe_magnitudes(dtype)
    lo = lo if low is None else low
    hi = hi if high is None else high
    m = rng.uniform(math.log(lo), math.log(hi), size=shape)
    return np.exp(m, out=m) if isinstance(m, np.ndarray) else np.exp(m)


def signed_probe(shape: Shape, rng: np.random.Generator, dtype: Any = np.float64) -> np.ndarray:
    """Signed, wide-range, nonzero probe values of ``dtype``.

    Each element is +-m with a fair random sign and m log-uniform over
    :func:`probe_magnitudes` (float64 1e-6 .. 1e6, float32 1e-4 .. 1e4, float16 and bfloat16
    0.1 .. 10), up to one rounding to ``dtype``: never 0, never within 100 atol of 0, and
    x / (1 - p) finite and normal in ``dtype`` for every p <= 0.999. A layer that loses the
    sign (|x|), clips, or depends on the magnitude shows up on these inputs.
    """
    negative = rng.random(shape) < 0.5  # drawn before the magnitudes: the stream's order is part of the law
    m = np.asarray(signed_magnitudes(shape, rng, dtype))
    np.negative(m, out=m, where=negative)  # in place: the same values as (+-1) * m, one pass less
    return m.astype(dtype, copy=False)


ZERO_FRACTION = 0.125
"""Share of the elements that :func:`signed_probe_with_zeros` sets to exactly 0."""


def plant_zeros(a: np.ndarray, rng: np.random.Generator, fraction: float = ZERO_FRACTION) -> np.ndarray:
    """A copy of ``a`` with round(fraction * size) elements (at least one when ``a`` is not
    empty) set to exactly 0, at uniformly random distinct positions."""
    out = np.array(a, copy=True)
    if out.size:
        k = max(1, int(round(fraction * out.size)))
        out.reshape(-1)[rng.choice(out.size, size=min(k, out.size), replace=False)] = 0
    return out


def signed_probe_with_zeros(shape: Shape, rng: np.random.Generator, dtype: Any = np.float64,
                            fraction: float = ZERO_FRACTION) -> np.ndarray:
    """:func:`signed_probe` with ``fraction`` of the elements (at least one) exactly 0.

    For exact value checks only: where x == 0 a multiplicative variant's dropped and kept
    values are both 0, so the element tests "0 maps to 0" but says nothing about the mask.
    """
    return plant_zeros(signed_probe(shape, rng, dtype), rng, fraction)


def _accepts_zeros(fn: Callable[..., Any]) -> bool:
    try:
        return "zeros" in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False


def value_tolerance(dtype: Any) -> Tuple[float, float]:
    """(rtol, atol) for comparing computed values of ``dtype``."""
    dt = np.dtype(dtype)
    if dt == np.float16:
        return 2e-3, 1e-3
    if dt.name == "bfloat16":   # ml_dtypes: 8 significant bits
        return 1.6e-2, 1e-3
    if dt == np.float32:
        return 2e-6, 1e-6
    return 1e-12, 1e-12


def inverted_scale(p: float) -> float:
    """1 / (1 - p), and 0.0 when p = 1 (everything is dropped)."""
    return 0.0 if p >= 1.0 else 1.0 / (1.0 - p)


def _close(y: np.ndarray, v: np.ndarray, rtol: float, atol: float) -> np.ndarray:
    """``np.isclose(y, v, rtol, atol)`` for finite ``v`` without its generality (about twice as
    fast on the hot path of every statistical check); equal infinities count as close."""
    with np.errstate(invalid="ignore"):
        return (np.abs(y - v) <= atol + rtol * np.abs(v)) | (y == v)


_NATIVE_FLOATS = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def _dropped_by_values(contract: Contract, inputs: Inputs, y: np.ndarray,
                       params: Params) -> Tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """(dropped, y as float64 or None, the dropped value, rtol, atol) of :func:`decode_by_values`. A
    scalar dropped value is compared as a scalar (elementwise the same arithmetic as against
    its broadcast array); 0 in a numpy float dtype as ``|y| <= atol`` in that dtype (the same
    set: |y - 0| = |y|, and y == 0 is inside it)."""
    y = np.asarray(y)
    rtol, atol = value_tolerance(y.dtype)
    value = np.asarray(contract.dropped_value(inputs, params), np.float64)
    if value.ndim == 0 and float(value) == 0.0 and y.dtype in _NATIVE_FLOATS:
        # |y| <= atol in y's own dtype: |y| is exact there, and the largest value of that dtype
        # not above atol keeps the float64 comparison's answer for every element (NaN: False)
        threshold = y.dtype.type(atol)
        if float(threshold) > atol:
            threshold = np.nextafter(threshold, y.dtype.type(0))
        with np.errstate(invalid="ignore"):
            return np.abs(y) <= threshold, None, value, rtol, atol
    y64 = np.asarray(y, dtype=np.float64)
    if value.ndim == 0:
        return _close(y64, float(value), rtol, atol), y64, value, rtol, atol
    value = np.broadcast_to(value, y64.shape)
    return _close(y64, value, rtol, atol), y64, value, rtol, atol


def decode_by_values(contract: Contract, inputs: Inputs, y: np.ndarray, params: Params) -> Decoded:
    """Generic decoder: dropped where y equals the dropped value, valid where y equals
    the dropped value or the kept value (float tolerance of y's dtype).

    Where the dropped and kept values coincide (x == 0 for multiplicative variants) the
    element is ``ambiguous``: valid iff y equals that value (so 0 must map to 0), ``dropped``
    True iff it does, and the multiplier NaN, so mask statistics skip it."""
    x = np.asarray(inputs[0], dtype=np.float64)
    multiplier = None
    if contract.dropped_value is None:
        y64 = np.asarray(y, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            multiplier = np.where(x != 0, y64 / x, np.nan)
        return Decoded(dropped=None, valid=np.isfinite(y64) | ~np.isfinite(x), multiplier=multiplier)
    dropped, y64, dropped_v, rtol, atol = _dropped_by_values(contract, inputs, y, params)
    if y64 is None:
        y64 = np.asarray(y, dtype=np.float64)
    valid = dropped.copy()
    ambiguous = None
    if contract.kept_value is not None:
        kept_v = np.broadcast_to(np.asarray(contract.kept_value(inputs, params, dropped), np.float64), y64.shape)
        valid |= _close(y64, kept_v, rtol, atol)
        if not contract.multiplicative:
            ambiguous = kept_v == dropped_v   # e.g. zoneout where h_prev == h_new
    if contract.multiplicative:
        with np.errstate(divide="ignore", invalid="ignore"):
            multiplier = np.where(x != 0, y64 / x, np.nan)
        if x.shape == y64.shape:
            ambiguous = x == 0                # dropped 0 and kept 0 * scale coincide
    if ambiguous is not None and not ambiguous.any():
        ambiguous = None
    return Decoded(dropped=dropped, valid=valid, multiplier=multiplier, ambiguous=ambiguous)


def multiplier_gradients(inputs: Inputs, y: np.ndarray, grad_out: np.ndarray, params: Params) -> Tuple[np.ndarray, ...]:
    """Gradient rule of every multiplicative variant: dx = grad_out * (y / x)."""
    x = np.asarray(inputs[0], np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        m = np.where(x != 0, np.asarray(y, np.float64) / x, 0.0)
    return (np.asarray(grad_out, np.float64) * m,)


def zero_value(inputs: Inputs, params: Params) -> float:
    """Dropped value of every inverted-dropout variant: exactly 0."""
    return 0.0


def inverted_kept(inputs: Inputs, params: Params, dropped: np.ndarray) -> np.ndarray:
    """Kept value of inverted dropout: x / (1 - p) (0 at p = 1)."""
    return np.asarray(inputs[0], np.float64) * inverted_scale(params["p"])


def identity_eval(inputs: Inputs, params: Params) -> np.ndarray:
    return np.asarray(inputs[0])


def all_axes_independent(params: Params, shape: Shape) -> Tuple[int, ...]:
    return ()


# ------------------------------------------------------------------------------
# registry: every variant module registers its contract here on import; the lookups
# (:func:`dropverify.variants.get_contract`, :func:`dropverify.variants.all_contracts`) live
# in the variants package, which imports every variant module first

_REGISTRY: dict = {}


def register(contract: Contract) -> Contract:
    """Add ``contract`` to the registry under its name (once); returns it."""
    if contract.name in _REGISTRY:
        raise InvalidArgument(f"contract {contract.name!r} registered twice")
    _REGISTRY[contract.name] = contract
    return contract


def registered() -> Dict[str, Contract]:
    """The contracts registered so far, by name (a copy): every variant's once
    :mod:`dropverify.variants` is imported."""
    return dict(_REGISTRY)
