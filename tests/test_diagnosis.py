"""Diagnosis first: one root cause in words, not five FAILs blaming the wrong properties.

The review's cases, reproduced with our own layers: a stochastic-depth layer drawing one coin per
batch against the per-row contract; a layer that reuses one mask on every call; a layer whose rate
is wrong on some calls (a rate fault, which must not be reported as dependence); a layer raising on
every call (identical ERRORs collapse to one line). Deterministic: fixed seeds.
"""
from __future__ import annotations

import numpy as np
import pytest

from dropverify.checks import ERROR, FAIL, INCONCLUSIVE, Settings
from dropverify.mutants.adversaries import IntermittentRate
from dropverify.report.markdown import target_markdown
from dropverify.runner import verify
from dropverify.targets import numpy_spec
from dropverify.variants.depth import StochasticDepth
from dropverify.variants.dropout import Dropout

SETTINGS = Settings(seed=20261127)


class OneCoinPerBatch(StochasticDepth):
    """One draw for the whole batch, declared against the per-row contract."""

    def mask_shape(self, shape):
        return (1,) * len(shape)


class SameMaskEveryCall(Dropout):
    def draw_keep(self, shape):
        return np.random.default_rng(0).random(self.mask_shape(shape)) >= self.p


class Raises(Dropout):
    def _forward(self, x):
        raise ValueError("block size should be odd")


def _run(cls, variant, params, shape):
    return verify([numpy_spec(f"test:{cls.__name__}", variant, lambda prm: cls(**prm), params, shape=shape)],
                  SETTINGS)


@pytest.fixture(scope="module")
def one_coin():
    return _run(OneCoinPerBatch, "stochastic_depth", {"p": 0.2, "mode": "row"}, (64, 8, 4, 4))


def test_one_coin_per_batch_is_one_cause_in_words(one_coin):
    target = one_coin.targets[0]
    fails = [c for c in target.root_causes if c.kind == FAIL]
    assert len(fails) == 1, [c.summary for c in fails]
    cause = fails[0]
    assert cause.summary == "one draw per batch instead of one per item: every batch item shares the mask"
    assert cause.evidence[0] == "masks_independent_along_axis0_by_fisher"
    # the flat-offset check sees the same dependence (pairs of items in the flattened unit array)
    assert "masks_independent_at_flat_offsets_by_fisher" in cause.evidence
    verdicts = {r.check: r.verdict for r in target.results}
    # the pooled tests that counted 64 copies of one draw as 64 units no longer blame other properties
    for check in ("drop_rate_matches_by_binomial", "masks_fresh_across_calls_by_fisher",
                  "masks_independent_across_seeds_by_fisher", "seed_streams_do_not_overlap_by_fisher"):
        assert verdicts[check] != FAIL, check
    withdrawn = [r for r in target.results if r.details.get("withdrawn_because")]
    assert withdrawn and all(r.verdict == INCONCLUSIVE for r in withdrawn)
    assert {r.check for r in withdrawn} <= set(cause.withdrawn)


def test_the_report_opens_with_the_root_cause(one_coin):
    md = target_markdown(one_coin, one_coin.targets[0], {})
    head = md.split("## Summary")[0]
    assert "## Root causes" in head and "one draw per batch instead of one per item" in head
    assert "not assessed from pooled units" in head


def test_a_mask_reused_on_every_call_withdraws_every_pooled_fail():
    target = _run(SameMaskEveryCall, "dropout", {"p": 0.3}, (16, 8, 4, 4)).targets[0]
    (cause,) = [c for c in target.root_causes if c.kind == FAIL]
    assert cause.summary.startswith("the same mask on most calls")
    verdicts = {r.check: r.verdict for r in target.results}
    assert verdicts["masks_fresh_across_calls_by_fisher"] == FAIL
    assert verdicts["drop_rate_matches_by_binomial"] != FAIL


def test_a_rate_fault_on_some_calls_is_not_reported_as_dependence():
    target = _run(IntermittentRate, "dropout", {"p": 0.5}, (16, 64)).targets[0]
    verdicts = {r.check: r.verdict for r in target.results}
    assert verdicts["drop_rate_matches_by_binomial"] == FAIL
    dependence = {c: v for c, v in verdicts.items() if c.startswith("masks_independent_along_axis")}
    assert dependence and FAIL not in dependence.values(), dependence
    assert any(c.summary.startswith("drop_rate_matches_by_binomial") for c in target.root_causes)


def test_identical_errors_collapse_to_one_line():
    target = _run(Raises, "dropout", {"p": 0.3}, (8, 4)).targets[0]
    errors = [r for r in target.results if r.verdict == ERROR]
    assert len(errors) >= 5
    lines = [c for c in target.root_causes if c.kind == ERROR]
    assert len(lines) <= 2 and any("block size should be odd" in c.summary and f"in {len(c.evidence)} checks"
                                   in c.summary for c in lines)


class StuckBatchCoin(StochasticDepth):
    """Batch mode (one draw per call) whose generator never advances: the same coin every call."""

    def draw_keep(self, shape):
        return np.random.default_rng(1).random(self.mask_shape(shape)) >= self.p


def test_one_draw_per_call_layers_still_get_freshness_tested():
    """A single pair per step carries no within-step spread; steps are pooled into blocks so the
    freshness of a one-draw-per-call layer is still tested (and a stuck coin FAILs)."""
    spec = numpy_spec("test:StuckBatchCoin", "stochastic_depth", lambda prm: StuckBatchCoin(**prm),
                      {"p": 0.5, "mode": "batch"}, shape=(8, 4))
    run = verify([spec], SETTINGS, checks=["masks_fresh_across_calls_by_fisher"]).targets[0]
    assert [r.verdict for r in run.results] == [FAIL], (run.results, run.not_applicable)


@pytest.mark.parametrize("name", ["dropout_silently_no_effect", "dropout_reseeded_every_call",
                                  "alpha_dropout_wrong_b", "dropblock_mask_cached"])
def test_diagnosis_keeps_fails_that_single_calls_establish(name):
    """Mutants the whole-suite kill table once missed because a root cause withdrew the FAIL
    they must produce: a layer that drops nothing (its masks repeat because they are constant),
    a seed ignored on every step (one step's identical pair is evidence on its own), output
    that cannot be decoded into masks (constant decoded masks are no stale RNG), a cached
    DropBlock mask (identical steps are improbable under the contract)."""
    from dropverify.mutants import all_mutants, evaluate
    (m,) = [m for m in all_mutants() if m.name == name]
    row = evaluate(m)
    assert row["killed"], row["verdicts"]
