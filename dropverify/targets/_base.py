"""The target interface: the only way the checks talk to an implementation.

A :class:`TargetSpec` names an implementation and builds a :class:`Target` for given
canonical parameters (``p``, ``block_size`` ...). A Target draws outputs under a seed, in
training or eval mode, on a memory layout the framework supports, and returns numpy
arrays; ``forward_backward`` returns the framework's own gradients.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Protocol, Tuple, runtime_checkable

import numpy as np

from ..contracts import Contract, Inputs


@runtime_checkable
class Target(Protocol):
    """One implementation, configured with one set of parameters."""

    dtypes: Tuple[Any, ...]        # numpy dtypes the implementation accepts
    layouts: Tuple[str, ...]       # "contiguous" first; e.g. "transposed", "channels_last"
    has_gradients: bool

    def seed(self, seed: int) -> None:
        """Re-seed the implementation's random stream; later calls advance it."""

    def forward(self, inputs: Inputs, *, training: bool = True, layout: str = "contiguous") -> np.ndarray:
        """One call on ``inputs``; the output as a numpy array of the implementation's dtype."""

    def forward_backward(self, inputs: Inputs, grad_out: np.ndarray, *,
                         layout: str = "contiguous") -> Tuple[np.ndarray, Tuple[np.ndarray, ...]]:
        """One training-mode call and the gradients of ``sum(grad_out * y)`` w.r.t. each
        input (then each parameter, where the variant has some), from the framework; the
        inputs and ``grad_out`` reach forward and backward in ``layout`` (one of ``layouts``).
        A target whose framework has no strided arrays (JAX, TF) says so with a class
        attribute ``strided_tensors = False``: there only the host array is laid out so."""


@dataclass(frozen=True)
class TargetSpec:
    """How to build a target: ``build(params) -> Target`` with canonical parameter names.

    ``build`` raises (any exception) for parameters the implementation rejects; the
    edge-case checks rely on that. ``contract`` overrides the variant's own contract where
    a library follows a different, documented convention (named in ``conventions``).
    """

    name: str
    variant: str
    build: Callable[[Mapping[str, Any]], Target]
    params: Mapping[str, Any] = field(default_factory=dict)
    shape: Optional[Tuple[int, ...]] = None
    contract: Optional[Contract] = None
    conventions: Tuple[str, ...] = ()
    description: str = ""
    # checks that say nothing about this implementation, with the reason (e.g. input
    # plumbing that spreads NaN before the dropout is reached); reported as not applicable
    not_applicable: Mapping[str, str] = field(default_factory=dict)
    # the configuration the statistical checks run in: probe dtype (numpy name, "bfloat16"
    # through ml_dtypes) and memory layout of the inputs (one of the target's layouts)
    dtype: str = "float64"
    layout: str = "contiguous"
    # environment variables the target needs in its process (e.g. KERAS_BACKEND=jax); a runner
    # executes a spec whose env differs from its own process in a worker started with it
    env: Mapping[str, str] = field(default_factory=dict)
    # (built-in name, position in get_target(name)): how another process rebuilds this spec
    ref: Optional[Tuple[str, int]] = None
    # the caller's own probe (``dropverify run --input``): numpy arrays the call-pattern checks
    # call the layer on instead of a seeded probe (their shape and dtype are the configuration's)
    inputs: Optional[Tuple[np.ndarray, ...]] = field(default=None, compare=False, repr=False)

    def resolved_contract(self) -> Contract:
        if self.contract is not None:
            return self.contract
        from ..variants import get_contract  # on first use: the variants import scipy
        return get_contract(self.variant)

    def resolved_params(self, **overrides: Any) -> dict:
        merged = dict(self.params)
        merged.update(overrides)
        return self.resolved_contract().validate_params(merged)

    def probe_shape(self) -> Tuple[int, ...]:
        return tuple(self.shape) if self.shape is not None else self.resolved_contract().default_shape


@dataclass(frozen=True)
class InputWatch:
    """What one call did to the framework tensors the adapter passed (``forward_watched``).

    changed : per input, True where its values after the call differ from before (NaN = NaN);
    output_is_input : the output holds the values input 0 holds after the call (the in-place
        contract: ``y`` is the modified input, e.g. torch ``inplace=True``);
    declared_inplace : the layer says it works in place (torch: its ``inplace`` attribute).
    """

    changed: Tuple[bool, ...]
    output_is_input: bool
    declared_inplace: bool


