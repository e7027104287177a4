"""Stochastic depth across a network: the expected number of surviving blocks."""
from __future__ import annotations

from typing import List

import numpy as np

from ._calls import Lane, run_call_level
from ..results import CheckResult
from ._core import CheckContext
from ._sequential import error_result, two_stage_t_plan
from ._stream import CallCounter
from ._worker import TargetError

NAME = "expected_depth_matches_by_t_test"


def applies(ctx: CheckContext) -> bool:
    return "network_expected_depth" in ctx.contract.extra and 0 < ctx.params.get("p", 0.5) < 1


def expected_depth_matches_by_t_test(ctx: CheckContext) -> List[CheckResult]:
    """The mean number of surviving blocks per sample equals sum(s_l) (Huang et al.'s
    expected depth). One sample per call (mean over its rows); t-test across independent
    calls at the check's alpha split over its looks; margin 1 % of the depth."""
    expected = float(ctx.contract.extra["network_expected_depth"](ctx.params))
    inputs, stream = ctx.shared_stream()
    lane = Lane("calls")
    depths = lane.samples

    def sink(y: np.ndarray) -> None:
        kept = ~ctx.dropped(inputs, y)
        depths.append(float(kept.sum(axis=1).mean()))

    advance = CallCounter(stream, sink)
    try:
        tp = two_stage_t_plan(ctx, advance, [depths], 0.01 * expected)
    except TargetError as exc:
        return [error_result(ctx, NAME, str(exc), statistical=True)]
    plan, margin = tp.plan, tp.margin
    return [run_call_level(ctx, NAME, "mean_depth", plan, advance, [lane], expected, margin, "calls",
                           details=lambda: {"expected_depth": expected, "blocks": ctx.params.get("num_blocks"),
                                            "calls": advance.done})]
