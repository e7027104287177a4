"""Element-wise dropout family: standard (inverted) dropout."""
from __future__ import annotations

import numpy as np

from ..contracts import (P_SPEC, Contract, identity_eval, all_axes_independent,
                         inverted_scale, multiplier_gradients, register)
from ._base import BernoulliMaskVariant


def _inverted_kept(inputs, params, dropped):
    return np.asarray(inputs[0], np.float64) * inverted_scale(params["p"])


def _zero(inputs, params):
    return 0.0


def _identity_mean(inputs, params):
    return np.asarray(inputs[0], np.float64)


def _inverted_variance(inputs, params):
    p = params["p"]
    x = np.asarray(inputs[0], np.float64)
    return x * x * (p / (1.0 - p) if p < 1.0 else np.inf)


DROPOUT = register(Contract(
    name="dropout",
    summary="Element-wise dropout: each element kept with probability 1-p and scaled by 1/(1-p).",
    reference="Srivastava et al. 2014, JMLR 15:1929",
    params=(P_SPEC(),),
    layout="any shape (N, ...)",
    default_shape=(64, 32, 8, 8),
    ranks=(1, 2, 3, 4, 5),
    structure="elementwise",
    shared_axes=all_axes_independent,
    drop_probability=lambda params, shape: params["p"],
    dropped_value=_zero,
    kept_value=_inverted_kept,
    mean_scope="elementwise",
    output_mean=_identity_mean,
    output_variance=_inverted_variance,
    eval_output=identity_eval,
    gradient_rule="dx = grad_out * m, m in {0, 1/(1-p)} the forward mask",
    input_gradients=multiplier_gradients,
    p_one_allowed=True,
))


class Dropout(BernoulliMaskVariant):
    """Element-wise inverted dropout: ``y = x * m / (1 - p)``, ``m ~ Bernoulli(1 - p)``."""

    contract = DROPOUT


VARIANTS = (Dropout,)
