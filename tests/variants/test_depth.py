"""Properties of stochastic depth, DropPath, the residual wrapper and the survival schedule."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

from dropverify.variants import get_contract
from dropverify.errors import InvalidArgument
from dropverify.variants import variant_class
from dropverify.variants.depth import (StochasticDepthResidual, expected_depth, linear_decay_drop_rates,
                                       linear_decay_survival)

StochasticDepth = variant_class("stochastic_depth")
DropPath = variant_class("drop_path")
dtypes = st.sampled_from([np.float16, np.float32, np.float64])
shapes = st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple)
seeds = st.integers(0, 2**32 - 1)
probs = st.floats(0.0, 1.0)
modes = st.sampled_from(["row", "batch"])
scalings = st.sampled_from(["inverted", "eval_scale"])


def positive(shape, seed, dtype=np.float64):
    return (0.5 + np.random.default_rng(seed).random(shape)).astype(dtype)


def expected_keep(layer, shape, seed):
    """The keep mask the layer must draw: its own generator, one draw per mask unit."""
    return np.broadcast_to(np.random.default_rng(seed).random(layer.mask_shape(shape)) >= layer.p, shape)


def constant_along(a, axes):
    ref = a[tuple(slice(0, 1) if i in axes else slice(None) for i in range(a.ndim))]
    return bool(np.all(a == ref))


# -- stochastic depth ----------------------------------------------------------------------

@given(shape=shapes, dtype=dtypes, p=probs, seed=seeds, mode=modes, scaling=scalings)
def test_stochastic_depth_mask_structure_and_kept_values(shape, dtype, p, seed, mode, scaling):
    x = positive(shape, seed, dtype)
    layer = StochasticDepth(p=p, mode=mode, scaling=scaling, seed=seed)
    y = layer.forward(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    scale = 1.0 if scaling == "eval_scale" else (1.0 / (1.0 - p) if p < 1 else 0.0)
    keep = expected_keep(layer, shape, seed) if p > 0 else np.ones(shape, bool)
    np.testing.assert_array_equal(y, np.where(keep, x * dtype(scale), dtype(0)))
    contract = layer.contract
    axes = contract.shared_axes(layer.params, shape)
    assert axes == (tuple(range(1, len(shape))) if mode == "row" else tuple(range(len(shape))))
    assert layer.mask_shape(shape) == tuple(1 if i in axes else s for i, s in enumerate(shape))
    decoded = contract.decode_output((x,), y, layer.params)
    assert decoded.valid.all()
    np.testing.assert_array_equal(decoded.dropped, ~keep)
    assert constant_along(decoded.dropped, axes)


@given(seed=seeds, p=st.floats(0.2, 0.8))
def test_batch_mode_makes_one_decision_for_the_whole_batch(seed, p):
    layer = StochasticDepth(p=p, mode="batch", seed=seed)
    decisions = [bool(np.all(layer.forward(np.ones((16, 3))) == 0)) for _ in range(40)]
    for _ in range(5):
        y = layer.forward(np.ones((16, 3)))
        assert np.all(y == 0) or np.all(y != 0)
    assert any(decisions) and not all(decisions)   # P(fail) <= 2 * 0.8**40 ~ 3e-4 per example


def test_row_mode_decides_per_sample():
    y = StochasticDepth(p=0.5, mode="row", seed=3).forward(np.ones((256, 4)))
    row_dropped = np.all(y == 0, axis=1)
    assert np.array_equal(row_dropped, np.any(y == 0, axis=1))
    assert 0.35 < row_dropped.mean() < 0.65


@given(shape=shapes, dtype=dtypes, seed=seeds, scaling=scalings, p=st.floats(0.0, 1.0))
def test_eval_output_and_p_zero(shape, dtype, seed, scaling, p):
    x = np.random.default_rng(seed).normal(size=shape).astype(dtype)
    assert np.array_equal(StochasticDepth(p=0.0, scaling=scaling, seed=seed).forward(x), x)
    assert np.array_equal(StochasticDepth(p=0.0, scaling=scaling, seed=seed).eval().forward(x), x)
    layer = StochasticDepth(p=p, scaling=scaling, seed=seed).eval()
    y = layer.forward(x)
    want = x if scaling == "inverted" or p == 0 else x * dtype(1.0 - p)
    np.testing.assert_array_equal(y, want)
    np.testing.assert_allclose(layer.contract.eval_output((x,), layer.params), want, rtol=2e-3, atol=1e-3)
    g = np.ones(shape, dtype)
    np.testing.assert_array_equal(layer.backward(g), g if scaling == "inverted" or p == 0 else g * dtype(1 - p))


@given(shape=shapes, p=st.floats(0.0, 0.99), seed=seeds, mode=modes, scaling=scalings)
def test_backward_uses_forward_mask(shape, p, seed, mode, scaling):
    x = positive(shape, seed)
    layer = StochasticDepth(p=p, mode=mode, scaling=scaling, seed=seed)
    y = layer.forward(x)
    g = np.random.default_rng(seed + 1).normal(size=shape)
    grad = layer.backward(g)
    np.testing.assert_allclose(grad, g * y / x, rtol=1e-12)
    np.testing.assert_allclose(grad, layer.contract.input_gradients((x,), y, g, layer.params)[0], rtol=1e-12)


@pytest.mark.parametrize("scaling", ["inverted", "eval_scale"])
@pytest.mark.parametrize("mode", ["row", "batch"])
def test_p_one_gives_zeros_finite_gradients_and_empty_batch(mode, scaling):
    layer = StochasticDepth(p=1.0, mode=mode, scaling=scaling, seed=0)
    y = layer.forward(np.ones((3, 4), np.float16))
    assert np.all(y == 0) and y.dtype == np.float16
    assert np.all(np.isfinite(layer.backward(np.ones((3, 4), np.float16))))
    assert np.all(layer.eval().forward(np.ones((3, 4))) == (0 if scaling == "eval_scale" else 1))
    assert StochasticDepth(p=0.5, mode=mode, seed=0).forward(np.ones((0, 4))).shape == (0, 4)


@pytest.mark.parametrize("scaling, mean_factor", [("inverted", 1.0), ("eval_scale", 0.7)])
def test_contract_moments_match_monte_carlo(scaling, mean_factor):
    p, n = 0.3, 4000
    layer = StochasticDepth(p=p, scaling=scaling, seed=11)
    x = np.full((n, 1), 2.0)
    y = layer.forward(x)
    mean = layer.contract.output_mean((x,), layer.params)
    var = layer.contract.output_variance((x,), layer.params)
    np.testing.assert_allclose(mean, 2.0 * mean_factor)
    assert abs(y.mean() - mean[0, 0]) < 5 * np.sqrt(var[0, 0] / n)
    np.testing.assert_allclose(mean, layer.contract.eval_output((x,), layer.params))   # both conventions


def test_contract_notes_name_both_conventions_and_expose_schedule():
    c = get_contract("stochastic_depth")
    text = " ".join(c.notes)
    assert "inverted" in text and "eval_scale" in text and "torchvision" in text and "paper" in text
    assert c.extra["schedule"] is linear_decay_survival and c.extra["expected_depth"] is expected_depth


@pytest.mark.parametrize("bad", [{"mode": "sample"}, {"scaling": "none"}, {"p": 1.5}, {"p": -0.1}])
def test_invalid_parameters_are_rejected(bad):
    with pytest.raises(InvalidArgument, match="but should be"):
        StochasticDepth(**bad)


def test_scalar_input_is_rejected_with_layout():
    with pytest.raises(InvalidArgument, match=r"rank=0.*\(N, \.\.\.\)"):
        StochasticDepth(p=0.5).forward(np.float64(1.0))


# -- drop path -----------------------------------------------------------------------------

@given(shape=shapes, dtype=dtypes, p=probs, seed=seeds, scale_by_keep=st.booleans())
def test_drop_path_per_sample_mask_and_scale(shape, dtype, p, seed, scale_by_keep):
    x = positive(shape, seed, dtype)
    layer = DropPath(p=p, scale_by_keep=scale_by_keep, seed=seed)
    y = layer.forward(x)
    assert y.dtype == x.dtype and y.shape == x.shape
    scale = (1.0 / (1.0 - p) if p < 1 else 0.0) if scale_by_keep else 1.0
    keep = expected_keep(layer, shape, seed) if p > 0 else np.ones(shape, bool)
    np.testing.assert_array_equal(y, np.where(keep, x * dtype(scale), dtype(0)))
    assert layer.contract.shared_axes(layer.params, shape) == tuple(range(1, len(shape)))
    assert np.array_equal(layer.eval().forward(x), x)
    if p == 1.0:
        assert np.all(y == 0)


def test_drop_path_without_rescaling_is_not_expectation_preserving():
    c = get_contract("drop_path")
    x = np.full((5000, 2), 1.0)
    params = c.validate_params(p=0.25, scale_by_keep=False)
    np.testing.assert_allclose(c.output_mean((x,), params), 0.75)
    np.testing.assert_allclose(c.eval_output((x,), params), 1.0)
    y = DropPath(p=0.25, scale_by_keep=False, seed=5).forward(x)
    assert abs(y.mean() - 0.75) < 5 * np.sqrt(0.25 * 0.75 / 5000)
    assert any("scale_by_keep=False" in n and "not expectation preserving" in n for n in c.notes)
    np.testing.assert_allclose(c.output_mean((x,), c.validate_params(p=0.25)), 1.0)


def test_drop_path_p_one_finite_gradient_and_p_zero_identity():
    layer = DropPath(p=1.0, seed=0)
    assert np.all(layer.forward(np.ones((4, 3))) == 0)
    assert np.all(np.isfinite(layer.backward(np.ones((4, 3)))))
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float16)
    assert np.array_equal(DropPath(p=0.0).forward(x), x)


# -- residual wrapper ----------------------------------------------------------------------

class Doubling:
    """branch(x) = 2x, with a backward and a call counter."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        return 2 * x

    def backward(self, g):
        return 2 * g


