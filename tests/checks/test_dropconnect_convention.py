"""DropConnect's mask convention (one weight mask per batch or per sample) is checked by
``weight_mask_convention_exact``, and a layer with the other convention is blamed there, not
in the gradient checks (which read each sample's mask from the same call)."""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
import pytest

from dropverify.checks import FAIL, INCONCLUSIVE, PASS, Settings
from dropverify.checks.dropconnect import NAME
from dropverify.runner import verify
from dropverify.targets import numpy_spec
from dropverify.variants.dropconnect import DropConnectLinear

FWD, FD = "gradient_uses_forward_mask", "gradient_matches_finite_differences"
CHECKS = [NAME, FWD, FD]
LAYOUTS = ("contiguous", "transposed", "strided")  # the numpy target's: each gradient check reports one row each


def _grad(res: Dict[str, object], check: str):
    """The gradient check's contiguous row, after asserting every layout's row has its verdict."""
    rows = [res[f"{check}[{lay}]"] for lay in LAYOUTS]
    assert len({r.verdict for r in rows}) == 1, [(r.check, r.verdict, r.message) for r in rows]
    return rows[0]


def layer_with(mask_per: str):
    """A factory for the reference layer drawing ``mask_per`` masks whatever it is told."""
    def build(prm: dict) -> DropConnectLinear:
        return DropConnectLinear(**{**prm, "mask_per": mask_per})
    return build


def run(actual: str, declared: str, p: float = 0.5, shape: Tuple[int, int] = (8, 8),
        seed: int = 3) -> Dict[str, object]:
    """{check: result} of the convention and gradient checks on a layer drawing ``actual``
    masks against a contract declaring ``declared``."""
    spec = numpy_spec(f"dropconnect[{actual}]", "dropconnect", layer_with(actual),
                      {"p": p, "mask_per": declared, "in_features": shape[1], "out_features": shape[1]},
                      shape=shape)
    results = verify([spec], Settings(seed=seed), checks=CHECKS).targets[0].results
    return {r.check: r for r in results}


@pytest.mark.parametrize("convention", ["batch", "sample"])
def test_layer_with_the_declared_convention_passes(convention):
    res = run(convention, convention)
    assert {k: r.verdict for k, r in res.items()} == {NAME: PASS, **{f"{c}[{lay}]": PASS for c in (FWD, FD)
                                                                      for lay in LAYOUTS}}
    assert f"one weight mask per {convention}" in res[NAME].message
    assert res[NAME].details["observed"] == convention


def test_per_sample_layer_fails_the_per_batch_contract_on_the_structure_not_the_gradient():
    res = run("sample", "batch")
    assert res[NAME].verdict == FAIL
    msg = res[NAME].message
    assert msg.startswith("one weight mask per sample") and "the contract declares (mask_per='batch')" in msg
    assert _grad(res, FWD).verdict == PASS and _grad(res, FD).verdict == PASS  # its gradients are right for its masks


def test_per_batch_layer_fails_the_per_sample_contract_on_the_structure_not_the_gradient():
    res = run("batch", "sample")
    assert res[NAME].verdict == FAIL
    msg = res[NAME].message
    assert msg.startswith("one weight mask per batch") and "the contract declares (mask_per='sample')" in msg
    assert res[NAME].details["samples_differing"] == 0
    assert _grad(res, FWD).verdict == PASS and _grad(res, FD).verdict == PASS


def test_wide_layer_uses_column_windows_and_leaves_unseen_bits_out():
    """in = 90 > PACK_BITS: each sample shows a 30-column window; samples sharing a window are
    compared, and a per-sample layer's dx off its window is not compared (counted instead)."""
    res = run("sample", "batch", shape=(6, 90))
    assert res[NAME].verdict == FAIL and res[NAME].details["samples_compared"] == 3
    assert _grad(res, FWD).verdict == PASS and _grad(res, FWD).details["entries_not_determined"] > 0
    ok = run("sample", "sample", shape=(6, 90))
    assert ok[NAME].verdict == PASS and _grad(ok, FWD).verdict == PASS


def test_small_p_draws_more_calls_and_states_the_miss_probability():
    res = run("batch", "batch", p=0.01)
    assert res[NAME].verdict == PASS and res[NAME].details["calls"] > 1
    assert res[NAME].details["log_p_identical_if_per_sample"] <= np.log(1e-9)
    assert run("sample", "batch", p=0.01)[NAME].verdict == FAIL


def test_too_small_p_is_inconclusive_with_the_reason():
    res = run("batch", "batch", p=1e-5)
    assert res[NAME].verdict == INCONCLUSIVE and "not run" in res[NAME].message and "calls needed" in \
        res[NAME].message


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_not_applicable_where_the_conventions_coincide(p: float):
    assert NAME not in run("sample", "batch", p=p)


def test_a_backward_with_a_fresh_mask_still_fails_the_gradient_check():
    """The convention-free gradient rule is not lenient: per-sample masks redrawn in backward
    are caught."""
    class RedrawnInBackward(DropConnectLinear):
        def forward(self, x, weight=None, bias=None):
            self._w = np.asarray(self.weight if weight is None else weight, np.float64)
            return super().forward(x, weight, bias)

        def _backward(self, grad_out: np.ndarray):
            x, _, keep, dts = self._saved
            fresh = self.rng.random(keep.shape) >= self.p
            self._saved = (x, np.where(fresh, self._w / (1 - self.p), 0.0), fresh, dts)
            return super()._backward(grad_out)

    spec = numpy_spec("redrawn", "dropconnect", lambda prm: RedrawnInBackward(**{**prm, "mask_per": "sample"}),
                      {"p": 0.5, "mask_per": "sample", "in_features": 8, "out_features": 8}, shape=(8, 8))
    res = {r.check: r for r in verify([spec], Settings(seed=1), checks=[FWD, NAME]).targets[0].results}
    assert _grad(res, FWD).verdict == FAIL and res[NAME].verdict == PASS

