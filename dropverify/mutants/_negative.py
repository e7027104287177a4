"""Negative dependence across calls: a layer that avoids repeating a unit's drop.

A unit dropped at call t is never dropped at call t + 1 (its drop probability there is 0,
and p / (1 - p) after a kept call, so the rate stays p): the lag-1 relative risk is 0, not
the "stale or cached masks" (relative risk above 1) that positive dependence means. Every
random choice comes from the layer's own generator; re-seeding starts afresh.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from ..variants.dropout import Dropout
from ._core import Mutant, mutant

CHECK = "masks_fresh_across_calls_by_fisher"


class NeverTwiceInARow(Dropout):
    """A unit dropped at call t is never dropped at call t + 1; after a kept call it drops with
    probability p / (1 - p) (p < 1/2), so the rate stays p: a 'spread the drops out' rule, lag-1
    relative risk 0 (negative dependence)."""

    def draw_keep(self, shape: Tuple[int, ...]) -> np.ndarray:
        if getattr(self, "_never_rng", None) is not self.rng:
            self._never_rng, self._last = self.rng, {}
        key = tuple(self.mask_shape(shape))
        last = self._last.get(key)
        u = self.rng.random(key)
        if last is None:
            keep = u >= self.p
        else:
            keep = ~last | (u >= self.p / (1 - self.p)) if self.p < 0.5 else u >= self.p
        self._last[key] = keep
        return keep


MUTANTS: Tuple[Mutant, ...] = (
    mutant("never_twice_in_a_row", "dropout", NeverTwiceInARow, params={"p": 0.3}, kills=(CHECK,),
           bug_class="obvious slip",
           source="issue 22 item 5 (negative lag-1 dependence named 'stale or cached masks')"),
)