@given(shape=shapes, dtype=dtypes, seed=seeds, p=st.floats(0.1, 0.9))
def test_residual_skipped_rows_return_input_exactly(shape, dtype, seed, p):
    x = np.random.default_rng(seed).normal(size=shape).astype(dtype)
    x.flat[0] = -0.0                             # x + 0 would give +0.0 here
    block = StochasticDepthResidual(Doubling(), p=p, seed=seed)
    y = block.forward(x)
    keep = expected_keep(block.drop, shape, seed)
    assert y.dtype == x.dtype
    assert y[~keep].tobytes() == x[~keep].tobytes()   # bit for bit
    np.testing.assert_array_equal(y[keep], (x + 2 * x * dtype(1.0 / (1.0 - p)))[keep])
    g = np.ones(shape)
    np.testing.assert_allclose(block.backward(g), np.where(keep, 1.0 + 2.0 / (1.0 - p), 1.0), rtol=2e-3)


def test_residual_fully_skipped_block_returns_x_without_calling_branch():
    x = np.array([[-0.0, np.inf, 1.5]])
    branch = Doubling()
    block = StochasticDepthResidual(branch, p=1.0, mode="batch", seed=0)
    y = block.forward(x)
    assert y is x and branch.calls == 0
    np.testing.assert_array_equal(block.backward(np.ones_like(x)), np.ones_like(x))


