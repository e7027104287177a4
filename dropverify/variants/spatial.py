"""Spatial (channel-wise) dropout: one Bernoulli mask value per (sample, channel),
broadcast over the spatial axes (Tompson et al. 2015; Keras SpatialDropout1D/2D/3D,
PyTorch Dropout1d/2d/3d).

Layouts: channels-first (N, C, L) / (N, C, H, W) / (N, C, D, H, W), or with
``channels_last=True`` (N, L, C) / (N, H, W, C) / (N, D, H, W, C). Inputs must be batched:
an unbatched (C, H, W) map given to the 2-D layer would be read as (N, C, L) and share the
mask along the wrong axis (pytorch 69801), so that rank is rejected with a hint.
"""
from __future__ import annotations

from typing import Any, Tuple

import numpy as np

from ..contracts import (inverted_kept, P_SPEC, Contract, Params, ParamSpec, identity_eval,
                         multiplier_gradients, register)
from ..errors import InvalidArgument
from ._base import BernoulliMaskVariant, as_float_array
from .dropout import inverted_mean, inverted_variance

_SPATIAL_NAMES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}


def _layouts(dims: int) -> Tuple[str, str]:
    """("(N, C, H, W)", "(N, H, W, C)") for dims = 2, and likewise for 1 and 3."""
    sp = ", ".join(_SPATIAL_NAMES[dims])
    return f"(N, C, {sp})", f"(N, {sp}, C)"


def spatial_axes(dims: int, channels_last: bool) -> Tuple[int, ...]:
    """Axes of a rank-(dims + 2) output that share one mask value."""
    return tuple(range(1, dims + 1)) if channels_last else tuple(range(2, dims + 2))


def _make_contract(dims: int) -> Contract:
    first, last = _layouts(dims)
    return register(Contract(
        name=f"spatial_dropout_{dims}d",
        summary=(f"Channel-wise dropout on {dims}-D feature maps: one Bernoulli(1-p) draw per (sample, channel), "
                 "broadcast over the spatial axes; kept maps scaled by 1/(1-p)."),
        reference="Tompson et al. 2015, Efficient Object Localization Using Convolutional Networks, CVPR",
        params=(P_SPEC(doc="probability of dropping a whole (sample, channel) map"),
                ParamSpec("channels_last", bool, False, doc=f"layout {last} instead of {first}")),
        layout=f"{first}, or {last} with channels_last=True",
        default_shape=((64, 32, 16), (64, 32, 8, 8), (32, 32, 4, 4, 4))[dims - 1],
        ranks=(dims + 2,),
        structure="shared",
        shared_axes=lambda params, shape: spatial_axes(dims, params["channels_last"]),
        drop_probability=lambda params, shape: params["p"],
        dropped_value=lambda inputs, params: 0.0,
        kept_value=inverted_kept,
        mean_scope="elementwise",
        output_mean=inverted_mean,
        output_variance=inverted_variance,
        eval_output=identity_eval,
        gradient_rule="dx = grad_out * m, m in {0, 1/(1-p)} the forward's (sample, channel) mask",
        input_gradients=multiplier_gradients,
        p_one_allowed=True,
        notes=(
            "Batched inputs only: an unbatched map must be given a batch axis (pytorch 69801 reads a "
            "3-D input to Dropout2d as (N, C, L) and drops rows, not channels).",
            "channels_last moves the channel axis to the end; the mask is then constant along axes 1..rank-2.",
        ),
    ))


class _SpatialDropout(BernoulliMaskVariant):
    """Inverted dropout with mask shape (N, C, 1, ...) or (N, 1, ..., C)."""

    dims: int = 0

    @property
    def channels_last(self) -> bool:
        return bool(self.params["channels_last"])

    def mask_shape(self, shape: Tuple[int, ...]) -> Tuple[int, ...]:
        shape = tuple(shape)
        if self.channels_last:
            return (shape[0],) + (1,) * self.dims + (shape[-1],)
        return shape[:2] + (1,) * self.dims

    def forward(self, *inputs: Any) -> np.ndarray:
        """Check the rank with a layout-specific message, then drop whole channel maps."""
        if len(inputs) != 1:
            raise InvalidArgument(f"{self.contract.name} takes one input x, got {len(inputs)}")
        x = as_float_array(inputs[0])
        if x.ndim != self.dims + 2:
            first, last = _layouts(self.dims)
            hint = ""
            if x.ndim == self.dims + 1:
                hint = (f" — an unbatched {first.replace('N, ', '')} map must be given a batch axis "
                        "(e.g. x[None])")
            raise InvalidArgument(
                f"{self.contract.name} expects {first} (or {last} with channels_last=True); "
                f"got rank {x.ndim} (shape {x.shape}){hint}")
        return self._forward(x)

    __call__ = forward


class SpatialDropout1d(_SpatialDropout):
    """One mask value per (N, C) of an (N, C, L) or (N, L, C) sequence."""

    dims = 1
    contract = _make_contract(1)


class SpatialDropout2d(_SpatialDropout):
    """One mask value per (N, C) of an (N, C, H, W) or (N, H, W, C) map."""

    dims = 2
    contract = _make_contract(2)


class SpatialDropout3d(_SpatialDropout):
    """One mask value per (N, C) of an (N, C, D, H, W) or (N, D, H, W, C) volume."""

    dims = 3
    contract = _make_contract(3)


VARIANTS = (SpatialDropout1d, SpatialDropout2d, SpatialDropout3d)
