"""Signed, wide-range probe inputs (issue 8 item 8): a layer that loses the sign or maps 0 to
something nonzero FAILs the exact value check, correct references pass, and the probe keeps
its promised range in every dtype."""
from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, strategies as st

from dropverify.checks import Settings
from dropverify.contracts import (PROBE_P_MAX, probe_magnitudes, signed_probe, signed_probe_with_zeros,
                                  value_tolerance)
from dropverify.runner import verify
from dropverify.targets import numpy_spec
from dropverify.variants import all_contracts, get_contract, variant_class

Dropout = variant_class("dropout")
VALUES = "multiplier_values_exact"
SHAPE = (16, 8, 8, 8)
DTYPES = [np.float16, np.float32, np.float64, ml_dtypes.bfloat16]


class AbsDropout(Dropout):
    """y = |x| * keep / (1 - p): right on positive inputs, wrong in sign on negative ones."""

    def _forward(self, x):
        return super()._forward(np.abs(x))


class ZeroLeaks(Dropout):
    """Correct except that x == 0 comes out as 1e-3 (a bias added where the input is 0)."""

    def _forward(self, x):
        y = super()._forward(x)
        return np.where(x == 0, x.dtype.type(1e-3), y)


def _values_results(cls, variant: str = "dropout", params=None, shape=SHAPE):
    spec = numpy_spec(f"t:{cls.__name__}", variant, lambda prm: cls(**prm), params or {"p": 0.3}, shape=shape)
    run = verify([spec], Settings(seed=11), checks=[VALUES])
    results = [r for r in run.all_results() if r.check.startswith(VALUES)]
    assert results
    return results


def test_abs_layer_fails_values_and_the_message_names_the_sign():
    for r in _values_results(AbsDropout):
        assert r.verdict == "FAIL", r.message
        assert "sign flipped" in r.message and "only negative inputs are wrong" in r.message
        # observed vs expected are quoted
        assert "y=" in r.message and "the kept value is -" in r.message
        by_sign = r.details["invalid_by_input_sign"]
        assert by_sign["negative"] > 0 and by_sign["positive"] == 0 and by_sign["zero"] == 0


def test_zero_mapped_to_nonzero_fails_values():
    for r in _values_results(ZeroLeaks):
        assert r.verdict == "FAIL", r.message
        assert "x=0" in r.message and "does not map" in r.message
        by_sign = r.details["invalid_by_input_sign"]
        assert by_sign["zero"] > 0 and by_sign["negative"] == by_sign["positive"] == 0


@pytest.mark.parametrize("variant, params, shape", [
    ("dropout", {"p": 0.3}, SHAPE),
    ("dropout", {"p": 0.999}, SHAPE),
    ("alpha_dropout", {"p": 0.3}, SHAPE),
    ("zoneout", {"p": 0.4}, (64, 128)),
    ("dropconnect", {"p": 0.3}, (32, 32)),
])
def test_references_pass_values_on_signed_inputs_with_zeros(variant, params, shape):
    cls = variant_class(variant)
    if variant == "dropconnect":
        params = dict(params, in_features=shape[1], out_features=shape[1])
    for r in _values_results(cls, variant, params, shape):
        assert r.verdict == "PASS", r.message


def test_values_probe_contains_zeros_and_the_statistical_probe_none():
    c = get_contract("dropout")
    rng = np.random.default_rng
    with_zeros = c.probe_inputs((8, 64), rng(0), zeros=True)[0]
    plain = c.probe_inputs((8, 64), rng(0))[0]
    assert np.any(with_zeros == 0) and np.all(plain != 0)
    assert np.any(plain < 0) and np.any(plain > 0)
    # a variant whose probe cannot carry zeros (attention: a probability row) keeps its own probe
    att = get_contract("attention_dropout")
    assert np.all(att.probe_inputs((2, 2, 4, 4), rng(0), zeros=True)[0] > 0)