def same_values(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-for-bit equal values and shape, NaN equal to NaN (numpy arrays)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    if a.dtype.kind == "f" or b.dtype.kind == "f":
        a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
        return bool(np.all((a64 == b64) | (np.isnan(a64) & np.isnan(b64))))
    return bool(np.all(a == b))


DTYPE_NAMES = ("float16", "bfloat16", "float32", "float64")

def probe_shape_arg(shape: Any, name: str = "shape") -> Optional[Tuple[int, ...]]:
    """A probe shape given by a caller, as a tuple (None stays None); InvalidArgument (one line
    naming it) unless it is a non-empty sequence of integers, each at least 1."""
    from ..errors import InvalidArgument
    if shape is None:
        return None
    try:
        sizes = tuple(shape)
    except TypeError:
        sizes = None
    if sizes is None or isinstance(shape, (str, bytes)) or not sizes or not all(
            isinstance(s, (int, np.integer)) and not isinstance(s, (bool, np.bool_)) for s in sizes):
        raise InvalidArgument(f"{name}={shape!r}, but should be a non-empty sequence of integers, e.g. (64, 32)")
    if any(s < 1 for s in sizes):
        raise InvalidArgument(f"{name}={tuple(int(s) for s in sizes)!r}, but every size should be at least 1")
    return tuple(int(s) for s in sizes)


LAYOUT_NAMES: Tuple[str, ...] = ("contiguous", "transposed", "strided", "channels_last")
"""Every memory layout a built-in target may take (each target lists its own in ``layouts``)."""

LAYOUT_RANKS: Mapping[str, Tuple[int, ...]] = {"channels_last": (4, 5), "channels_last_3d": (5,)}
"""Layouts that exist only at some input ranks (torch's channels-last memory formats); every
other layout applies at any rank."""


def layout_fits(layout: str, rank: int) -> bool:
    """True where ``layout`` exists for a rank-``rank`` input (channels_last: 4-D or 5-D)."""
    ranks = LAYOUT_RANKS.get(layout)
    return ranks is None or rank in ranks


def layouts_for_rank(layouts: Tuple[str, ...], rank: int) -> Tuple[str, ...]:
    """The layouts of ``layouts`` that exist for a rank-``rank`` input, in order."""
    return tuple(lay for lay in layouts if layout_fits(lay, rank))


def check_layout_rank(layout: str, shape: Tuple[int, ...], name: str) -> None:
    """InvalidArgument (one line) where ``layout`` does not exist for a probe of ``shape``."""
    from ..errors import InvalidArgument
    if not layout_fits(layout, len(shape)):
        ranks = " or ".join(f"{r}-D" for r in LAYOUT_RANKS[layout])
        raise InvalidArgument(f"layout={layout!r} needs a {ranks} input, but {name} is probed with shape "
                              f"{tuple(shape)} (rank {len(shape)})")


def numpy_dtype(name: Any) -> Any:
    """The numpy scalar type for a dtype name (``bfloat16`` from ml_dtypes); InvalidArgument
    naming the choices otherwise."""
    from ..errors import InvalidArgument, did_you_mean
    text = getattr(name, "__name__", None) or str(np.dtype(name) if not isinstance(name, str) else name)
    if text == "bfloat16":
        import ml_dtypes
        return ml_dtypes.bfloat16
    if text not in DTYPE_NAMES:
        raise InvalidArgument(f"dtype={name!r}, but should be one of {', '.join(DTYPE_NAMES)}"
                              f"{did_you_mean(str(name), DTYPE_NAMES)}")
    return np.dtype(text).type


def relayout(x: np.ndarray, layout: str) -> np.ndarray:
    """Same values, different memory layout: 'transposed' gives a Fortran-ordered copy
    (non-contiguous in C order), 'strided' a view into a larger buffer."""
    if layout == "contiguous":
        return np.ascontiguousarray(x)
    if layout == "transposed":
        return np.asfortranarray(x)
    if layout == "strided":
        big = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), dtype=x.dtype) if x.ndim else x.copy()
        view = big[..., ::2]
        view[...] = x
        return view
    raise ValueError(f"layout={layout!r}, but should be one of contiguous, transposed, strided")
