"""Measured error rates of the call-pattern checks (issue 22), 200 seeds each (deterministic).

* Calibration: on correct references the agreement rule, its 1e-9 bound raised to 0.05 so that
  200 seeds can measure it, FAILs at most at 0.05 (exact binomial quantile; Hoeffding where unit
  rates differ); at the real bound, never.
* False passes: a partial replay (or partial sharing) of the minimum detectable share of the
  units PASSes at most at 0.01 (one replaying pair alone has power 0.99).
Counts must not be significantly above nominal (one-sided exact binomial test at 1e-3). The full
table, with the adversaries below the detectable share, is reports/issue22/patterns.md.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from dropverify.checks import Settings, callpatterns
from dropverify.mutants import _patterns
from dropverify.runner import verify
from dropverify.targets import numpy_spec, reference_spec
from dropverify.variants.dropout import Dropout

pytestmark = pytest.mark.slow  # 200-seed measurements: `make test-slow`

SEEDS = 200
SHAPE = (16, 64)


def _not_above(count: int, rate: float) -> bool:
    return sps.binomtest(count, SEEDS, rate, alternative="greater").pvalue > 1e-3


def _np(cls, **attrs):
    if attrs:
        cls = type(cls.__name__ + "Graded", (cls,), dict(attrs))
    return numpy_spec(f"meta:{cls.__name__}", "dropout", lambda prm: cls(**prm), {"p": 0.5}, shape=SHAPE), cls


def _fails(spec, check: str, reset=None) -> int:
    count = 0
    for k in range(SEEDS):
        if reset is not None:
            reset()
        (r,) = verify([spec], Settings(seed=230_000 + k), checks=[check]).all_results()
        assert r.verdict in ("PASS", "FAIL"), r.message
        count += r.verdict == "FAIL"
    return count


@pytest.fixture
def raised(monkeypatch):
    monkeypatch.setattr(callpatterns, "FALSE_ALARM", 0.05)


@pytest.mark.parametrize("check", [callpatterns.AFTER_EVAL, callpatterns.INSTANCES])
def test_agreement_rule_calibrated_on_dropout(raised, check):
    count = _fails(_np(Dropout)[0], check)
    assert _not_above(count, 0.05), f"{check}: {count}/{SEEDS} false alarms at a 0.05 bound"


def test_hoeffding_rule_calibrated_on_unequal_rates(raised):
    count = _fails(reference_spec("stochastic_depth_network"), callpatterns.AFTER_EVAL)
    assert _not_above(count, 0.05), f"{count}/{SEEDS} false alarms at a 0.05 bound"


def _mdd(check: str) -> float:
    (r,) = verify([_np(Dropout)[0]], Settings(seed=1), checks=[check]).all_results()
    n, limit = r.details["units"], r.details["agreement_limit"]
    return next(round(f, 2) for f in np.arange(0.01, 1.0001, 0.01) if sps.binom.sf(limit, n, 0.5 + f / 2) >= 0.99)


def test_partial_replay_after_eval_at_the_detectable_share():
    spec, _ = _np(_patterns.ReplaysPartly, fraction=_mdd(callpatterns.AFTER_EVAL))
    passes = SEEDS - _fails(spec, callpatterns.AFTER_EVAL)
    assert _not_above(passes, 0.01), f"{passes}/{SEEDS} false passes"


def test_partial_sharing_between_instances_at_the_detectable_share():
    spec, cls = _np(_patterns.SharesPartly, fraction=_mdd(callpatterns.INSTANCES), _pool={})
    passes = SEEDS - _fails(spec, callpatterns.INSTANCES, reset=lambda: cls._pool.clear())
    assert _not_above(passes, 0.01), f"{passes}/{SEEDS} false passes"
