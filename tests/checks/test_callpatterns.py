"""The call-pattern checks (issue 22): masks after eval passes, two instances, the caller's tensor.

Each check must PASS the correct references (numpy, torch nn.Dropout, nn.Dropout(inplace=True))
and FAIL the slip it is there for, saying the cause in words; its FAIL rules carry the bounds
stated in dropverify/checks/callpatterns.py."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from dropverify.checks import FAIL, PASS, Settings, callpatterns
from dropverify.mutants import _patterns
from dropverify.runner import verify
from dropverify.targets import TargetSpec, numpy_spec, reference_spec
from dropverify.variants.dropout import Dropout

CHECKS = [callpatterns.AFTER_EVAL, callpatterns.INSTANCES, callpatterns.INPLACE]
SETTINGS = Settings(seed=7)
SHAPE = (16, 64)


def _results(spec, checks=CHECKS):
    run = verify([spec], SETTINGS, checks=checks)
    return run, {r.check: r for r in run.targets[0].results}


def _np(cls, p=0.5, shape=SHAPE):
    return numpy_spec(f"test:{cls.__name__}", "dropout", lambda prm: cls(**prm), {"p": p}, shape=shape)


@pytest.mark.parametrize("variant", ["dropout", "spatial_dropout_2d", "gaussian_dropout", "dropblock_2d", "zoneout"])
def test_references_pass(variant):
    _, got = _results(reference_spec(variant))
    assert set(got) == set(CHECKS)
    for name, r in got.items():
        assert r.verdict == PASS, r.message


def test_agreement_limit_is_the_stated_quantile():
    q = np.full(1000, 0.3)
    a = 0.3 ** 2 + 0.7 ** 2
    k = callpatterns.agreement_limit(q, 50)
    level = callpatterns.FALSE_ALARM / 50
    assert sps.binom.sf(k, 1000, a) <= level < sps.binom.sf(k - 1, 1000, a)
    mixed = np.linspace(0.1, 0.5, 1000)  # unequal chance agreements: Hoeffding's bound
    am = mixed ** 2 + (1 - mixed) ** 2
    assert callpatterns.agreement_limit(mixed, 50) == int(np.ceil(am.sum() + np.sqrt(1000 * np.log(1 / level) / 2)))
    assert callpatterns.agreement_limit(np.full(10, 0.5), 100) is None  # 10 units: no count can be rare enough


def test_replay_after_eval_fails_with_its_cause():
    run, got = _results(_np(_patterns.ReplaysAfterEval), [callpatterns.AFTER_EVAL])
    r = got[callpatterns.AFTER_EVAL]
    assert r.verdict == FAIL and "masks after an eval pass replay earlier masks" in r.message
    assert r.details["repeats"] > 0
    causes = [c.summary for c in run.targets[0].root_causes]
    assert any("replay earlier masks" in c for c in causes), causes


def test_partial_replay_fails_on_the_agreement_rule():
    _, got = _results(_np(_patterns.ReplaysPartly, shape=(64, 256)), [callpatterns.AFTER_EVAL])
    r = got[callpatterns.AFTER_EVAL]
    assert r.verdict == FAIL and r.details["repeats"] == 0
    assert r.details["worst_agreement"] > r.details["agreement_limit"]


def test_eval_output_off_between_blocks_fails():
    class EvalScales(Dropout):
        def _forward(self, x):
            return x * 2 if not self.training else super()._forward(x)
    _, got = _results(_np(EvalScales), [callpatterns.AFTER_EVAL])
    r = got[callpatterns.AFTER_EVAL]
    assert r.verdict == FAIL and r.details["eval_off"] > 0


def test_class_level_cache_fails_with_its_cause():
    run, got = _results(_np(_patterns.ClassLevelMaskCache), [callpatterns.INSTANCES])
    r = got[callpatterns.INSTANCES]
    assert r.verdict == FAIL and "two instances draw the same masks" in r.message
    assert any("two instances draw the same masks" in c.summary for c in run.targets[0].root_causes)


def test_per_instance_fixed_seed_fails():
    class FixedSeed(Dropout):
        def draw_keep(self, shape):
            if not hasattr(self, "_own"):
                self._own = np.random.default_rng(1234)
            return self._own.random(self.mask_shape(shape)) >= self.p
    _, got = _results(_np(FixedSeed), [callpatterns.INSTANCES])
    assert got[callpatterns.INSTANCES].verdict == FAIL


def test_numpy_layer_writing_into_its_input_fails():
    class WritesInput(Dropout):
        def _forward(self, x):
            y = super()._forward(x)
            if self.training:
                x[...] = y
            return y
    _, got = _results(_np(WritesInput), [callpatterns.INPLACE])
    r = got[callpatterns.INPLACE]
    assert r.verdict == FAIL and "modifies its input in place although it does not declare inplace" in r.message


def test_a_target_that_cannot_watch_its_input_is_not_applicable():
    class Opaque:  # a Target without forward_watched (as the JAX / TF / Keras adapters)
        dtypes, layouts, has_gradients = (np.float64,), ("contiguous",), False

        def __init__(self):
            self.layer = Dropout(p=0.5)

        def seed(self, s):
            self.layer.rng = np.random.default_rng(s)

        def forward(self, inputs, *, training=True, layout="contiguous"):
            self.layer.train(training)
            return self.layer.forward(np.array(inputs[0]))

    spec = TargetSpec(name="test:opaque", variant="dropout", build=lambda prm: Opaque(), params={"p": 0.5},
                      shape=SHAPE)
    run = verify([spec], SETTINGS, checks=[callpatterns.INPLACE])
    assert not run.targets[0].results
    assert "cannot watch" in dict(run.targets[0].not_applicable)[callpatterns.INPLACE]


def test_user_inputs_are_the_probe():
    x = np.linspace(-1e5, 1e5, 16 * 64).reshape(SHAPE)
    x[::4] = 0.0
    spec = numpy_spec("test:user", "dropout", lambda prm: Dropout(**prm), {"p": 0.5}, shape=SHAPE, inputs=(x,))
    _, got = _results(spec)
    for r in got.values():
        assert r.verdict == PASS and r.details["user_input"], r.message
    assert got[callpatterns.AFTER_EVAL].details["units"] == int(np.sum(x != 0))


# ------------------------------------------------------------------------------ torch

torch = pytest.importorskip("torch")


def _torch(factory, name="test:torch"):
    from dropverify.targets.torch_nn import torch_spec
    return torch_spec(name, "dropout", factory, {"p": 0.5}, shape=SHAPE)


@pytest.mark.parametrize("inplace", [False, True])
def test_torch_dropout_passes_inplace_or_not(inplace):
    _, got = _results(_torch(lambda p: torch.nn.Dropout(p, inplace=inplace)))
    for r in got.values():
        assert r.verdict == PASS, r.message
    assert got[callpatterns.INPLACE].details["declared_inplace"] is inplace


def test_torch_mutants_fail_with_their_causes():
    from dropverify.mutants import _patterns_torch as tp
    for cls, check, words in ((tp.RestoresGeneratorOnTrain, callpatterns.AFTER_EVAL, "replay earlier masks"),
                              (tp.SharedClassMaskCache, callpatterns.INSTANCES, "two instances draw the same masks"),
                              (tp.MulInPlaceUndeclared, callpatterns.INPLACE, "does not declare inplace")):
        _, got = _results(_torch(lambda p, c=cls: c(p), f"test:{cls.__name__}"), [check])
        assert got[check].verdict == FAIL and words in got[check].message, got[check].message


def test_declared_inplace_whose_output_is_not_the_input_fails():
    class SaysInplace(torch.nn.Dropout):  # inplace=True, but returns a fresh tensor and leaves x alone
        def forward(self, x):
            return torch.nn.functional.dropout(x, self.p, self.training, inplace=False)
    _, got = _results(_torch(lambda p: SaysInplace(p, inplace=True)), [callpatterns.INPLACE])
    r = got[callpatterns.INPLACE]
    assert r.verdict == FAIL and "declares inplace but its output is not the modified input" in r.message


class _LowRate(Dropout):
    """Drops at 0.02 whatever the contract's p (a rate fault, independent draws every call)."""

    def draw_keep(self, shape):
        return self.rng.random(self.mask_shape(shape)) >= 0.02


