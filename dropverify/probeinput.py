"""``dropverify run ... --input MODULE:FN``: the user's own input as the probe of the call-pattern checks.

``FN`` takes no arguments and returns the layer's input: a numpy array or a torch tensor (or a tuple
of them, for variants with several inputs). The configuration then runs at that input's shape and
dtype; the call-pattern checks (:mod:`dropverify.checks.callpatterns`) call the layer on exactly
those values, the statistical checks draw their own seeded probes of that shape and dtype (they
read masks from the output, which needs inputs without zeros). Every mistake is a
:class:`~dropverify.cliargs.UsageError`: one line, exit 2, before any sampling.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from .cliargs import UsageError

DTYPES = ("float16", "bfloat16", "float32", "float64")


def _as_numpy(value: Any, ref: str) -> np.ndarray:
    if type(value).__module__.split(".")[0] == "torch":
        import torch
        if isinstance(value, torch.Tensor):
            t = value.detach().to("cpu")
            if t.dtype == torch.bfloat16:
                import ml_dtypes
                return t.float().numpy().astype(ml_dtypes.bfloat16)
            return t.numpy().copy()
    if isinstance(value, np.ndarray):
        return value.copy()
    raise UsageError(f"--input {ref!r} returned a {type(value).__name__}, but should return a numpy array or a "
                     "torch tensor (or a tuple of them)")


def load_probe_input(ref: str) -> Tuple[np.ndarray, ...]:
    """The arrays ``MODULE:FN`` returns, validated: at least one, each non-empty, finite, of one of
    the float dtypes float16 / bfloat16 / float32 / float64, all of one dtype."""
    from .errors import InvalidArgument
    from .targets.user import load_factory
    try:
        fn = load_factory(ref)
    except InvalidArgument as exc:
        raise UsageError(f"--input {ref!r}: {exc}") from None
    try:
        value = fn()
    except Exception as exc:  # noqa: BLE001 - the user's function raised: a usage error, one line
        text = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise UsageError(f"--input {ref}() raised {type(exc).__name__}{': ' + text if text else ''}") from None
    items = list(value) if isinstance(value, (tuple, list)) else [value]
    if not items:
        raise UsageError(f"--input {ref!r} returned an empty {type(value).__name__}")
    arrays = tuple(_as_numpy(v, ref) for v in items)
    for i, a in enumerate(arrays):
        what = "its input" if len(arrays) == 1 else f"its input {i}"
        if a.dtype.name not in DTYPES:
            raise UsageError(f"--input {ref!r}: {what} has dtype {a.dtype.name}, but should be one of "
                             f"{', '.join(DTYPES)}")
        if a.ndim == 0 or a.size == 0:
            raise UsageError(f"--input {ref!r}: {what} has shape {a.shape}, but should be a non-empty array "
                             "with a batch axis")
        if not np.all(np.isfinite(np.asarray(a, np.float64))):
            raise UsageError(f"--input {ref!r}: {what} holds NaN or inf, but the probe should be finite "
                             "(nonfinite_inputs_leave_others_untouched plants its own)")
    if len({a.dtype.name for a in arrays}) > 1:
        raise UsageError(f"--input {ref!r}: inputs of dtypes {', '.join(a.dtype.name for a in arrays)}, but "
                         "should share one dtype")
    return arrays


def attach(specs: Sequence[Any], arrays: Tuple[np.ndarray, ...], ref: str) -> list:
    """``specs`` with the user's arrays as their probe (``TargetSpec.inputs``); UsageError where a
    variant takes another number of inputs, another rank, or a probe of another shape."""
    out = []
    for spec in specs:
        contract = spec.resolved_contract()
        try:
            contract.check_shape(arrays[0].shape)
            want = contract.probe_inputs(arrays[0].shape, np.random.default_rng(0), np.float64)
        except Exception as exc:  # noqa: BLE001 - the contract rejects this shape: one line
            raise UsageError(f"--input {ref!r} for {spec.name}: {str(exc).splitlines()[0]}") from None
        if len(want) != len(arrays):
            raise UsageError(f"--input {ref!r} returned {len(arrays)} array(s), but {spec.name} ({contract.name}) "
                             f"takes {len(want)}")
        for i, (w, a) in enumerate(zip(want, arrays)):
            if np.shape(w) != a.shape:
                raise UsageError(f"--input {ref!r}: input {i} has shape {a.shape}, but {contract.name} needs "
                                 f"{np.shape(w)} with input 0 of shape {arrays[0].shape}")
        out.append(dataclasses.replace(spec, inputs=arrays))
    return out


def from_args(args: Any) -> Optional[Tuple[np.ndarray, ...]]:
    """``run --input``: the arrays (None without the option); sets ``args.shape`` / ``args.dtype``
    to the input's. UsageError with --shape, --dtype or --sweep (the input fixes the configuration)."""
    ref = getattr(args, "input", None)
    if ref is None:
        return None
    for flag in ("shape", "dtype", "sweep"):
        if getattr(args, flag, None):
            raise UsageError(f"--{flag} and --input: give one (the input fixes the probe's shape and dtype)")
    arrays = load_probe_input(ref)
    args.shape, args.dtype = ",".join(str(s) for s in arrays[0].shape), arrays[0].dtype.name
    return arrays


__all__ = ["attach", "from_args", "load_probe_input"]
