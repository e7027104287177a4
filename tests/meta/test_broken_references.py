"""Deliberately broken references FAIL the check that names their bug, at default settings."""
from __future__ import annotations

import numpy as np
import pytest

from dropverify.checks import Settings
from dropverify.runner import verify
from dropverify.targets import numpy_spec
from dropverify.variants import variant_class

Dropout = variant_class("dropout")
Spatial2d = variant_class("spatial_dropout_2d")


class WrongScale(Dropout):
    def scale(self):
        return self.p  # apex PR 816 style: p instead of 1/(1-p)


class SameMaskEveryCall(Dropout):
    def draw_keep(self, shape):
        return np.random.default_rng(0).random(self.mask_shape(shape)) >= self.p


class BatchShared(Dropout):
    def mask_shape(self, shape):
        return (1,) + tuple(shape[1:])


class TwoPercentOff(Dropout):
    def scale(self):
        return 1.02 / (1 - self.p)


class RateOff(Dropout):
    def draw_keep(self, shape):
        return self.rng.random(self.mask_shape(shape)) >= self.p + 0.01


class RowsNotChannels(Spatial2d):
    def mask_shape(self, shape):
        return (shape[0], shape[1], shape[2], 1)  # pytorch 69801 style: rows, not channels


class FreshMaskInBackward(Dropout):
    def _backward(self, grad_out):
        keep = self.draw_keep(grad_out.shape)
        return np.where(keep, grad_out * grad_out.dtype.type(self.scale()), 0)


class StillDropsInEval(Dropout):
    def _forward(self, x):
        training, self.training = self.training, True
        try:
            return super()._forward(x)
        finally:
            self.training = training


CASES = [
    (WrongScale, "dropout", "multiplier_values_exact"),
    (WrongScale, "dropout", "expectation_matches_by_t_test"),
    (SameMaskEveryCall, "dropout", "masks_fresh_across_calls_by_fisher"),
    (BatchShared, "dropout", "masks_independent_along_axis0_by_fisher"),
    (TwoPercentOff, "dropout", "expectation_matches_by_t_test"),
    (RateOff, "dropout", "drop_rate_matches_by_binomial"),
    (RowsNotChannels, "spatial_dropout_2d", "mask_constant_along_shared_axes"),
    (FreshMaskInBackward, "dropout", "gradient_uses_forward_mask"),
    (StillDropsInEval, "dropout", "eval_mode_deterministic_and_exact"),
]


@pytest.mark.parametrize("cls,variant,check", CASES, ids=[f"{c.__name__}-{k}" for c, _, k in CASES])
def test_broken_reference_fails_its_check(cls, variant, check):
    spec = numpy_spec(f"broken:{cls.__name__}", variant, lambda prm: cls(**prm), {"p": 0.3},
                      shape=(32, 16, 8, 8))
    run = verify([spec], Settings(seed=7))
    verdicts = {r.check: r.verdict for r in run.all_results()}
    hits = [v for name, v in verdicts.items() if name.startswith(check)]
    assert hits and all(v == "FAIL" for v in hits), verdicts


def test_a_crashing_target_is_an_error_and_the_run_goes_on():
    class Crashes(Dropout):
        def _forward(self, x):
            raise RuntimeError("kernel exploded")

    class WrongShape(Dropout):
        def _forward(self, x):
            return super()._forward(x)[:1]

    specs = [numpy_spec("broken:crash", "dropout", lambda prm: Crashes(**prm), {"p": 0.3}),
             numpy_spec("broken:shape", "dropout", lambda prm: WrongShape(**prm), {"p": 0.3}),
             numpy_spec("ok", "dropout", lambda prm: Dropout(**prm), {"p": 0.3})]
    run = verify(specs, Settings(seed=3))
    crash, shape, ok = run.targets
    assert crash.verdict == "ERROR" and any("kernel exploded" in r.message for r in crash.results)
    assert any(r.verdict == "ERROR" and "output shape" in r.message for r in shape.results)
    assert ok.verdict == "PASS"


def test_a_hung_target_is_an_error_within_its_time_limit():
    import time

    class Hangs(Dropout):
        def _forward(self, x):
            time.sleep(5)
            return x

    specs = [numpy_spec("broken:hang", "dropout", lambda prm: Hangs(**prm), {"p": 0.3}, shape=(4, 4)),
             numpy_spec("ok", "dropout", lambda prm: Dropout(**prm), {"p": 0.3})]
    run = verify(specs, Settings(seed=3, call_timeout_s=0.3), checks=["same_seed_reproduces"])
    hang, ok = run.targets
    assert hang.results[0].verdict == "ERROR" and "did not return within 0.3 s" in hang.results[0].message
    assert ok.results[0].verdict == "PASS"
