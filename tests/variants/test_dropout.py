"""Properties of the element-wise dropout reference."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

from dropverify.variants import get_contract
from dropverify.errors import InvalidArgument
from dropverify.variants import variant_class

Dropout = variant_class("dropout")
dtypes = st.sampled_from([np.float16, np.float32, np.float64])
shapes = st.lists(st.integers(1, 6), min_size=1, max_size=4).map(tuple)
seeds = st.integers(0, 2**32 - 1)
probs = st.floats(0.0, 1.0)


@given(shape=shapes, dtype=dtypes, p=probs, seed=seeds)
def test_kept_values_are_scaled_input_and_dropped_are_zero(shape, dtype, p, seed):
    x = (0.5 + np.random.default_rng(seed).random(shape)).astype(dtype)
    layer = Dropout(p=p, seed=seed)
    y = layer.forward(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    kept = y != 0
    scale = dtype(1.0 / (1.0 - p)) if p < 1 else dtype(0)
    np.testing.assert_array_equal(y[kept], x[kept] * scale)
    if p == 1.0:
        assert not kept.any()


@given(shape=shapes, p=st.floats(0.0, 0.99), seed=seeds)
def test_backward_uses_forward_mask(shape, p, seed):
    x = 0.5 + np.random.default_rng(seed).random(shape)
    layer = Dropout(p=p, seed=seed)
    y = layer.forward(x)
    g = np.random.default_rng(seed + 1).normal(size=shape)
    np.testing.assert_allclose(layer.backward(g), g * y / x, rtol=1e-12)


@given(shape=shapes, dtype=dtypes, seed=seeds)
def test_p_zero_is_exact_identity_and_eval_is_identity(shape, dtype, seed):
    x = np.random.default_rng(seed).normal(size=shape).astype(dtype)
    assert np.array_equal(Dropout(p=0.0, seed=seed).forward(x), x)
    assert np.array_equal(Dropout(p=0.7, seed=seed).eval().forward(x), x)


def test_p_one_gives_zeros_and_finite_gradients():
    layer = Dropout(p=1.0, seed=0)
    y = layer.forward(np.ones((3, 4)))
    assert np.all(y == 0)
    assert np.all(np.isfinite(layer.backward(np.ones((3, 4)))))


def test_empty_batch_and_same_seed_reproduces():
    assert Dropout(p=0.5, seed=0).forward(np.ones((0, 4), np.float32)).shape == (0, 4)
    x = np.ones((8, 8))
    assert np.array_equal(Dropout(p=0.5, seed=3).forward(x), Dropout(p=0.5, seed=3).forward(x))


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "a"])
def test_invalid_p_is_rejected_with_range(bad):
    with pytest.raises(InvalidArgument, match=r"p=.*should be a number in \[0, 1\]"):
        Dropout(p=bad)


def test_contract_declares_elementwise_mask():
    c = get_contract("dropout")
    assert c.shared_axes({"p": 0.5}, (2, 3)) == ()
    assert c.drop_probability({"p": 0.25}, (2, 3)) == 0.25