@pytest.mark.parametrize("scaling, factor", [("inverted", 1.0), ("eval_scale", 0.6)])
def test_residual_eval_adds_scaled_branch(scaling, factor):
    x = np.arange(6.0).reshape(2, 3)
    block = StochasticDepthResidual(Doubling(), p=0.4, scaling=scaling, seed=0).eval()
    np.testing.assert_allclose(block.forward(x), x + factor * 2 * x)
    assert not block.training and block.train().training


def test_residual_rejects_bad_branch():
    with pytest.raises(InvalidArgument, match="branch"):
        StochasticDepthResidual(lambda x: x[:1], p=0.0).forward(np.ones((3, 2)))
    with pytest.raises(InvalidArgument, match="branch"):
        StochasticDepthResidual("not callable")


# -- schedule ------------------------------------------------------------------------------

@given(num_blocks=st.integers(1, 200), final=st.floats(0.0, 1.0))
def test_linear_decay_schedule_endpoints_and_monotone(num_blocks, final):
    s = linear_decay_survival(num_blocks, final)
    assert s.shape == (num_blocks,)
    assert s[-1] == final                                   # exactly p_L
    assert s[0] == 1.0 - (1.0 - final) / num_blocks
    assert np.all(np.diff(s) <= 0) and np.all((s >= final) & (s <= 1.0))
    d = linear_decay_drop_rates(num_blocks, 1.0 - final)
    np.testing.assert_allclose(d, 1.0 - s, atol=1e-15)
    assert linear_decay_drop_rates(num_blocks, final)[-1] == final
    assert expected_depth(s) == pytest.approx(float(np.sum(s)))


def test_schedule_and_expected_depth_by_hand_for_four_blocks():
    s = linear_decay_survival(4, 0.5)
    np.testing.assert_array_equal(s, [0.875, 0.75, 0.625, 0.5])
    assert expected_depth(s) == 2.75                        # (3L - 1) / 4 for p_L = 0.5 (the paper)
    np.testing.assert_array_equal(linear_decay_drop_rates(4, 0.5), [0.125, 0.25, 0.375, 0.5])
    assert linear_decay_survival(3, 0.1)[-1] == 0.1          # 1 - (1 - 0.1) != 0.1 in floating point


@pytest.mark.parametrize("args", [(0, 0.5), (2.5, 0.5), (4, 1.5), (4, float("nan")), (True, 0.5)])
def test_schedule_rejects_bad_arguments(args):
    with pytest.raises(InvalidArgument, match="but should be"):
        linear_decay_survival(*args)


def test_expected_depth_rejects_non_probabilities():
    with pytest.raises(InvalidArgument):
        expected_depth([0.5, 1.2])
    assert expected_depth([]) == 0.0