def test_decoder_treats_zero_inputs_as_ambiguous_but_valid():
    c = get_contract("dropout")
    x = np.array([-2.0, 0.0, 3.0, 0.0])
    y = np.array([0.0, 0.0, 6.0, 0.5])      # last: 0 mapped to 0.5
    d = c.decode_output((x,), y, {"p": 0.5})
    np.testing.assert_array_equal(d.valid, [True, True, True, False])
    np.testing.assert_array_equal(d.ambiguous, [False, True, False, True])
    assert np.isnan(d.multiplier[[1, 3]]).all() and d.multiplier[2] == 2.0


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_probe_magnitudes_per_dtype(dtype):
    lo, hi = probe_magnitudes(dtype)
    fi = ml_dtypes.finfo(dtype) if np.dtype(dtype).name == "bfloat16" else np.finfo(dtype)
    assert 0 < lo < 1 < hi and lo * hi == pytest.approx(1.0)          # decades symmetric about 1
    assert hi / (1 - PROBE_P_MAX) * 4 <= float(fi.max)                 # kept values finite, with headroom
    assert lo >= 100 * value_tolerance(dtype)[1] and lo > 1000 * float(fi.tiny)
    assert math.log10(hi / lo) >= 2                                    # at least two decades


EXPECTED = {"float64": (1e-6, 1e6), "float32": (1e-4, 1e4), "float16": (0.1, 10.0), "bfloat16": (0.1, 10.0)}


def test_probe_magnitudes_table():
    for dt in DTYPES:
        lo, hi = probe_magnitudes(dt)
        want = EXPECTED[np.dtype(dt).name]
        assert lo == pytest.approx(want[0]) and hi == pytest.approx(want[1])


@given(dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**32 - 1),
       shape=st.lists(st.integers(1, 40), min_size=1, max_size=3).map(tuple),
       p=st.floats(0.0, PROBE_P_MAX))
def test_signed_probe_is_finite_nonzero_signed_and_in_range(dtype, seed, shape, p):
    x = signed_probe(shape, np.random.default_rng(seed), dtype)
    assert x.shape == shape and x.dtype == np.dtype(dtype)
    lo, hi = probe_magnitudes(dtype)
    m = np.abs(x.astype(np.float64))
    rounding = 2.0 ** -7                                              # bfloat16's, the coarsest here
    assert np.all(np.isfinite(m)) and np.all(m >= lo * (1 - rounding)) and np.all(m <= hi * (1 + rounding))
    kept = (x.astype(np.float64) / (1.0 - p)).astype(dtype).astype(np.float64)
    fi = ml_dtypes.finfo(dtype) if np.dtype(dtype).name == "bfloat16" else np.finfo(dtype)
    assert np.all(np.isfinite(kept)) and np.all(np.abs(kept) >= float(fi.tiny))   # finite and normal
    if x.size >= 64:        # both signs present (fails with probability 2^-63)
        assert np.any(x < 0) and np.any(x > 0)


@given(dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**32 - 1),
       shape=st.lists(st.integers(1, 40), min_size=1, max_size=3).map(tuple))
def test_probe_with_zeros_has_zeros_and_is_otherwise_the_signed_probe(dtype, seed, shape):
    x = signed_probe_with_zeros(shape, np.random.default_rng(seed), dtype)
    zero = x.astype(np.float64) == 0
    assert zero.any() and zero.sum() == max(1, round(0.125 * x.size))
    lo, _ = probe_magnitudes(dtype)
    assert np.all(np.abs(x.astype(np.float64)[~zero]) >= lo * (1 - 2.0 ** -7))


@given(seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from([np.float16, np.float32, np.float64]))
def test_every_contract_probe_is_finite_and_decodes_its_reference(seed, dtype):
    """Every registered contract's probe (custom probes included: alpha, zoneout, DropConnect,
    attention) is finite in every dtype, with and without zeros, and the contract's own numpy
    reference at p = 0.5 decodes as valid on it everywhere."""
    for c in all_contracts():
        for zeros in (False, True):
            inputs = c.probe_inputs(c.default_shape, np.random.default_rng(seed), dtype, zeros=zeros)
            assert all(np.all(np.isfinite(np.asarray(a, np.float64))) for a in inputs), c.name
            if zeros:
                continue
            layer = variant_class(c.name)(p=0.5, seed=seed % 1000)
            y = layer.forward(*inputs)
            assert np.all(np.isfinite(np.asarray(y, np.float64))), c.name
            assert c.decode_output(inputs, y, layer.params).valid.all(), c.name
