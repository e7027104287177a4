"""Mutants of the shared-mask families: spatial (channel-wise) dropout, stochastic depth and
DropPath."""
from __future__ import annotations

from typing import Tuple

import numpy as np

from ..variants.depth import DropPath, StochasticDepth
from ..variants.spatial import SpatialDropout1d, SpatialDropout2d, SpatialDropout3d
from ._core import Mutant, mutant


# ------------------------------------------------------------------------------ spatial dropout

class Spatial2dDropsRows(SpatialDropout2d):
    """Mask (N, C, H, 1): one draw per (sample, channel, row), shared only along W; rows are
    dropped, not channels (a (C, H, W) map read as (N, C, L))."""

    def mask_shape(self, shape: Tuple[int, ...]) -> Tuple[int, ...]:
        return tuple(shape[:3]) + (1,)


class Spatial2dChannelsLastIgnored(SpatialDropout2d):
    """``channels_last`` accepted but ignored: an (N, H, W, C) map gets the channels-first mask
    (N, H, 1, 1), one draw per (sample, row), shared over W and C."""

    def mask_shape(self, shape: Tuple[int, ...]) -> Tuple[int, ...]:
        return tuple(shape[:2]) + (1, 1)


class Spatial1dSharedAcrossBatch(SpatialDropout1d):
    """Mask (1, C, 1): one channel mask for the whole batch."""

    def mask_shape(self, shape: Tuple[int, ...]) -> Tuple[int, ...]:
        return (1, shape[1], 1)


class Spatial3dPerElement(SpatialDropout3d):
    """Mask of the input's full shape: element-wise dropout sold as channel dropout."""

    def mask_shape(self, shape: Tuple[int, ...]) -> Tuple[int, ...]:
        return tuple(shape)


# ------------------------------------------------------------------------------ stochastic depth / DropPath

SCHEDULE_BLOCKS = 4


def loop_rate(p_last: float, num_blocks: int = SCHEDULE_BLOCKS) -> float:
    """The drop rate the off-by-one loop ``for l in range(L): p_l = l / L * p_L`` gives the
    LAST block (l = L-1): ``(L-1)/L * p_L`` instead of ``p_L``."""
    return (num_blocks - 1) / num_blocks * float(p_last)


class ScheduleOffByOne(StochasticDepth):
    """The last of 4 blocks configured from the loop ``for l in range(L): p_l = l/L * p_L``:
    it drops (and rescales) with 3/4 p_L while the contract claims p_L."""

    def __init__(self, **kw) -> None:
        if "p" in kw and isinstance(kw["p"], (int, float)) and not isinstance(kw["p"], bool):
            kw["p"] = loop_rate(kw["p"])
        super().__init__(**kw)


class EvalScaleForgotten(StochasticDepth):
    """scaling='eval_scale' (paper convention: unscaled in training) but eval returns x
    instead of x (1-p)."""

    def _forward(self, x: np.ndarray) -> np.ndarray:
        if not self.training:
            self._saved = ("identity", x.shape)
            return x
        return super()._forward(x)


class RowModeDrawsBatch(StochasticDepth):
    """mode='row' claimed, one draw for the whole batch (mode='batch' behaviour)."""

    def mask_shape(self, shape: Tuple[int, ...]) -> Tuple[int, ...]:
        return (1,) * len(shape)


class DropPathPerElement(DropPath):
    """DropPath drawing one keep value per element instead of per sample."""

    def mask_shape(self, shape: Tuple[int, ...]) -> Tuple[int, ...]:
        return tuple(shape)


class DropPathEvalActive(DropPath):
    """DropPath that ignores eval mode (drops at inference)."""

    def _forward(self, x: np.ndarray) -> np.ndarray:
        mode, self.training = self.training, True
        try:
            return super()._forward(x)
        finally:
            self.training = mode


class DropPathBackwardUnscaled(DropPath):
    """Backward passes grad * keep, forgetting the 1/keep the forward applied."""

    def _backward(self, grad_out: np.ndarray) -> np.ndarray:
        if self._saved[0] == "identity":
            return grad_out
        _, keep, _ = self._saved
        return np.where(keep, grad_out, grad_out.dtype.type(0))


_VAL = "multiplier_values_exact"
_CONST = "mask_constant_along_shared_axes"
_AXIS0 = "masks_independent_along_axis0_by_fisher"
_EVAL = "eval_mode_deterministic_and_exact"
_GRAD = ("gradient_uses_forward_mask", "gradient_matches_finite_differences")
_WRONG_AXIS = "mask shared along the wrong axis"
_SAME = "same mask on every device / replica / batch element"

MUTANTS: Tuple[Mutant, ...] = (
    mutant("spatial2d_drops_rows", "spatial_dropout_2d", Spatial2dDropsRows, params={"p": 0.5},
           kills=(_CONST,), bug_class=_WRONG_AXIS,
           source="pytorch 69801 (Dropout2d on (C,H,W) drops rows, not channels)"),
    mutant("spatial2d_channels_last_ignored", "spatial_dropout_2d", Spatial2dChannelsLastIgnored,
           params={"p": 0.5, "channels_last": True}, kills=(_CONST,), bug_class=_WRONG_AXIS,
           source="PyTorch-NLP 71 (documented axis vs actual axis)"),
    mutant("spatial1d_shared_across_batch", "spatial_dropout_1d", Spatial1dSharedAcrossBatch, params={"p": 0.5},
           kills=(_AXIS0,), bug_class=_SAME, source="accelerate 114 (same mask on all ranks); transformers 31412"),
    mutant("spatial3d_per_element", "spatial_dropout_3d", Spatial3dPerElement, params={"p": 0.5},
           kills=(_CONST,), bug_class=_WRONG_AXIS, source="pytorch 69801 (channel dropout on the wrong axes)"),
    mutant("stochastic_depth_schedule_off_by_one", "stochastic_depth", ScheduleOffByOne,
           params={"p": 0.5, "mode": "row"}, kills=("drop_rate_matches_by_binomial", _VAL),
           bug_class="obvious slip",
           source="seed document's schedule loop `for l in range(L): p_l = l/L * p_L` (Huang et al. 2016 "
                  "index blocks 1..L)"),
    mutant("stochastic_depth_eval_scale_forgotten", "stochastic_depth", EvalScaleForgotten,
           params={"p": 0.5, "scaling": "eval_scale"}, kills=(_EVAL,), bug_class="still dropping in eval mode",
           source="Huang et al. 2016 test-time rule x (1-p) omitted (eval output off the contract)"),
    mutant("stochastic_depth_row_draws_batch", "stochastic_depth", RowModeDrawsBatch,
           params={"p": 0.5, "mode": "row"}, kills=(_AXIS0,), bug_class=_SAME,
           source="torchvision stochastic_depth mode 'batch' vs 'row' confusion; transformers 31412"),
    mutant("drop_path_per_element", "drop_path", DropPathPerElement, params={"p": 0.3}, kills=(_CONST,),
           bug_class=_WRONG_AXIS, source="timm DropPath contract (per sample by design) broken to per element"),
    mutant("drop_path_eval_active", "drop_path", DropPathEvalActive, params={"p": 0.3}, kills=(_EVAL,),
           bug_class="still dropping in eval mode", source="Swin drop path active at inference"),
    mutant("drop_path_backward_unscaled", "drop_path", DropPathBackwardUnscaled, params={"p": 0.3}, kills=_GRAD,
           bug_class="backward uses a different mask or scale than forward",
           source="apex PR 816 (backward scale differs from forward)"),
)
