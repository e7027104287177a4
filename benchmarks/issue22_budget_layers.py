"""Layers for the time-budget measurements of ``benchmarks/issue22_budget.py`` (issue 22, item 6).

``slow_dropout`` is ``torch.nn.Dropout`` whose every call first sleeps ``DV_SLEEP`` seconds (30 s
unless set): a layer too slow for its time budget, or, past ``call_timeout_s``, a hung one.
"""
from __future__ import annotations

import os
import time


def slow_dropout(p: float = 0.5):
    """torch.nn.Dropout(p), each forward call sleeping ``DV_SLEEP`` seconds first."""
    import torch

    seconds = float(os.environ.get("DV_SLEEP", "30"))

    class SlowDropout(torch.nn.Dropout):
        def forward(self, x):  # noqa: D102 - sleeps, then drops out
            time.sleep(seconds)
            return super().forward(x)

    return SlowDropout(p)
