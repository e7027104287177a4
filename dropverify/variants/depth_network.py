"""Stochastic depth across a network: block l survives with p_l = 1 - (l/L)(1 - p_L).

The observable form of a whole stochastic-depth network: L residual blocks in sequence,
block l's branch adding a one-hot ``e_l`` (so its survival shows in column l of the
output). In training a surviving block adds ``e_l / s_l`` (inverted scaling), a skipped
block is the identity exactly; in eval every block runs unscaled. Feeding (N, L) inputs
through it lets the harness measure each block's survival against the schedule (the
per-position drop map) and the expected depth sum(s_l) (Huang et al. 2016).
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from ..contracts import P_SPEC, Contract, Inputs, Params, ParamSpec, Shape, all_axes_independent, register
from ..errors import InvalidArgument
from ._base import Variant
from .depth import expected_depth, linear_decay_survival


def survival(params: Params) -> np.ndarray:
    """Per-block survival s_l of the linear decay rule, l = 1..L."""
    return linear_decay_survival(params["num_blocks"], 1.0 - params["p"])


def _bonus(params: Params) -> np.ndarray:
    s = survival(params)
    return np.where(s > 0, 1.0 / np.where(s > 0, s, 1.0), 0.0)


def _dropped(inputs: Inputs, params: Params) -> np.ndarray:
    return np.asarray(inputs[0], np.float64)


def _kept(inputs: Inputs, params: Params, dropped: np.ndarray) -> np.ndarray:
    return np.asarray(inputs[0], np.float64) + _bonus(params)


def _map(params: Params, shape: Shape) -> np.ndarray:
    return (1.0 - survival(params)).reshape(1, -1)


def _mean(inputs: Inputs, params: Params) -> np.ndarray:
    s = survival(params)
    return np.asarray(inputs[0], np.float64) + (s > 0)


def _variance(inputs: Inputs, params: Params) -> np.ndarray:
    s = survival(params)
    var = np.where(s > 0, (1.0 - s) / np.where(s > 0, s, 1.0), 0.0)
    return np.broadcast_to(var, np.shape(inputs[0]))


def _eval(inputs: Inputs, params: Params) -> np.ndarray:
    return np.asarray(inputs[0], np.float64) + 1.0


def _gradients(inputs: Inputs, y: np.ndarray, grad_out: np.ndarray, params: Params) -> Tuple[np.ndarray, ...]:
    return (np.asarray(grad_out, np.float64),)


STOCHASTIC_DEPTH_NETWORK = register(Contract(
    name="stochastic_depth_network",
    summary="L residual blocks with stochastic depth; block l survives with 1 - (l/L) p (linear decay), "
            "inverted scaling.",
    reference="Huang, Sun, Liu, Sedra, Weinberger 2016, Deep Networks with Stochastic Depth, ECCV (eq. 4)",
    params=(P_SPEC(doc="drop rate of the LAST block, 1 - p_L"),
            ParamSpec("num_blocks", int, 12, 1, None, doc="L, the number of residual blocks")),
    layout="(N, L): column l observes block l (its branch adds the one-hot e_l)",
    default_shape=(256, 12),
    ranks=(2,),
    structure="elementwise",
    shared_axes=all_axes_independent,
    drop_probability=_map,
    dropped_value=_dropped,
    kept_value=_kept,
    mean_scope="elementwise",
    output_mean=_mean,
    output_variance=_variance,
    eval_output=_eval,
    gradient_rule="dx = grad_out (every block is identity plus a branch that does not depend on x here)",
    input_gradients=_gradients,
    p_one_allowed=True,
    multiplicative=False,
    notes=("Block l = 1..L is dropped with probability (l/L) p: the first block with p/L, the last with exactly p "
           "(a loop over l = 0..L-1 is off by one: its first block is never dropped and its last never reaches p).",
           "Expected depth = sum of survivals = L - p (L+1)/2.",
           "A skipped block returns its input exactly (dropped value = x)."),
    extra={"network_expected_depth": lambda params: expected_depth(survival(params)), "survival": survival},
))


class StochasticDepthNetwork(Variant):
    """Observable stochastic-depth network on (N, L) inputs (see the module docstring)."""

    contract = STOCHASTIC_DEPTH_NETWORK

    def _forward(self, x: np.ndarray) -> np.ndarray:
        L = self.params["num_blocks"]
        if x.shape[1] != L:
            raise InvalidArgument(f"stochastic_depth_network input shape={x.shape}, but should be (N, {L}): "
                                  "one column per block")
        if not self.training:
            self._saved = ("eval",)
            return x + x.dtype.type(1)
        keep = self.rng.random(x.shape) < survival(self.params)
        self._saved = ("train",)
        return np.where(keep, x + _bonus(self.params).astype(x.dtype), x)

    def _backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out


VARIANTS = (StochasticDepthNetwork,)
