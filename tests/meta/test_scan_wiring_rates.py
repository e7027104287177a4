"""Measured error rates of the scan's statistical wiring rules (issue 23 item 4 a, d), deterministic seeds.

* Calibration: on correct models the mask-sharing rule with its 1e-9 bound raised to 0.05, and the
  LayerDrop rule with its 1e-6 raised to 0.05, FAIL at most at 0.05; at the real bounds, never.
* False passes: one mask shared by two sites, and layers kept with probability p, never PASS.
Counts must not be significantly above nominal (one-sided exact binomial test at 1e-3). SEEDS is
below 200 to fit ~90 s on one core; the 200-seed table is reports/issue23/wiring23.md
(``python -m benchmarks.issue23_wiring23``).
"""
from __future__ import annotations

import pytest
from scipy import stats as sps

torch = pytest.importorskip("torch")
from benchmarks.issue23_wiring23 import SHAPE, LayerDrop, Shared, TwoDropouts, _count, _raised, _raised_ld  # noqa: E402
from dropverify.modelscan import wiring  # noqa: E402

pytestmark = pytest.mark.slow  # seeded measurements: `make test-slow`

SEEDS = 40


def _not_above(count: int, rate: float) -> bool:
    return sps.binomtest(count, SEEDS, rate, alternative="greater").pvalue > 1e-3


def test_mask_sharing_rule_calibrated_and_catches_one_shared_mask():
    assert _count(TwoDropouts, SHAPE, wiring.SHARED, "FAIL", SEEDS) == 0
    assert _not_above(_raised(0.05, lambda: _count(TwoDropouts, SHAPE, wiring.SHARED, "FAIL", SEEDS)), 0.05)
    assert _count(lambda: Shared(1.0), SHAPE, wiring.SHARED, "PASS", SEEDS) == 0


def test_layerdrop_rule_calibrated_and_catches_layers_kept_with_probability_p():
    assert _count(lambda: LayerDrop(0.2), (4, 8), wiring.LAYERDROP, "FAIL", SEEDS) == 0
    assert _not_above(_raised_ld(0.05, lambda: _count(lambda: LayerDrop(0.2), (4, 8), wiring.LAYERDROP, "FAIL",
                                                      SEEDS)), 0.05)
    assert _count(lambda: LayerDrop(0.8), (4, 8), wiring.LAYERDROP, "PASS", SEEDS) == 0
