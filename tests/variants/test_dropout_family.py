"""Properties of Gaussian, alpha and feature-alpha dropout (and their contracts)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from dropverify.contracts import value_tolerance
from dropverify.errors import InvalidArgument
from dropverify.variants import get_contract, variant_class
from dropverify.variants.dropout import ALPHA_PRIME, alpha_affine, alpha_probe

GaussianDropout = variant_class("gaussian_dropout")
AlphaDropout = variant_class("alpha_dropout")
FeatureAlphaDropout = variant_class("feature_alpha_dropout")

DTYPES = [np.float16, np.float32, np.float64]
dtypes = st.sampled_from(DTYPES)
shapes = st.lists(st.integers(1, 6), min_size=1, max_size=4).map(tuple)
feature_shapes = st.lists(st.integers(1, 5), min_size=2, max_size=5).map(tuple)
seeds = st.integers(0, 2**32 - 1)
probs = st.floats(0.0, 1.0)
probs_open = st.floats(0.0, 0.95)

# 6 standard errors: a correct implementation fails one of these moment tests with
# probability about 2e-9 (normal approximation at n = 200_000).
Z = 6.0
N_DRAWS = 200_000


# ------------------------------------------------------------------------------
# Gaussian dropout

@given(shape=shapes, dtype=dtypes, p=st.floats(0.01, 0.95), seed=seeds)
def test_gaussian_keeps_shape_dtype_and_backward_uses_forward_multiplier(shape, dtype, p, seed):
    x = (0.5 + np.random.default_rng(seed).random(shape)).astype(dtype)
    layer = GaussianDropout(p=p, seed=seed)
    y = layer.forward(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    m = layer._saved[1]
    np.testing.assert_array_equal(y, x * m)
    g = np.random.default_rng(seed + 1).normal(size=shape).astype(dtype)
    np.testing.assert_array_equal(layer.backward(g), g * m)
    rtol, atol = value_tolerance(dtype)
    expected = get_contract("gaussian_dropout").input_gradients((x,), y, g, layer.params)[0]
    np.testing.assert_allclose(layer.backward(g).astype(np.float64), expected, rtol=4 * rtol, atol=4 * atol)


def test_gaussian_multiplier_moments_match_contract():
    p = 0.5
    sigma2 = p / (1 - p)
    x = np.ones(N_DRAWS)
    m = GaussianDropout(p=p, seed=11).forward(x)
    # mean: se = sigma / sqrt(n); variance of a normal sample: se = sigma^2 sqrt(2 / n)
    assert abs(m.mean() - 1.0) < Z * math.sqrt(sigma2 / N_DRAWS)
    assert abs(m.var(ddof=1) - sigma2) < Z * sigma2 * math.sqrt(2.0 / N_DRAWS)
    c = get_contract("gaussian_dropout")
    assert c.output_variance((np.array([2.0]),), {"p": p})[0] == pytest.approx(4.0 * sigma2, rel=1e-15)
    np.testing.assert_array_equal(c.output_mean((np.array([2.0, -3.0]),), {"p": p}), [2.0, -3.0])


def test_gaussian_draws_fresh_noise_each_call_and_reproduces_by_seed():
    x = np.ones((4, 5))
    layer = GaussianDropout(p=0.3, seed=5)
    assert not np.array_equal(layer.forward(x), layer.forward(x))
    assert np.array_equal(GaussianDropout(p=0.3, seed=5).forward(x), GaussianDropout(p=0.3, seed=5).forward(x))


@given(shape=shapes, dtype=dtypes, seed=seeds)
def test_gaussian_p_zero_and_eval_are_exact_identity(shape, dtype, seed):
    x = np.random.default_rng(seed).normal(size=shape).astype(dtype)
    assert np.array_equal(GaussianDropout(p=0.0, seed=seed).forward(x), x)
    layer = GaussianDropout(p=0.7, seed=seed).eval()
    assert np.array_equal(layer.forward(x), x)
    assert np.array_equal(layer.backward(x), x)


@pytest.mark.parametrize("bad", [1.0, -0.1, float("nan")])
def test_gaussian_rejects_p_one_with_half_open_range(bad):
    with pytest.raises(InvalidArgument, match=r"should be a number in \[0, 1\)"):
        GaussianDropout(p=bad)


def test_gaussian_contract_is_continuous_and_decodes_the_multiplier():
    c = get_contract("gaussian_dropout")
    assert (c.structure, c.dropped_value, c.kept_value, c.p_one_allowed) == ("continuous", None, None, False)
    assert c.multiplicative and c.shared_axes({"p": 0.5}, (2, 3)) == ()
    x, = c.probe_inputs((8, 9), np.random.default_rng(0))
    layer = GaussianDropout(p=0.4, seed=2)
    y = layer.forward(x)
    d = c.decode_output((x,), y, layer.params)
    assert d.dropped is None and d.valid.all()
    np.testing.assert_allclose(d.multiplier, layer._saved[1], rtol=1e-14)


def test_gaussian_empty_batch():
    assert GaussianDropout(p=0.5, seed=0).forward(np.ones((0, 3), np.float16)).shape == (0, 3)


# ------------------------------------------------------------------------------
# alpha dropout: the constants

def test_alpha_prime_is_minus_selu_lambda_times_alpha():
    selu_lambda, selu_alpha = 1.0507009873554804934193349852946, 1.6732632423543772848170429916717
    assert ALPHA_PRIME == pytest.approx(-selu_lambda * selu_alpha, rel=1e-15)


def test_alpha_affine_for_p_0_2_matches_hand_computed_values():
    a, b = alpha_affine(0.2)
    # ((0.8)(1 + 0.2 alpha'^2))^-1/2 and -a alpha' 0.2, evaluated to 30 digits with mpmath
    assert a == pytest.approx(0.878903583443532908502708244233, rel=1e-15)
    assert b == pytest.approx(0.309039962144094492794617792079, rel=1e-15)
    assert a * ALPHA_PRIME + b == pytest.approx(-1.23615984857637797117847116832, rel=1e-15)
    assert alpha_affine(0.0) == (1.0, 0.0)
    with pytest.raises(InvalidArgument):
        alpha_affine(1.0)


@pytest.mark.parametrize("p", [0.0, 0.05, 0.2, 0.5, 0.9, 0.999])
def test_alpha_contract_preserves_standard_normal_moments_exactly(p):
    """E_x[E[y|x]] = 0 and E_x[Var[y|x] + E[y|x]^2] = 1 for x ~ N(0, 1), by Gauss-Hermite
    quadrature (exact for these degree-2 polynomials, up to rounding)."""
    c = get_contract("alpha_dropout")
    nodes, weights = np.polynomial.hermite_e.hermegauss(8)
    weights = weights / weights.sum()
    mean = c.output_mean((nodes,), {"p": p})
    var = c.output_variance((nodes,), {"p": p})
    assert abs(weights @ mean) < 1e-12
    assert weights @ (var + mean ** 2) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("name", ["alpha_dropout", "feature_alpha_dropout"])
@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.97, 1.0])
def test_alpha_moments_are_those_of_the_two_point_law(name, p):
    """output_mean / output_variance agree with kept w.p. 1-p, dropped w.p. p."""
    c = get_contract(name)
    x, = alpha_probe((50,), np.random.default_rng(1))
    kept = c.kept_value((x,), {"p": p}, np.zeros(50, bool))
    dropped = c.dropped_value((x,), {"p": p})
    np.testing.assert_allclose(c.output_mean((x,), {"p": p}), (1 - p) * kept + p * dropped, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(c.output_variance((x,), {"p": p}), p * (1 - p) * (kept - dropped) ** 2,
                               rtol=1e-13, atol=1e-13)


def test_alpha_empirical_moments_on_standard_normal_draws():
    p = 0.3
    a, b = alpha_affine(p)
    x = np.random.default_rng(0).standard_normal(N_DRAWS)
    y = AlphaDropout(p=p, seed=1).forward(x)
    # y has mean 0 and variance 1; E[y^4] from the two-point law over x ~ N(0,1)
    ey4 = (1 - p) * (3 * a ** 4 + 6 * a ** 2 * b ** 2 + b ** 4) + p * (a * ALPHA_PRIME + b) ** 4
    assert abs(y.mean()) < Z / math.sqrt(N_DRAWS)
    assert abs((y * y).mean() - 1.0) < Z * math.sqrt((ey4 - 1.0) / N_DRAWS)


# ------------------------------------------------------------------------------
# alpha dropout: the layer

@given(shape=shapes, dtype=dtypes, p=probs_open, seed=seeds)
def test_alpha_values_are_affine_kept_or_affine_alpha(shape, dtype, p, seed):
    x, = alpha_probe(shape, np.random.default_rng(seed), dtype)
    layer = AlphaDropout(p=p, seed=seed)
    y = layer.forward(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    if p == 0.0:
        assert np.array_equal(y, x)
        return
    keep = layer._saved[1]
    a, b = alpha_affine(p)
    np.testing.assert_array_equal(y[keep], (a * x[keep].astype(np.float64) + b).astype(dtype))
    assert np.all(y[~keep] == dtype(a * ALPHA_PRIME + b))
    c = get_contract("alpha_dropout")
    d = c.decode_output((x,), y, layer.params)
    assert d.valid.all()
    np.testing.assert_array_equal(d.dropped, ~keep)


@given(shape=shapes, dtype=dtypes, p=probs_open, seed=seeds)
def test_alpha_backward_is_a_where_kept_zero_where_dropped(shape, dtype, p, seed):
    x, = alpha_probe(shape, np.random.default_rng(seed), dtype)
    layer = AlphaDropout(p=p, seed=seed)
    y = layer.forward(x)
    g = np.random.default_rng(seed + 1).normal(size=shape).astype(dtype)
    dx = layer.backward(g)
    assert dx.dtype == dtype
    a = alpha_affine(p)[0]
    keep = layer._saved[1] if p > 0 else np.ones(shape, bool)
    np.testing.assert_array_equal(dx, np.where(keep, g * dtype(a), dtype(0)))
    expected = get_contract("alpha_dropout").input_gradients((x,), y, g, layer.params)[0]
    rtol, atol = value_tolerance(dtype)
    np.testing.assert_allclose(dx.astype(np.float64), expected, rtol=4 * rtol, atol=4 * atol)


@pytest.mark.parametrize("cls", [AlphaDropout, FeatureAlphaDropout])
@pytest.mark.parametrize("dtype", DTYPES)
def test_alpha_edges_p_zero_eval_p_one_empty(cls, dtype):
    x, = alpha_probe((3, 4, 5), np.random.default_rng(0), dtype)
    assert np.array_equal(cls(p=0.0, seed=0).forward(x), x)
    assert np.array_equal(cls(p=0.6, seed=0).eval().forward(x), x)
    layer = cls(p=1.0, seed=0)
    y = layer.forward(x)
    assert y.dtype == dtype and np.all(y == 0)
    grad = layer.backward(np.ones_like(x))
    assert np.all(grad == 0) and np.all(np.isfinite(grad))
    assert cls(p=0.5, seed=0).forward(np.ones((0, 4, 2), dtype)).shape == (0, 4, 2)


def test_alpha_fresh_mask_each_call():
    x, = alpha_probe((16, 16), np.random.default_rng(0))
    layer = AlphaDropout(p=0.5, seed=0)
    assert not np.array_equal(layer.forward(x), layer.forward(x))


def test_alpha_probe_is_distinguishable_from_alpha_prime():
    for dtype in DTYPES:
        x, = alpha_probe((20_000,), np.random.default_rng(3), dtype)
        assert x.dtype == dtype and np.all(np.abs(x.astype(np.float64) - ALPHA_PRIME) > 0.05)


# ------------------------------------------------------------------------------
# feature alpha dropout

def channel_constant(dropped: np.ndarray) -> bool:
    """True iff the dropped pattern is constant over every (n, c) slice."""
    flat = dropped.reshape(dropped.shape[:2] + (-1,))
    return bool(np.all(flat == flat[..., :1])) if flat.shape[-1] else True


@given(shape=feature_shapes, dtype=dtypes, p=st.floats(0.05, 0.95), seed=seeds)
def test_feature_alpha_drops_whole_channels(shape, dtype, p, seed):
    x, = alpha_probe(shape, np.random.default_rng(seed), dtype)
    layer = FeatureAlphaDropout(p=p, seed=seed)
    y = layer.forward(x)
    c = get_contract("feature_alpha_dropout")
    d = c.decode_output((x,), y, layer.params)
    assert d.valid.all() and channel_constant(d.dropped)
    np.testing.assert_array_equal(d.dropped, np.broadcast_to(~layer._saved[1], shape))
    assert c.shared_axes(layer.params, shape) == tuple(range(2, len(shape)))


def test_channel_check_catches_an_elementwise_mask():
    """The structure check above fails on an element-wise mask (the 69960 class of bug)."""
    x, = alpha_probe((8, 4, 6, 6), np.random.default_rng(0))
    y = AlphaDropout(p=0.5, seed=0).forward(x)
    d = get_contract("feature_alpha_dropout").decode_output((x,), y, {"p": 0.5})
    assert not channel_constant(d.dropped)


def test_feature_alpha_rejects_rank_one():
    with pytest.raises(InvalidArgument, match=r"\(N, C, \.\.\.\)"):
        FeatureAlphaDropout(p=0.5).forward(np.ones(5))


def test_alpha_contracts_declare_their_conventions():
    for name in ("alpha_dropout", "feature_alpha_dropout"):
        c = get_contract(name)
        assert not c.multiplicative and c.p_one_allowed
        assert any("74004" in n for n in c.notes)
        assert c.drop_probability({"p": 0.3}, (2, 3)) == 0.3
        assert c.dropped_value((np.ones(2),), {"p": 1.0}) == 0.0
