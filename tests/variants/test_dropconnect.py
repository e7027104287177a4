"""Properties of the DropConnect linear layer and its weight-mask contract."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from dropverify.contracts import probe_magnitudes, value_tolerance
from dropverify.errors import InvalidArgument
from dropverify.variants import get_contract, variant_class
from dropverify.variants.dropconnect import (MASK_CONVENTIONS, PACK_BITS, DropConnectLinear, decode_sample_masks,
                                             packed_probe, windows)

C = get_contract("dropconnect")
DTYPES = [np.float16, np.float32, np.float64]
dtypes = st.sampled_from(DTYPES)
widths = st.integers(1, 12)
seeds = st.integers(0, 2**32 - 1)
probs = st.floats(0.0, 1.0)


def params(p: float, n: int) -> dict:
    return C.validate_params(p=p, in_features=n, out_features=n)


def weight_keep(layer: DropConnectLinear) -> np.ndarray:
    """The (out, in) keep mask of the layer's last forward (all True when no mask was drawn)."""
    _, w_eff, keep, _ = layer._saved
    return np.ones(w_eff.shape, bool) if keep is None else keep


def test_registered_class_and_owned_parameters():
    assert variant_class("dropconnect") is DropConnectLinear
    layer = DropConnectLinear(5, 3, p=0.2, seed=0)
    assert layer.weight.shape == (3, 5) and layer.bias.shape == (3,)
    assert np.all(np.abs(layer.weight) <= 1 / math.sqrt(5))
    same = DropConnectLinear(5, 3, p=0.2, seed=0)
    assert np.array_equal(layer.weight, same.weight) and np.array_equal(layer.bias, same.bias)
    assert DropConnectLinear(5, 3, bias=False, seed=0).bias is None
    assert C.validate_params() == {"p": 0.3, "in_features": 32, "out_features": 32, "mask_per": "batch"}
    assert C.default_shape == (32, 32)


@given(n=widths, dtype=dtypes, p=probs, seed=seeds)
def test_probe_output_decodes_to_the_layer_weight_mask(n, dtype, p, seed):
    inputs = C.probe_inputs((n, n), np.random.default_rng(seed), dtype)
    x, w, b = inputs
    lo, hi = probe_magnitudes(dtype)
    aw, ab = np.abs(w.astype(np.float64)), np.abs(b.astype(np.float64))
    assert np.array_equal(x, np.eye(n)) and np.all((aw >= 0.99 * lo) & (aw <= hi))
    assert np.all((ab >= 0.99 * lo) & (ab <= 10.01 * lo))  # small bias: never lost in W/(1-p) + b
    layer = DropConnectLinear(n, n, p=p, seed=seed)
    y = layer.forward(*inputs)
    assert y.shape == (n, n) and y.dtype == dtype
    prm = params(p, n)
    d = C.decode_output(inputs, y, prm)
    assert d.valid.all()
    np.testing.assert_array_equal(d.dropped, ~weight_keep(layer).T)
    if p < 1:
        kept = ~d.dropped
        np.testing.assert_allclose(d.multiplier[kept], 1 / (1 - p), rtol=8 * value_tolerance(dtype)[0] + 1e-12)


