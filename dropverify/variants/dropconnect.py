"""DropConnect (Wan et al. 2013): dropout on the weights of a linear layer.

Training: Bernoulli(1 - p) weight masks with inverted scaling. Two conventions, chosen by
the parameter ``mask_per``:

* ``"batch"`` (default): one mask ``M`` (out, in) per forward call, shared by every row of
  the batch -- ``y = x (W * M / (1 - p))^T + b``. This is what most library layers do
  (one masked weight per call, e.g. WeightDrop / fastai WeightDropout).
* ``"sample"``: one mask ``M_n`` (out, in) per sample, as Wan et al. 2013 describe
  (section 3) -- ``y[n] = (W * M_n / (1 - p)) x[n] + b``; the masks are one
  (N, out, in) boolean array, applied with an einsum.

Eval: the mean network ``y = x W^T + b`` (both conventions).

Probing. With ``x = I`` (N == in) the output *is* the masked weight matrix:
``y[i, j] = W[j, i] M_i[j, i] / (1 - p) + b[j]`` (``M_i = M`` per batch), so the decoded grid
has the output's shape (N, out) = (in, out) and its cell (i, j) is weight (j, i) of sample
i's mask. A dropped weight leaves exactly ``b[j]``; a kept one ``W[j, i]/(1-p) + b[j]``.
The grid's cells are independent Bernoulli(p) under both conventions, so the rate, moment
and independence checks hold for both; sample i's other columns are invisible on this probe.

The *packed* probe (:func:`packed_probe`, float64) reads every sample's whole mask row from
one output: ``x[i, k] = +-d_i 2^-r`` and ``W[j, k] = +-a_j`` make ``(y[i, j] - b[j]) / (s a_j d_i)``
a signed binary number whose digits are ``M_i[j, k]`` (up to PACK_BITS = 40 columns per
sample, exact in float64 with a 40x rounding margin). :func:`decode_sample_masks` reads the
(N, out, in) masks back from either probe; the gradient rule and the mask-convention check
use it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple

import numpy as np

from ..contracts import (P_SPEC, Contract, Decoded, Inputs, ParamSpec, Params, Shape,
                         all_axes_independent, inverted_scale, plant_zeros, probe_magnitudes, register,
                         signed_magnitudes, signed_probe, value_tolerance)
from ..errors import InvalidArgument
from ._base import Variant, as_float_array


def _xwb(inputs: Inputs) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, w, b = (np.asarray(a, np.float64) for a in inputs[:3])
    return x, w, b


def _dropped(inputs: Inputs, params: Params) -> np.ndarray:
    """A dropped weight (j, i) leaves y[i, j] = b[j]."""
    return _xwb(inputs)[2][None, :]


def _kept(inputs: Inputs, params: Params, dropped: np.ndarray) -> np.ndarray:
    """A kept weight (j, i) gives y[i, j] = W[j, i]/(1-p) + b[j] (probe input x = I)."""
    _, w, b = _xwb(inputs)
    return w.T * inverted_scale(params["p"]) + b[None, :]


def _mean(inputs: Inputs, params: Params) -> np.ndarray:
    x, w, b = _xwb(inputs)
    if params["p"] >= 1.0:  # every weight dropped: y = b exactly
        return np.broadcast_to(b, (x.shape[0], b.shape[0])).copy()
    return x @ w.T + b


def _variance(inputs: Inputs, params: Params) -> np.ndarray:
    x, w, _ = _xwb(inputs)
    p = params["p"]
    if p >= 1.0:
        return np.zeros((x.shape[0], w.shape[0]))
    return p / (1.0 - p) * ((x * x) @ (w * w).T)


def _eval(inputs: Inputs, params: Params) -> np.ndarray:
    x, w, b = _xwb(inputs)
    return x @ w.T + b


PACK_BITS = 40
"""Columns one sample's packed probe row carries: 2^39 times float64's rounding of y
(about 3e-14 relative) stays below 0.02, far inside the 0.5 that separates two digits."""

MASK_CONVENTIONS = ("batch", "sample")


def windows(n_in: int) -> Tuple[np.ndarray, ...]:
    """Column windows of the packed probe: ceil(in / PACK_BITS) near-equal runs of columns."""
    return tuple(np.array_split(np.arange(n_in), max(1, -(-n_in // PACK_BITS))))


def packed_probe(shape: Shape, rng: np.random.Generator, dtype: Any = np.float64) -> Inputs:
    """``(x, W, b)`` for shape (N, in) whose output carries every sample's whole mask row.

    Row i covers column window ``i mod len(windows(in))``: ``x[i, k] = +-d_i 2^-r`` (random
    signs, r = 0, 1, ... along the window, d_i in [0.5, 1.5)), 0 elsewhere; ``W[j, k] = +-a_j`` (random signs,
    a_j in [0.5, 1.5)), square (out = in); ``b`` signed, magnitudes in [0.5, 1.5). Use in
    float64 (float32 has too few digits).
    """
    if len(shape) != 2:
        raise InvalidArgument(f"dropconnect packed probe shape={tuple(shape)}, but should be (N, in_features)")
    n, n_in = shape
    wins = windows(n_in)
    x = np.zeros((n, n_in))
    d = 0.5 + rng.random(n)
    for w, cols in enumerate(wins):  # a handful of windows, not samples
        rows = np.arange(w, n, len(wins))
        x[np.ix_(rows, cols)] = d[rows, None] * 2.0 ** -np.arange(len(cols))[None, :]
    x *= rng.choice([-1.0, 1.0], size=x.shape)
    w_mag = 0.5 + rng.random((n_in, 1))
    weight = rng.choice([-1.0, 1.0], size=(n_in, n_in)) * w_mag
    bias = rng.choice([-1.0, 1.0], size=n_in) * (0.5 + rng.random(n_in))
    return x.astype(dtype), weight.astype(dtype), bias.astype(dtype)


@dataclass(frozen=True)
class SampleMasks:
    """Every sample's weight mask as read from one output.

    ``keep`` (N, out, in) bool: sample n's kept weights, meaningful where ``known``;
    ``known`` (N, out, in) bool: the bit entered sample n's output (x[n, k] != 0 and
    W[j, k] != 0); ``valid`` (N, out) bool: the output decodes exactly (within 0.25 of a
    whole number of digits).
    """

    keep: np.ndarray
    known: np.ndarray
    valid: np.ndarray


def decode_sample_masks(inputs: Inputs, y: np.ndarray, params: Params) -> SampleMasks:
    """Read each sample's weight mask from an output on the identity or the packed probe.

    Row i's nonzero inputs ``|x[i, k]| = d_i 2^-r_k`` (identity: one column, d_i = 1) and
    ``|W[j, k]|`` equal along the row's columns make ``u = (y - b) / (s |W| d)`` plus the
    offset of the negative terms a whole number whose binary digits are the kept flags
    (flipped where W x < 0). p = 0 keeps and p = 1 drops everything (no draw to read).
    """
    x, w, b = _xwb(inputs)
    n, n_in = x.shape
    observed = x != 0
    shape = (n, w.shape[0], n_in)
    y64 = np.asarray(y, np.float64)
    if params["p"] in (0.0, 1.0):
        want = (x @ w.T + b) if params["p"] == 0.0 else np.broadcast_to(b, y64.shape)
        valid = np.isclose(y64, want, *value_tolerance(np.asarray(y).dtype))
        return SampleMasks(np.full(shape, params["p"] == 0.0), np.ones(shape, bool), valid)
    ax = np.abs(x)
    d = np.where(observed.any(axis=1), ax.max(axis=1), 1.0)                # (N,)
    lead = ax.argmax(axis=1)                                               # the column with r = 0
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(observed, np.rint(np.log2(d[:, None] / np.where(observed, ax, 1.0))), 0).astype(np.int64)
    width = np.where(observed.any(axis=1), observed.sum(axis=1), 1)        # (N,) digits per row
    a = np.abs(w[:, lead]).T                                               # (N, out)
    known = observed[:, None, :] & (w != 0)[None, :, :]
    neg = (np.sign(w)[None, :, :] * np.sign(x)[:, None, :]) < 0           # (N, out, in)
    offset = np.einsum("noi,ni->no", neg, 2.0 ** -r * observed)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        u = ((y64 - b) / (inverted_scale(params["p"]) * np.where(a > 0, a, 1.0) * d[:, None]) + offset) \
            * 2.0 ** (width - 1)[:, None]
    finite = np.isfinite(u)
    whole = np.where(finite, np.rint(u), 0.0)
    valid = finite & (np.abs(u - whole) <= 0.25) & (whole >= 0) & (whole < 2.0 ** width[:, None])
    shifts = np.clip(width[:, None] - 1 - r, 0, 62)                        # (N, in)
    digits = (np.clip(whole, 0, 2.0 ** 62).astype(np.int64)[:, :, None] >> shifts[:, None, :]) & 1
    keep = np.where(finite[:, :, None], (digits == 1) ^ neg, True)         # an overflowing value reads as kept
    return SampleMasks(keep & known, known, valid)


def full_masks(masks: SampleMasks, mask_per: str) -> np.ndarray:
    """(N, out, in) float: 1.0 kept, 0.0 dropped, NaN where the output does not say.

    Each sample's known bits are its own. Per batch, a bit a sample did not show is taken
    from a sample that did (the declared sharing) -- unless two samples of this call show
    different values for one weight: then the call itself shows per-sample masks, and
    unseen bits stay unknown, so the gradient is checked against what the layer did.
    """
    out = np.where(masks.known, masks.keep.astype(np.float64), np.nan)
    if mask_per == "batch" and out.size:
        kept = np.any(masks.keep & masks.known, axis=0)
        dropped = np.any(~masks.keep & masks.known, axis=0)
        if not np.any(kept & dropped):
            shared = np.where(kept, 1.0, np.where(dropped, 0.0, np.nan))      # (out, in)
            out = np.where(masks.known, out, shared[None])
    return out


def decode_weight_mask(inputs: Inputs, y: np.ndarray, params: Params) -> Decoded:
    """Read the weight mask back from an output on the probe ``x = I``.

    Returns a :class:`Decoded` on the (N, out) grid: ``dropped[i, j]`` is True where weight
    (j, i) was dropped (y equals b[j]), ``valid`` where y equals the dropped or kept value,
    and ``multiplier`` = (y - b) / W^T, the weight's multiplier M/(1-p).
    """
    _, w, b = _xwb(inputs)
    y64 = np.asarray(y, np.float64)
    rtol, atol = value_tolerance(np.asarray(y).dtype)
    dropped = np.isclose(y64, b[None, :], rtol=rtol, atol=atol)
    valid = dropped | np.isclose(y64, _kept(inputs, params, dropped), rtol=rtol, atol=atol)
    with np.errstate(divide="ignore", invalid="ignore"):
        multiplier = np.where(w.T != 0, (y64 - b[None, :]) / w.T, np.nan)
    return Decoded(dropped=dropped, valid=valid, multiplier=multiplier)


def _gradients(inputs: Inputs, y: np.ndarray, grad_out: np.ndarray,
               params: Params) -> Tuple[np.ndarray, ...]:
    """(dx, dW, db) with each sample's weight mask decoded from the same output y.

    ``dx[n] = g[n] (W * M_n) s``, ``dW = s sum_n (g[n]^T x[n]) * M_n``, ``db = sum_n g[n]`` (per
    batch every M_n is the one mask). Entries that depend on mask bits the output does not
    show are NaN (per sample on the identity probe, dx off each sample's own column); the
    packed probe shows every bit, so nothing is NaN there.
    """
    x, w, _ = _xwb(inputs)
    g = np.asarray(grad_out, np.float64)
    s = inverted_scale(params["p"])
    m = full_masks(decode_sample_masks(inputs, y, params), params.get("mask_per", "batch"))
    dx = s * np.einsum("no,oi,noi->ni", g, w, m)
    dw = s * np.einsum("no,ni,noi->oi", g, x, np.nan_to_num(m))  # an unknown bit meets x = 0
    return dx, dw, g.sum(axis=0)


def probe(shape: Shape, rng: np.random.Generator, dtype: Any = np.float64, zeros: bool = False) -> Inputs:
    """``(x, W, b)`` for an input shape (N, in) with N == in: x = I, W (in, in) signed and
    wide-range (``signed_probe``: random signs, magnitudes log-uniform over
    ``probe_magnitudes(dtype)`` = [lo, hi), e.g. 1e-6 .. 1e6 in float64, 0.1 .. 10 in float16),
    and b (in,) with random signs and magnitudes log-uniform in [lo, 10 lo): every kept weight
    moves y[i, j] away from b[j] by at least lo, which is >= |b[j]| / 10 (a wide relative
    margin), and b[j] is never lost in the rounding of W/(1-p) + b.
    ``zeros=True`` plants exact zeros in W (there kept == dropped == b[j]) and in b.

    ``make_inputs`` does not see the parameters, so the probe weight is square (out = in);
    the layer takes out_features from the weight it is given.
    """
    if len(shape) != 2 or shape[0] not in (shape[1], 0):
        raise InvalidArgument(
            f"dropconnect probe shape={tuple(shape)}, but should be (N, in_features) with N == in_features "
            "(the probe input is the identity matrix) or N == 0")
    n = shape[1]
    lo, _ = probe_magnitudes(dtype)
    w = signed_probe((n, n), rng, dtype)
    b = (np.where(rng.random(n) < 0.5, -1.0, 1.0) * signed_magnitudes((n,), rng, dtype, lo, 10 * lo)).astype(dtype)
    if zeros:
        w, b = plant_zeros(w, rng), plant_zeros(b, rng)
    return np.eye(shape[0], n, dtype=dtype), w, b


DROPCONNECT = register(Contract(
    name="dropconnect",
    summary=("DropConnect linear layer: each weight kept with probability 1-p and scaled by 1/(1-p); one "
             "mask per call (mask_per='batch', default) or one per sample (mask_per='sample')."),
    reference="Wan, Zeiler, Zhang, LeCun, Fergus 2013, Regularization of Neural Networks using DropConnect, ICML",
    params=(
        P_SPEC(doc="probability of dropping each weight"),
        ParamSpec("in_features", int, 32, 1, None, doc="input width"),
        ParamSpec("out_features", int, 32, 1, None, doc="output width"),
        ParamSpec("mask_per", str, "batch", choices=MASK_CONVENTIONS,
                  doc="'batch': one weight mask per call shared by the batch; 'sample': one per sample "
                      "(Wan et al. 2013)"),
    ),
    layout="x (N, in_features), weight (out_features, in_features), bias (out_features,)",
    default_shape=(32, 32),
    ranks=(2,),
    structure="elementwise",
    shared_axes=all_axes_independent,
    drop_probability=lambda params, shape: params["p"],
    dropped_value=_dropped,
    kept_value=_kept,
    mean_scope="elementwise",
    output_mean=_mean,
    output_variance=_variance,
    eval_output=_eval,
    gradient_rule=("dx[n] = g[n] (W*M_n/(1-p)), dW = sum_n (g[n]^T x[n]) * M_n/(1-p), db = sum_n g[n], M_n the "
                   "forward's weight mask of sample n (the one mask per batch)"),
    input_gradients=_gradients,
    make_inputs=probe,
    decode=decode_weight_mask,
    p_one_allowed=True,
    multiplicative=False,
    notes=(
        "Inputs are (x, W, b); the mask is on W, one draw per weight.",
        "mask_per='batch' (default): one mask per call, shared by every sample of the batch (what most "
        "library layers do: one masked weight per call).",
        "mask_per='sample': one mask per sample, (N, out, in) draws per call, as Wan et al. 2013 describe.",
        "The decoded grid is the output (N, out) on the probe x = I: cell (i, j) is weight (j, i) of sample "
        "i's mask; its cells are independent Bernoulli(p) under both conventions.",
        "The gradient check and weight_mask_convention_exact use the packed probe (float64), which shows "
        "every sample's whole mask; gradients are checked against the masks of the same call.",
        "p = 1 drops every weight: y = b, dW = 0, dx = 0, db = sum of grad_out.",
        "Eval is the mean network x W^T + b; Wan et al.'s Gaussian moment-matching inference is "
        "DropConnectLinear.infer_gaussian.",
    ),
    extra={"gradient_probe": packed_probe, "sample_masks": decode_sample_masks},
))


class DropConnectLinear(Variant):
    """Linear layer with DropConnect on its weight (see the module docstring).

    Parameters
    ----------
    in_features, out_features : int
        Widths; the layer owns ``weight`` (out, in) and ``bias`` (out,), initialised
        U(-1/sqrt(in), 1/sqrt(in)) from its own rng (PyTorch's default scale).
    p : float
        Drop probability of each weight, in [0, 1].
    mask_per : {"batch", "sample"}
        One weight mask per call shared by the batch (default), or one per sample.
    bias : bool
        Whether the layer owns a bias (default True).
    rng, seed
        The numpy Generator (or its seed) for the weight init and every mask.
    """

    contract = DROPCONNECT

    def __init__(self, in_features: int = 32, out_features: int = 32, p: float = 0.5, bias: bool = True, *,
                 mask_per: str = "batch", rng: Optional[np.random.Generator] = None,
                 seed: Optional[int] = None) -> None:
        super().__init__(rng=rng, seed=seed, p=p, in_features=in_features, out_features=out_features,
                         mask_per=mask_per)
        n_in, n_out = self.params["in_features"], self.params["out_features"]
        bound = 1.0 / np.sqrt(n_in)
        self.weight = self.rng.uniform(-bound, bound, (n_out, n_in))
        self.bias: Optional[np.ndarray] = self.rng.uniform(-bound, bound, n_out) if bias else None

    def _resolve(self, x: Any, weight: Any, bias: Any) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
        x = as_float_array(x, "x")
        self.contract.check_shape(x.shape)
        w = as_float_array(self.weight if weight is None else weight, "weight")
        b = self.bias if bias is None else bias
        b = None if b is None else as_float_array(b, "bias")
        if w.ndim != 2 or w.shape[1] != x.shape[1]:
            raise InvalidArgument(f"weight.shape={w.shape}, but should be (out_features, {x.shape[1]}) "
                                  f"for x of shape {x.shape}")
        if b is not None and b.shape != (w.shape[0],):
            raise InvalidArgument(f"bias.shape={b.shape}, but should be ({w.shape[0]},)")
        return x, w, b

    def forward(self, x: Any, weight: Any = None, bias: Any = None) -> np.ndarray:
        """``y`` (N, out) in x's dtype; uses ``weight``/``bias`` when given, else the layer's own.

        The keep mask is (out, in) per batch, (N, out, in) per sample (``mask_per``)."""
        x, w, b = self._resolve(x, weight, bias)
        dt = np.result_type(x, w)
        if not self.training or self.p == 0.0:
            w_eff, keep = w.astype(dt), None
        else:
            lead = (x.shape[0],) if self.params["mask_per"] == "sample" else ()
            keep = self.rng.random(lead + w.shape) >= self.p
            w_eff = np.where(keep, w * dt.type(inverted_scale(self.p)), dt.type(0))
        y = x @ w_eff.T if w_eff.ndim == 2 else np.einsum("noi,ni->no", w_eff, x)
        if b is not None:
            y = y + b
        self._saved = (x, w_eff, keep, (x.dtype, w.dtype, None if b is None else b.dtype))
        return y.astype(x.dtype, copy=False)

    __call__ = forward

    def _backward(self, grad_out: np.ndarray) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
        """``(dx, dW, db)`` of ``sum(grad_out * y)`` with the last forward's mask, each in its
        input's dtype (db is None when no bias was used)."""
        x, w_eff, keep, (x_dt, w_dt, b_dt) = self._saved
        scale = np.result_type(grad_out, x).type(inverted_scale(self.p))
        if w_eff.ndim == 3:  # one mask per sample
            dx = np.einsum("no,noi->ni", grad_out, w_eff)
            dw = np.einsum("no,ni,noi->oi", grad_out, x, np.where(keep, scale, scale.dtype.type(0)))
        else:
            dx = grad_out @ w_eff
            dw = grad_out.T @ x
            if keep is not None:
                dw = np.where(keep, dw * dw.dtype.type(inverted_scale(self.p)), dw.dtype.type(0))
        db = None if b_dt is None else grad_out.sum(axis=0).astype(b_dt, copy=False)
        return dx.astype(x_dt, copy=False), dw.astype(w_dt, copy=False), db

    def infer_gaussian(self, x: Any, n_samples: int,
                       activation: Optional[Callable[[np.ndarray], np.ndarray]] = None,
                       weight: Any = None, bias: Any = None) -> np.ndarray:
        """Wan et al. 2013 inference: average ``activation(u)`` over ``u ~ N(mu, s^2)``.

        Per output unit, the pre-activation under the (inverted) DropConnect mask has
        ``mu = x W^T + b`` and ``s^2 = p/(1-p) * (x^2)(W^2)^T`` (sum of independent scaled
        Bernoulli terms, moment-matched by a Gaussian). ``n_samples`` draws come from the
        layer's rng; ``activation`` defaults to the identity. Returns float64 (N, out).
        At p = 1 the pre-activation is exactly b.
        """
        if int(n_samples) != n_samples or n_samples < 1:
            raise InvalidArgument(f"n_samples={n_samples!r}, but should be an integer >= 1")
        x, w, b = self._resolve(x, weight, bias)
        x, w = x.astype(np.float64), w.astype(np.float64)
        b64 = np.zeros(w.shape[0]) if b is None else b.astype(np.float64)
        if self.p >= 1.0:
            mu, sd = np.broadcast_to(b64, (x.shape[0], w.shape[0])), np.zeros((x.shape[0], w.shape[0]))
        else:
            mu = x @ w.T + b64
            sd = np.sqrt(self.p / (1.0 - self.p) * ((x * x) @ (w * w).T))
        u = mu + sd * self.rng.standard_normal((int(n_samples),) + mu.shape)
        act = (lambda v: v) if activation is None else activation
        return np.asarray(act(u), np.float64).mean(axis=0)


VARIANTS = (DropConnectLinear,)
