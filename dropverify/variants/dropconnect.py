"""DropConnect (Wan et al. 2013): dropout on the weights of a linear layer.

Training: one Bernoulli(1 - p) mask ``M`` over the weight matrix per forward call, shared
by every row of the batch, with inverted scaling::

    y = x (W * M / (1 - p))^T + b          x: (N, in), W: (out, in), b: (out,)

Eval: the mean network ``y = x W^T + b``.

Probing. With ``x = I`` (N == in) the output *is* the masked weight matrix:
``y[i, j] = W[j, i] M[j, i] / (1 - p) + b[j]``, so the decoded grid has the output's
shape (N, out) = (in, out) and its cell (i, j) is weight (j, i). A dropped weight leaves
exactly ``b[j]``; a kept one ``W[j, i]/(1-p) + b[j]``.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import numpy as np

from ..contracts import (P_SPEC, Contract, Decoded, Inputs, ParamSpec, Params, Shape,
                         all_axes_independent, inverted_scale, register, value_tolerance)
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
    """(dx, dW, db) with the weight mask decoded from y (probe input x = I)."""
    x, w, _ = _xwb(inputs)
    g = np.asarray(grad_out, np.float64)
    if params["p"] == 0.0:
        m = np.ones_like(w)
    else:
        m = (~decode_weight_mask(inputs, y, params).dropped).T * inverted_scale(params["p"])
    return g @ (w * m), (g.T @ x) * m, g.sum(axis=0)


def probe(shape: Shape, rng: np.random.Generator, dtype: Any = np.float64) -> Inputs:
    """``(x, W, b)`` for an input shape (N, in) with N == in: x = I, and W (in, in), b (in,)
    with magnitudes in [0.5, 1.5) and random signs (bounded away from 0, so every kept
    weight moves y[i, j] away from b[j] by at least 0.5).

    ``make_inputs`` does not see the parameters, so the probe weight is square (out = in);
    the layer takes out_features from the weight it is given.
    """
    if len(shape) != 2 or shape[0] not in (shape[1], 0):
        raise InvalidArgument(
            f"dropconnect probe shape={tuple(shape)}, but should be (N, in_features) with N == in_features "
            "(the probe input is the identity matrix) or N == 0")
    n = shape[1]

    def signed(size: Tuple[int, ...]) -> np.ndarray:
        return (rng.choice([-1.0, 1.0], size=size) * (0.5 + rng.random(size))).astype(dtype)

    return np.eye(shape[0], n, dtype=dtype), signed((n, n)), signed((n,))


DROPCONNECT = register(Contract(
    name="dropconnect",
    summary="DropConnect linear layer: each weight kept with probability 1-p (one mask per call) and scaled by 1/(1-p).",
    reference="Wan, Zeiler, Zhang, LeCun, Fergus 2013, Regularization of Neural Networks using DropConnect, ICML",
    params=(
        P_SPEC(doc="probability of dropping each weight"),
        ParamSpec("in_features", int, 32, 1, None, doc="input width"),
        ParamSpec("out_features", int, 32, 1, None, doc="output width"),
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
    gradient_rule="dx = g (W*M/(1-p)), dW = (g^T x) * M/(1-p), db = sum_n g, M the forward's weight mask",
    input_gradients=_gradients,
    make_inputs=probe,
    decode=decode_weight_mask,
    p_one_allowed=True,
    multiplicative=False,
    notes=(
        "Inputs are (x, W, b); the mask is on W, one draw per weight per call, shared by the batch.",
        "The decoded grid is the output (N, out) on the probe x = I: cell (i, j) is weight (j, i).",
        "p = 1 drops every weight: y = b, dW = 0, dx = 0, db = sum of grad_out.",
        "Eval is the mean network x W^T + b; Wan et al.'s Gaussian moment-matching inference is "
        "DropConnectLinear.infer_gaussian.",
    ),
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
    bias : bool
        Whether the layer owns a bias (default True).
    rng, seed
        The numpy Generator (or its seed) for the weight init and every mask.
    """

    contract = DROPCONNECT

    def __init__(self, in_features: int = 32, out_features: int = 32, p: float = 0.5, bias: bool = True, *,
                 rng: Optional[np.random.Generator] = None, seed: Optional[int] = None) -> None:
        super().__init__(rng=rng, seed=seed, p=p, in_features=in_features, out_features=out_features)
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
        """``y`` (N, out) in x's dtype; uses ``weight``/``bias`` when given, else the layer's own."""
        x, w, b = self._resolve(x, weight, bias)
        dt = np.result_type(x, w)
        if not self.training or self.p == 0.0:
            w_eff, keep = w.astype(dt), None
        else:
            keep = self.rng.random(w.shape) >= self.p
            w_eff = np.where(keep, w * dt.type(inverted_scale(self.p)), dt.type(0))
        y = x @ w_eff.T
        if b is not None:
            y = y + b
        self._saved = (x, w_eff, keep, (x.dtype, w.dtype, None if b is None else b.dtype))
        return y.astype(x.dtype, copy=False)

    __call__ = forward

    def _backward(self, grad_out: np.ndarray) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
        """``(dx, dW, db)`` of ``sum(grad_out * y)`` with the last forward's mask, each in its
        input's dtype (db is None when no bias was used)."""
        x, w_eff, keep, (x_dt, w_dt, b_dt) = self._saved
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