@given(n_in=widths, n_out=widths, batch=st.integers(0, 6), p=st.floats(0.0, 0.9), seed=seeds)
def test_forward_is_one_masked_weight_shared_by_the_batch(n_in, n_out, batch, p, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, n_in))
    layer = DropConnectLinear(n_in, n_out, p=p, seed=seed)
    y = layer.forward(np.concatenate([x, x]))
    keep = weight_keep(layer)
    w_eff = layer.weight * keep / (1 - p)
    np.testing.assert_allclose(y, np.concatenate([x, x]) @ w_eff.T + layer.bias, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(y[:batch], y[batch:])  # one mask for every row


@given(n_in=widths, n_out=widths, p=probs, seed=seeds)
def test_backward_uses_the_forward_mask(n_in, n_out, p, seed):
    rng = np.random.default_rng(seed)
    x, w, b = rng.normal(size=(4, n_in)), rng.normal(size=(n_out, n_in)), rng.normal(size=n_out)
    g = rng.normal(size=(4, n_out))
    layer = DropConnectLinear(n_in, n_out, p=p, seed=seed)
    layer.forward(x, w, b)
    scale = 0.0 if p == 1 else 1 / (1 - p)
    m = weight_keep(layer) * scale
    dx, dw, db = layer.backward(g)
    np.testing.assert_allclose(dx, g @ (w * m), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, (g.T @ x) * m, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, g.sum(axis=0), rtol=1e-12, atol=1e-12)
    assert all(np.all(np.isfinite(a)) for a in (dx, dw, db))


def test_backward_matches_finite_differences_with_the_mask_frozen():
    rng = np.random.default_rng(0)
    x, w, b = rng.normal(size=(3, 4)), rng.normal(size=(5, 4)), rng.normal(size=5)
    g = rng.normal(size=(3, 5))
    layer = DropConnectLinear(4, 5, p=0.4, seed=7)
    y = layer.forward(x, w, b)
    dx, dw, db = layer.backward(g)
    eps = 1e-6

    def loss(x_, w_, b_):
        frozen = DropConnectLinear(4, 5, p=0.4, seed=7)  # same seed -> same mask
        return float(np.sum(g * frozen.forward(x_, w_, b_)))

    assert loss(x, w, b) == pytest.approx(float(np.sum(g * y)))
    for arr, grad, pos in ((x, dx, (1, 2)), (w, dw, (3, 1)), (b, db, (2,))):
        up, down = [a.copy() for a in (x, w, b)], [a.copy() for a in (x, w, b)]
        k = next(i for i, a in enumerate((x, w, b)) if a is arr)
        up[k][pos] += eps
        down[k][pos] -= eps
        assert (loss(*up) - loss(*down)) / (2 * eps) == pytest.approx(grad[pos], rel=1e-6, abs=1e-8)


@given(n=widths, dtype=dtypes, p=probs, seed=seeds)
def test_contract_gradients_from_the_output_match_backward(n, dtype, p, seed):
    inputs = C.probe_inputs((n, n), np.random.default_rng(seed), dtype)
    layer = DropConnectLinear(n, n, p=p, seed=seed)
    y = layer.forward(*inputs)
    g = np.random.default_rng(seed + 1).normal(size=(n, n)).astype(dtype)
    got = layer.backward(g)
    expected = C.input_gradients(inputs, y, g, params(p, n))
    rtol = 20 * value_tolerance(dtype)[0] + 1e-12
    for a, e, arr in zip(got, expected, inputs):
        assert a.dtype == arr.dtype and a.shape == arr.shape
        np.testing.assert_allclose(a.astype(np.float64), e, rtol=rtol, atol=rtol * (1 + np.abs(e).max()))


@given(n=widths, dtype=dtypes, seed=seeds)
def test_eval_is_mean_network_and_p_zero_equals_it_bit_for_bit(n, dtype, seed):
    _, w, b = C.probe_inputs((n, n), np.random.default_rng(seed), dtype)
    x = np.random.default_rng(seed).normal(size=(3, n)).astype(dtype)
    at_zero = DropConnectLinear(n, n, p=0.0, seed=seed).forward(x, w, b)
    evaluated = DropConnectLinear(n, n, p=0.6, seed=seed).eval().forward(x, w, b)
    assert np.array_equal(at_zero, evaluated) and at_zero.dtype == dtype
    rtol, atol = value_tolerance(dtype)
    np.testing.assert_allclose(evaluated.astype(np.float64), C.eval_output((x, w, b), {"p": 0.6}),
                               rtol=50 * rtol, atol=50 * atol * n)


def test_p_one_leaves_the_bias():
    rng = np.random.default_rng(0)
    x, w, b = rng.normal(size=(6, 4)), rng.normal(size=(3, 4)), rng.normal(size=3)
    layer = DropConnectLinear(4, 3, p=1.0, seed=0)
    y = layer.forward(x, w, b)
    np.testing.assert_array_equal(y, np.broadcast_to(b, (6, 3)))
    dx, dw, db = layer.backward(np.ones((6, 3)))
    assert np.all(dx == 0) and np.all(dw == 0) and np.array_equal(db, np.full(3, 6.0))
    np.testing.assert_array_equal(C.output_mean((x, w, b), {"p": 1.0}), y)
    assert np.all(C.output_variance((x, w, b), {"p": 1.0}) == 0)


@pytest.mark.parametrize("p", [0.0, 0.25, 0.9])
def test_contract_moments_are_the_two_point_law_on_the_probe(p):
    inputs = C.probe_inputs((7, 7), np.random.default_rng(2))
    kept, dropped = C.kept_value(inputs, {"p": p}, None), C.dropped_value(inputs, {"p": p})
    np.testing.assert_allclose(C.output_mean(inputs, {"p": p}), (1 - p) * kept + p * dropped, rtol=1e-13)
    np.testing.assert_allclose(C.output_variance(inputs, {"p": p}), p * (1 - p) * (kept - dropped) ** 2,
                               rtol=1e-13, atol=1e-13)


def test_fresh_mask_each_call_and_same_seed_reproduces():
    inputs = C.probe_inputs((16, 16), np.random.default_rng(0))
    layer = DropConnectLinear(16, 16, p=0.5, seed=3)
    assert not np.array_equal(layer.forward(*inputs), layer.forward(*inputs))
    assert np.array_equal(DropConnectLinear(16, 16, p=0.5, seed=3).forward(*inputs),
                          DropConnectLinear(16, 16, p=0.5, seed=3).forward(*inputs))


def test_uses_own_weights_when_none_are_given_and_empty_batch():
    layer = DropConnectLinear(4, 2, p=0.0, seed=1)
    x = np.random.default_rng(0).normal(size=(3, 4))
    np.testing.assert_allclose(layer.forward(x), x @ layer.weight.T + layer.bias, rtol=1e-12)
    assert layer.forward(np.ones((0, 4), np.float32)).shape == (0, 2)


def test_bad_shapes_and_params_are_rejected():
    with pytest.raises(InvalidArgument, match="N == in_features"):
        C.probe_inputs((4, 5), np.random.default_rng(0))
    layer = DropConnectLinear(4, 2, p=0.5, seed=0)
    with pytest.raises(InvalidArgument, match="rank"):
        layer.forward(np.ones(4))
    with pytest.raises(InvalidArgument, match="weight.shape"):
        layer.forward(np.ones((2, 4)), np.ones((2, 3)))
    with pytest.raises(InvalidArgument, match="bias.shape"):
        layer.forward(np.ones((2, 4)), np.ones((2, 4)), np.ones(3))
    with pytest.raises(InvalidArgument, match="in_features"):
        DropConnectLinear(0, 2)
    with pytest.raises(InvalidArgument, match=r"p=.*\[0, 1\]"):
        DropConnectLinear(2, 2, p=1.5)


def test_infer_gaussian_matches_closed_form_moments():
    """Identity activation -> the mean x W^T + b; ReLU -> E[relu(u)] = mu Phi(mu/s) + s phi(mu/s).
    Monte Carlo error bounded by 6 standard errors (s / sqrt(n) bounds both sds)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 6))
    p, n = 0.3, 40_000
    layer = DropConnectLinear(6, 4, p=p, seed=1)
    mu = x @ layer.weight.T + layer.bias
    s = np.sqrt(p / (1 - p) * (x * x) @ (layer.weight ** 2).T)
    bound = 6 * s / math.sqrt(n)
    assert np.all(np.abs(layer.infer_gaussian(x, n) - mu) < bound)
    z = mu / s
    phi = np.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + np.vectorize(math.erf)(z / math.sqrt(2)))
    relu_mean = mu * cdf + s * phi
    assert np.all(np.abs(layer.infer_gaussian(x, n, activation=lambda u: np.maximum(u, 0)) - relu_mean) < bound)
    # the variance it moment-matches is the contract's, which is the true DropConnect variance
    np.testing.assert_allclose(C.output_variance((x, layer.weight, layer.bias), {"p": p}), s * s, rtol=1e-12)
    np.testing.assert_allclose(DropConnectLinear(6, 4, p=1.0, seed=1).infer_gaussian(x, 3, weight=layer.weight,
                                                                                      bias=layer.bias),
                               np.broadcast_to(layer.bias, (3, 4)))
    with pytest.raises(InvalidArgument):
        layer.infer_gaussian(x, 0)


# ------------------------------------------------------------------------------ mask_per: batch or sample

def sample_keep(layer: DropConnectLinear, n: int) -> np.ndarray:
    """The (N, out, in) keep masks of the layer's last forward, either convention."""
    keep = weight_keep(layer)
    return np.broadcast_to(keep, (n,) + keep.shape[-2:]) if keep.ndim == 2 else keep


def test_mask_per_is_validated():
    assert DropConnectLinear(3, 2, mask_per="sample", seed=0).params["mask_per"] == "sample"
    with pytest.raises(InvalidArgument, match="mask_per"):
        DropConnectLinear(3, 2, mask_per="token")


@given(n_in=widths, n_out=widths, batch=st.integers(0, 6), p=st.floats(0.0, 0.9), seed=seeds)
def test_per_sample_forward_and_backward_use_one_mask_per_sample(n_in, n_out, batch, p, seed):
    rng = np.random.default_rng(seed)
    x, g = rng.normal(size=(batch, n_in)), rng.normal(size=(batch, n_out))
    layer = DropConnectLinear(n_in, n_out, p=p, mask_per="sample", seed=seed)
    y = layer.forward(x)
    m = sample_keep(layer, batch) / (1 - p)
    np.testing.assert_allclose(y, np.einsum("noi,ni->no", layer.weight * m, x) + layer.bias, rtol=1e-12, atol=1e-12)
    dx, dw, db = layer.backward(g)
    np.testing.assert_allclose(dx, np.einsum("no,noi->ni", g, layer.weight * m), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, np.einsum("no,ni,noi->oi", g, x, m), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, g.sum(axis=0), rtol=1e-12, atol=1e-12)


def test_per_sample_masks_differ_between_identical_rows():
    x = np.ones((2, 16))
    y = DropConnectLinear(16, 16, p=0.5, mask_per="sample", seed=0).forward(x)
    assert not np.array_equal(y[0], y[1])
    y = DropConnectLinear(16, 16, p=0.5, mask_per="batch", seed=0).forward(x)
    assert np.array_equal(y[0], y[1])


@given(n_in=st.integers(1, 100), batch=st.integers(1, 8), p=st.floats(0.0, 1.0),
       mask_per=st.sampled_from(MASK_CONVENTIONS), seed=seeds)
def test_packed_probe_reads_every_sample_mask_and_the_rule_matches_backward(n_in, batch, p, mask_per, seed):
    inputs = packed_probe((batch, n_in), np.random.default_rng(seed))
    x = inputs[0]
    wins = windows(n_in)
    assert all(np.count_nonzero(row) == len(wins[i % len(wins)]) for i, row in enumerate(x))
    layer = DropConnectLinear(n_in, n_in, p=p, mask_per=mask_per, seed=seed)
    y = layer.forward(*inputs)
    prm = {**params(p, n_in), "mask_per": mask_per}
    masks = decode_sample_masks(inputs, y, prm)
    assert masks.valid.all()
    known = masks.known if 0 < p < 1 else np.broadcast_to((x != 0)[:, None, :], masks.known.shape)
    np.testing.assert_array_equal(masks.keep[known], sample_keep(layer, batch)[known])
    g = np.random.default_rng(seed + 1).normal(size=y.shape)
    for got, exp in zip(layer.backward(g), C.input_gradients(inputs, y, g, prm)):
        det = ~np.isnan(exp)
        np.testing.assert_allclose(got[det], exp[det], rtol=1e-9, atol=1e-9)
    if n_in <= PACK_BITS:  # one window: every bit shows, nothing is left undetermined
        assert not any(np.isnan(e).any() for e in C.input_gradients(inputs, y, g, prm))


@pytest.mark.parametrize("p", [0.3, 0.8])
def test_per_sample_rule_on_the_identity_probe_leaves_unseen_dx_undetermined(p):
    n = 6
    inputs = C.probe_inputs((n, n), np.random.default_rng(4))
    layer = DropConnectLinear(n, n, p=p, mask_per="sample", seed=4)
    y = layer.forward(*inputs)
    g = np.random.default_rng(5).normal(size=(n, n))
    dx, dw, db = C.input_gradients(inputs, y, g, {**params(p, n), "mask_per": "sample"})
    np.testing.assert_array_equal(np.isnan(dx), ~np.eye(n, dtype=bool))  # sample i shows column i only
    got = layer.backward(g)
    np.testing.assert_allclose(np.diag(got[0]), np.diag(dx), rtol=1e-9)
    np.testing.assert_allclose(got[1], dw, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got[2], db, rtol=1e-12)


def test_batch_rule_fills_unseen_bits_only_when_the_call_shows_one_mask():
    """Per batch, an unseen bit comes from another sample -- unless this call's samples
    disagree on some weight (then the rule reads each sample's own bits only)."""
    inputs = packed_probe((6, 90), np.random.default_rng(0))  # three windows, two samples each
    prm = {**params(0.5, 90), "mask_per": "batch"}
    for mask_per, undetermined in (("batch", False), ("sample", True)):
        layer = DropConnectLinear(90, 90, p=0.5, mask_per=mask_per, seed=1)
        y = layer.forward(*inputs)
        dx = C.input_gradients(inputs, y, np.ones(y.shape), prm)[0]
        assert np.isnan(dx).any() == undetermined