class _Low:
    """Mixin: the masks are drawn at 0.02 (``p`` reads 0.02 inside draw_keep), scaled by the contract's p."""

    _low = False

    @property
    def p(self) -> float:
        return 0.02 if self._low else float(self.params.get("p", 0.0))

    def draw_keep(self, shape):
        self._low = True
        try:
            return super().draw_keep(shape)
        finally:
            self._low = False


class _LowRateReplays(_Low, _patterns.ReplaysAfterEval):
    """The same low rate, replaying its masks after every eval pass."""


class _LowRateCache(_Low, _patterns.ClassLevelMaskCache):
    """The same low rate, sharing masks between instances through a class-level cache."""

    _cache: dict = {}


def test_a_rate_fault_is_not_named_reuse_but_reuse_at_that_rate_is():
    """Contract p = 0.3, layer drops 0.02 (about 18 of 896 units per mask): its masks agree on ~96 %
    of the units, far above the contract's chance 58 %, yet given each pair's drop counts they are
    independent, so both call-pattern checks PASS (the rate checks name the fault). Masks that
    drop ~18 units still carry binom(896, 18) > 1e30 possibilities, so the same layer replaying
    after eval, or sharing between instances, FAILs."""
    _, got = _results(_np(_LowRate, p=0.3), [callpatterns.AFTER_EVAL, callpatterns.INSTANCES])
    for r in got.values():
        assert r.verdict == PASS, r.message
        assert r.details["chance_model"] == callpatterns.OBSERVED and r.details["chance_agreement"] > 0.9
    _, got = _results(_np(_LowRateReplays, p=0.3), [callpatterns.AFTER_EVAL])
    r = got[callpatterns.AFTER_EVAL]
    assert r.verdict == FAIL and r.details["repeats"] > 0 and "replay earlier masks" in r.message
    _LowRateCache._cache.clear()
    _, got = _results(_np(_LowRateCache, p=0.3), [callpatterns.INSTANCES])
    r = got[callpatterns.INSTANCES]
    assert r.verdict == FAIL and "two instances draw the same masks" in r.message


def test_observed_model_limit_is_the_hypergeometric_quantile():
    n, a, b, pairs = 896, np.array([448, 18, 0]), np.array([440, 20, 0]), 207
    k = callpatterns.overlap_limits(n, a, b, pairs)
    level = callpatterns.FALSE_ALARM / pairs
    assert np.all(sps.hypergeom.sf(k, n, a, b) <= level)
    assert np.all(sps.hypergeom.sf(k[:2] - 1, n, a[:2], b[:2]) > level)
    assert k[2] == 0  # all-keep masks: the rule cannot fire (k >= min(a, b))
