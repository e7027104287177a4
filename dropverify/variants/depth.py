"""Depth-wise dropout family: stochastic depth (Huang et al. 2016) and DropPath (Larsson et al. 2017).

Both drop the output of a residual branch for a whole sample (or a whole batch); the caller
adds the identity shortcut, as ``torchvision.ops.stochastic_depth`` and timm's ``DropPath``
expect. :class:`StochasticDepthResidual` does that addition for a given branch, and the
module functions give the paper's linear-decay survival schedule and its expected depth.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import numpy as np

from ..contracts import (zero_value, P_SPEC, Contract, ParamSpec, Shape, inverted_scale, multiplier_gradients,
                         register)
from ..errors import InvalidArgument, out_of_range
from ._base import BernoulliMaskVariant, as_float_array


# ------------------------------------------------------------------------------
# survival schedule (Huang et al. 2016, section 3: linear decay rule)

_NUM_BLOCKS = ParamSpec("num_blocks", int, 1, 1.0, None)
_PROB = ParamSpec("final_survival", float, 0.5, 0.0, 1.0)
_DROP = ParamSpec("final_drop", float, 0.5, 0.0, 1.0)


def linear_decay_survival(num_blocks: int, final_survival: float) -> np.ndarray:
    """Survival probabilities ``p_l = 1 - (l / L)(1 - p_L)`` for blocks ``l = 1 .. L``.

    Parameters
    ----------
    num_blocks : int
        ``L >= 1``, the number of residual blocks.
    final_survival : float
        ``p_L`` in [0, 1], the survival probability of the last block.

    Returns
    -------
    numpy.ndarray
        float64 array of length ``L``, non-increasing, in [p_L, 1]. The first entry is
        ``1 - (1 - p_L) / L`` and the last is exactly ``p_L`` (block 0, the input, is not
        part of the schedule; a loop over ``l = 0 .. L-1`` never reaches ``p_L``).

    Raises
    ------
    InvalidArgument
        ``num_blocks`` not an integer >= 1, or ``final_survival`` outside [0, 1].
    """
    n = _NUM_BLOCKS.validate(num_blocks)
    p_last = _PROB.validate(final_survival)
    depth = np.arange(1, n + 1, dtype=np.float64)
    survival = 1.0 - depth * (1.0 - p_last) / n
    survival[-1] = p_last          # exact: 1 - (1 - p_L) can differ from p_L by one ulp
    return survival


def linear_decay_drop_rates(num_blocks: int, final_drop: float) -> np.ndarray:
    """Drop probabilities ``1 - p_l`` of :func:`linear_decay_survival`: ``(l / L) * final_drop``.

    The last entry is exactly ``final_drop``, the first ``final_drop / L`` (timm's
    ``linspace(0, rate, L)`` instead starts at 0 and is a different schedule).
    """
    n = _NUM_BLOCKS.validate(num_blocks)
    q = _DROP.validate(final_drop)
    rates = np.arange(1, n + 1, dtype=np.float64) * q / n
    rates[-1] = q
    return rates


def expected_depth(survival: Any) -> float:
    """Expected number of active residual blocks, ``E[depth] = sum_l p_l`` (Huang et al. 2016).

    Raises InvalidArgument if ``survival`` is not a 1-D array of probabilities in [0, 1].
    """
    s = np.asarray(survival, dtype=np.float64)
    if s.ndim != 1 or not np.all((s >= 0.0) & (s <= 1.0)):
        raise out_of_range("survival", survival, "a 1-D array of probabilities in [0, 1]")
    return float(np.sum(s))


# ------------------------------------------------------------------------------
# contract helpers: kept scale s, E[y] = x (1-p) s, Var[y] = x^2 s^2 p (1-p)

def _row_mask_shape(shape: Shape) -> Shape:
    return tuple(shape[:1]) + (1,) * (len(shape) - 1)


def _sd_scale(params) -> float:
    return inverted_scale(params["p"]) if params["scaling"] == "inverted" else 1.0


def _dp_scale(params) -> float:
    return inverted_scale(params["p"]) if params["scale_by_keep"] else 1.0


def _moments(scale_of: Callable) -> Tuple[Callable, Callable, Callable]:
    def kept(inputs, params, dropped):
        return np.asarray(inputs[0], np.float64) * scale_of(params)

    def mean(inputs, params):
        return np.asarray(inputs[0], np.float64) * ((1.0 - params["p"]) * scale_of(params))

    def variance(inputs, params):
        x = np.asarray(inputs[0], np.float64)
        s, p = scale_of(params), params["p"]
        return x * x * (s * s * p * (1.0 - p))

    return kept, mean, variance


def _sd_shared_axes(params, shape: Shape) -> Tuple[int, ...]:
    start = 1 if params["mode"] == "row" else 0
    return tuple(range(start, len(shape)))


def _sd_eval(inputs, params):
    x = np.asarray(inputs[0], np.float64)
    return x if params["scaling"] == "inverted" else x * (1.0 - params["p"])


_sd_kept, _sd_mean, _sd_var = _moments(_sd_scale)
_dp_kept, _dp_mean, _dp_var = _moments(_dp_scale)

STOCHASTIC_DEPTH = register(Contract(
    name="stochastic_depth",
    summary=("Stochastic depth on a residual branch's output: y = x * b * scale, b ~ Bernoulli(1-p), "
             "one draw per sample (row) or per call (batch); the caller adds the identity."),
    reference="Huang et al. 2016, ECCV, 'Deep Networks with Stochastic Depth'; torchvision.ops.stochastic_depth",
    params=(
        P_SPEC(doc="probability of dropping the branch (1 - survival probability)"),
        ParamSpec("mode", str, "row", choices=("row", "batch"),
                  doc="row: one draw per sample; batch: one draw for the whole batch"),
        ParamSpec("scaling", str, "inverted", choices=("inverted", "eval_scale"),
                  doc="inverted: kept / (1-p) in training, identity at eval; "
                      "eval_scale: unscaled in training, x * (1-p) at eval"),
    ),
    layout="(N, ...) residual-branch output",
    default_shape=(128, 8, 4, 4),
    ranks=(1, 2, 3, 4, 5),
    structure="shared",
    shared_axes=_sd_shared_axes,
    drop_probability=lambda params, shape: params["p"],
    dropped_value=zero_value,
    kept_value=_sd_kept,
    mean_scope="elementwise",
    output_mean=_sd_mean,
    output_variance=_sd_var,
    eval_output=_sd_eval,
    gradient_rule="dx = grad_out * m, m in {0, scale} the forward per-sample (or per-batch) mask",
    input_gradients=multiplier_gradients,
    p_one_allowed=True,
    notes=(
        "scaling='inverted' (torchvision's convention): kept samples are divided by the survival "
        "rate 1-p in training and eval is the identity; at p=1 the output is all zeros.",
        "scaling='eval_scale' (the paper's convention): training output is x or 0, unscaled; the "
        "eval output is x * (1-p), so E[y|x] = x (1-p) in both modes.",
        "mode='row' shares one draw over every axis but 0; mode='batch' shares one draw over all axes.",
        "Applied to the residual branch only: a skipped block returns the shortcut x + 0 = x.",
    ),
    extra={"schedule": linear_decay_survival, "expected_depth": expected_depth,
           "drop_rates": linear_decay_drop_rates},
))

DROP_PATH = register(Contract(
    name="drop_path",
    summary="DropPath: one Bernoulli(1-p) keep draw per sample, broadcast over all other axes.",
    reference="Larsson et al. 2017, ICLR, 'FractalNet'; timm.layers.drop_path / DropPath",
    params=(
        P_SPEC(doc="probability of dropping a sample's path"),
        ParamSpec("scale_by_keep", bool, True,
                  doc="divide kept samples by 1-p (True) or leave them unscaled (False)"),
    ),
    layout="(N, ...) residual-branch output",
    default_shape=(128, 8, 4, 4),
    ranks=(1, 2, 3, 4, 5),
    structure="shared",
    shared_axes=lambda params, shape: tuple(range(1, len(shape))),
    drop_probability=lambda params, shape: params["p"],
    dropped_value=zero_value,
    kept_value=_dp_kept,
    mean_scope="elementwise",
    output_mean=_dp_mean,
    output_variance=_dp_var,
    eval_output=lambda inputs, params: np.asarray(inputs[0]),
    gradient_rule="dx = grad_out * m, m in {0, 1/(1-p)} (or {0, 1}) the forward per-sample mask",
    input_gradients=multiplier_gradients,
    p_one_allowed=True,
    notes=(
        "Per-sample and scaled by 1/keep by design (timm): not a bug.",
        "scale_by_keep=False: kept samples are not rescaled, so E[y|x] = x (1-p) in training while "
        "eval returns x unchanged: not expectation preserving.",
        "p=1 gives zeros (no division by the zero keep probability).",
    ),
))


# ------------------------------------------------------------------------------
# layers

class StochasticDepth(BernoulliMaskVariant):
    """Stochastic depth on a branch output: ``y = x * b * scale``, ``b ~ Bernoulli(1 - p)``.

    ``mode='row'`` draws one ``b`` per sample (mask ``(N, 1, ..., 1)``), ``mode='batch'``
    one per call. ``scaling='inverted'``: ``scale = 1/(1-p)``, eval is the identity;
    ``scaling='eval_scale'``: ``scale = 1``, eval returns ``x * (1-p)``.
    """

    contract = STOCHASTIC_DEPTH

    def mask_shape(self, shape: Shape) -> Shape:
        if self.params["mode"] == "batch":
            return (1,) * len(shape)
        return _row_mask_shape(shape)

    def scale(self) -> float:
        return _sd_scale(self.params)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        if not self.training and self.params["scaling"] == "eval_scale" and self.p != 0.0:
            factor = x.dtype.type(1.0 - self.p)
            self._saved = ("eval_scale", factor)
            return x * factor
        return super()._forward(x)

    def _backward(self, grad_out: np.ndarray) -> np.ndarray:
        if self._saved[0] == "eval_scale":
            return grad_out * grad_out.dtype.type(self._saved[1])
        return super()._backward(grad_out)


class DropPath(BernoulliMaskVariant):
    """timm's DropPath: one keep draw per sample; kept samples divided by ``1 - p``
    when ``scale_by_keep`` (default), else left unscaled. Eval is the identity."""

    contract = DROP_PATH

    def mask_shape(self, shape: Shape) -> Shape:
        return _row_mask_shape(shape)

    def scale(self) -> float:
        return _dp_scale(self.params)


class StochasticDepthResidual:
    """A residual block ``x + stochastic_depth(branch(x))``.

    Where the branch is dropped the block returns ``x`` itself, bit for bit; when every
    sample is dropped the branch is not evaluated at all (the paper's compute saving).

    Parameters
    ----------
    branch : callable
        ``branch(x)`` returns an array of ``x``'s shape. If it has ``backward(grad)``,
        :meth:`backward` chains through it.
    p, mode, scaling, rng, seed
        As for :class:`StochasticDepth`.
    """

    def __init__(self, branch: Callable[[np.ndarray], Any], p: float = 0.5, mode: str = "row",
                 scaling: str = "inverted", *, rng: Optional[np.random.Generator] = None,
                 seed: Optional[int] = None) -> None:
        if not callable(branch):
            raise out_of_range("branch", branch, "a callable branch(x) -> array")
        self.branch = branch
        self.drop = StochasticDepth(p=p, mode=mode, scaling=scaling, rng=rng, seed=seed)
        self._keep: Optional[np.ndarray] = None
        self._ran_branch = False

    @property
    def rng(self) -> np.random.Generator:
        return self.drop.rng

    @rng.setter
    def rng(self, value: np.random.Generator) -> None:
        self.drop.rng = value

    @property
    def training(self) -> bool:
        return self.drop.training

    @training.setter
    def training(self, mode: bool) -> None:
        self.drop.training = bool(mode)

    def train(self, mode: bool = True) -> "StochasticDepthResidual":
        self.drop.train(mode)
        return self

    def eval(self) -> "StochasticDepthResidual":
        return self.train(False)

    def forward(self, x: Any) -> np.ndarray:
        """``x + stochastic_depth(branch(x))``; dropped samples are ``x`` exactly."""
        x = as_float_array(x)
        self.drop.contract.check_shape(x.shape)
        drop = self.drop
        if not drop.training or drop.p == 0.0:
            self._keep, self._ran_branch = None, True
            return x + drop.forward(self._branch(x))
        keep = drop.draw_keep(x.shape)
        self._keep = keep
        self._ran_branch = bool(keep.any())
        if not self._ran_branch:
            drop._saved = ("mask", keep, x.dtype.type(0))
            return x
        out = self._branch(x)
        scaled = out * x.dtype.type(drop.scale())
        drop._saved = ("mask", keep, x.dtype.type(drop.scale()))
        return np.where(keep, x + scaled, x)

    __call__ = forward

    def _branch(self, x: np.ndarray) -> np.ndarray:
        out = np.asarray(self.branch(x))
        if out.shape != x.shape:
            raise InvalidArgument(f"branch output shape={out.shape}, but should be {x.shape} (the input's)")
        return out.astype(x.dtype, copy=False)

    def backward(self, grad_out: Any) -> np.ndarray:
        """``dx = grad_out + branch.backward(grad_out * m)`` (the shortcut plus the kept branch)."""
        g = as_float_array(grad_out, "grad_out")
        g_branch = self.drop.backward(g)
        if not self._ran_branch:
            return g
        if not hasattr(self.branch, "backward"):
            raise InvalidArgument("branch has no backward(grad); cannot differentiate through it")
        return g + np.asarray(self.branch.backward(g_branch))


VARIANTS = (StochasticDepth, DropPath)
