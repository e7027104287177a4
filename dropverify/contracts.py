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

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import InvalidArgument, out_of_range

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
                raise bad
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


def P_SPEC(high_closed: bool = True, doc: str = "probability of dropping a mask unit") -> ParamSpec:
    """The drop probability ``p`` in [0, 1] (or [0, 1) where p = 1 is not allowed)."""
    return ParamSpec("p", float, 0.5, 0.0, 1.0, True, high_closed, doc=doc)


@dataclass(frozen=True)
class Decoded:
    """A mask read back from one output.

    ``dropped``: bool array, True where the unit took the dropped value (None if the
    variant has no dropped state, e.g. Gaussian dropout). ``valid``: bool array, True where
    the value equals the contract's dropped or kept value within float tolerance.
    ``multiplier``: y / x for multiplicative variants (None otherwise).
    """

    dropped: Optional[np.ndarray]
    valid: Optional[np.ndarray]
    multiplier: Optional[np.ndarray] = None


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
                f"unknown parameter {unknown[0]!r} for {self.name}; known: {', '.join(sorted(known))}")
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

    def probe_inputs(self, shape: Shape, rng: np.random.Generator, dtype: Any = np.float64) -> Inputs:
        """Inputs whose every element is nonzero and distinguishable from the dropped value."""
        if self.make_inputs is not None:
            return self.make_inputs(tuple(shape), rng, dtype)
        return (positive_probe(shape, rng, dtype),)

    def decode_output(self, inputs: Inputs, y: np.ndarray, params: Params) -> Decoded:
        """Read the mask back from an output (see :class:`Decoded`)."""
        if self.decode is not None:
            return self.decode(inputs, y, params)
        return decode_by_values(self, inputs, y, params)

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
    """Values in [0.5, 1.5): nonzero, sign-stable, distinct from 0 by a wide margin."""
    return (0.5 + rng.random(shape)).astype(dtype)


def value_tolerance(dtype: Any) -> Tuple[float, float]:
    """(rtol, atol) for comparing computed values of ``dtype``."""
    dt = np.dtype(dtype)
    if dt == np.float16:
        return 2e-3, 1e-3
    if dt == np.float32:
        return 2e-6, 1e-6
    return 1e-12, 1e-12


def inverted_scale(p: float) -> float:
    """1 / (1 - p), and 0.0 when p = 1 (everything is dropped)."""
    return 0.0 if p >= 1.0 else 1.0 / (1.0 - p)


def decode_by_values(contract: Contract, inputs: Inputs, y: np.ndarray, params: Params) -> Decoded:
    """Generic decoder: dropped where y equals the dropped value, valid where y equals
    the dropped value or the kept value (float tolerance of y's dtype)."""
    y64 = np.asarray(y, dtype=np.float64)
    x = np.asarray(inputs[0], dtype=np.float64)
    rtol, atol = value_tolerance(np.asarray(y).dtype)
    multiplier = None
    if contract.dropped_value is None:
        with np.errstate(divide="ignore", invalid="ignore"):
            multiplier = y64 / x
        return Decoded(dropped=None, valid=np.isfinite(y64) | ~np.isfinite(x), multiplier=multiplier)
    dropped_v = np.broadcast_to(np.asarray(contract.dropped_value(inputs, params), np.float64), y64.shape)
    dropped = np.isclose(y64, dropped_v, rtol=rtol, atol=atol)
    valid = dropped.copy()
    if contract.kept_value is not None:
        kept_v = np.broadcast_to(np.asarray(contract.kept_value(inputs, params, dropped), np.float64), y64.shape)
        valid |= np.isclose(y64, kept_v, rtol=rtol, atol=atol)
    if contract.multiplicative:
        with np.errstate(divide="ignore", invalid="ignore"):
            multiplier = np.where(x != 0, y64 / x, np.nan)
    return Decoded(dropped=dropped, valid=valid, multiplier=multiplier)


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
# registry: every variant module registers its contract here on import

_REGISTRY: dict = {}


def register(contract: Contract) -> Contract:
    if contract.name in _REGISTRY:
        raise InvalidArgument(f"contract {contract.name!r} registered twice")
    _REGISTRY[contract.name] = contract
    return contract


def get_contract(name: str) -> Contract:
    """The contract of a canonical variant name; InvalidArgument lists the known names."""
    from . import variants  # noqa: F401  (imports every variant module, filling the registry)
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InvalidArgument(
            f"variant={name!r}, but should be one of: {', '.join(sorted(_REGISTRY))}") from None


def all_contracts() -> Tuple[Contract, ...]:
    from . import variants  # noqa: F401
    return tuple(_REGISTRY[k] for k in sorted(_REGISTRY))
