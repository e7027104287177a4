"""Properties of spatial (channel-wise) dropout in 1-D, 2-D and 3-D, both layouts."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

from dropverify.variants import get_contract
from dropverify.errors import InvalidArgument
from dropverify.variants import BernoulliMaskVariant, variant_class

DIMS = (1, 2, 3)
DTYPES = [np.float16, np.float32, np.float64]
dims_st = st.sampled_from(DIMS)
dtypes = st.sampled_from(DTYPES)
seeds = st.integers(0, 2**32 - 1)
layouts = st.booleans()


def name(dims: int) -> str:
    return f"spatial_dropout_{dims}d"


@st.composite
def cases(draw, max_side: int = 4):
    """(dims, channels_last, shape) with a batched shape of rank dims + 2."""
    dims = draw(dims_st)
    channels_last = draw(layouts)
    n, c = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    spatial = tuple(draw(st.lists(st.integers(1, max_side), min_size=dims, max_size=dims)))
    shape = (n,) + spatial + (c,) if channels_last else (n, c) + spatial
    return dims, channels_last, shape


def channel_axes(dims: int, channels_last: bool) -> tuple:
    return tuple(range(1, dims + 1)) if channels_last else tuple(range(2, dims + 2))


def constant_along(a: np.ndarray, axes: tuple) -> bool:
    """True iff ``a`` takes one value along ``axes`` at every index of the other axes."""
    first = a[tuple(slice(0, 1) if i in axes else slice(None) for i in range(a.ndim))]
    return bool(np.all(a == first))


def test_every_dims_is_a_bernoulli_mask_variant_with_its_contract():
    for dims in DIMS:
        cls = variant_class(name(dims))
        assert issubclass(cls, BernoulliMaskVariant)
        c = get_contract(name(dims))
        assert c.ranks == (dims + 2,) and c.structure == "shared" and c.p_one_allowed
        assert c.validate_params() == {"p": 0.3, "channels_last": False}
        assert len(c.default_shape) == dims + 2


@given(case=cases(), dtype=dtypes, p=st.floats(0.0, 1.0), seed=seeds)
def test_one_mask_value_per_sample_and_channel(case, dtype, p, seed):
    dims, channels_last, shape = case
    x = (0.5 + np.random.default_rng(seed).random(shape)).astype(dtype)
    layer = variant_class(name(dims))(p=p, channels_last=channels_last, seed=seed)
    y = layer.forward(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    kept = y != 0
    axes = channel_axes(dims, channels_last)
    assert constant_along(kept, axes)
    scale = dtype(1.0 / (1.0 - p)) if p < 1 else dtype(0)
    np.testing.assert_array_equal(y[kept], x[kept] * scale)
    if p == 1.0:
        assert not kept.any()
    c = get_contract(name(dims))
    assert c.shared_axes(layer.params, shape) == axes
    d = c.decode_output((x,), y, layer.params)
    assert d.valid.all()
    if p > 0:
        np.testing.assert_array_equal(d.dropped, np.broadcast_to(~layer._saved[1], shape))


def test_structure_check_catches_a_mask_on_the_wrong_axis():
    """An element-wise mask, or one shared along the channel instead of the spatial axes,
    fails ``constant_along`` (the 69801 class of bug)."""
    x = np.ones((4, 6, 5, 5))
    elementwise = variant_class("dropout")(p=0.5, seed=0).forward(x) != 0
    assert not constant_along(elementwise, channel_axes(2, False))
    transposed = variant_class(name(2))(p=0.5, channels_last=True, seed=0).forward(x) != 0
    assert not constant_along(transposed, channel_axes(2, False))


@given(case=cases(), p=st.floats(0.0, 1.0), seed=seeds)
def test_backward_uses_the_forward_mask(case, p, seed):
    dims, channels_last, shape = case
    rng = np.random.default_rng(seed)
    x = 0.5 + rng.random(shape)
    layer = variant_class(name(dims))(p=p, channels_last=channels_last, seed=seed)
    y = layer.forward(x)
    g = rng.normal(size=shape)
    dx = layer.backward(g)
    np.testing.assert_allclose(dx, g * y / x, rtol=1e-12, atol=0)
    assert np.all(np.isfinite(dx))
    expected = get_contract(name(dims)).input_gradients((x,), y, g, layer.params)[0]
    np.testing.assert_allclose(dx, expected, rtol=1e-12, atol=0)


@given(case=cases(), dtype=dtypes, seed=seeds)
def test_p_zero_and_eval_are_exact_identity(case, dtype, seed):
    dims, channels_last, shape = case
    cls = variant_class(name(dims))
    x = np.random.default_rng(seed).normal(size=shape).astype(dtype)
    assert np.array_equal(cls(p=0.0, channels_last=channels_last, seed=seed).forward(x), x)
    assert np.array_equal(cls(p=0.8, channels_last=channels_last, seed=seed).eval().forward(x), x)


@pytest.mark.parametrize("dims", DIMS)
def test_masks_are_independent_across_channels_samples_and_calls(dims):
    cls = variant_class(name(dims))
    x = np.ones((8, 16) + (2,) * dims)
    layer = cls(p=0.5, seed=0)
    first, second = layer.forward(x) != 0, layer.forward(x) != 0
    per_unit = first.reshape(8, 16, -1)[..., 0]
    assert 0 < per_unit.sum() < per_unit.size
    assert not np.all(per_unit == per_unit[:, :1]) and not np.all(per_unit == per_unit[:1])
    assert not np.array_equal(first, second)


@pytest.mark.parametrize("dims", DIMS)
@pytest.mark.parametrize("channels_last", [False, True])
def test_empty_batch_and_seed_reproducibility(dims, channels_last):
    cls = variant_class(name(dims))
    shape = (0, 3) + (2,) * dims
    assert cls(p=0.5, channels_last=channels_last, seed=0).forward(np.ones(shape, np.float16)).shape == shape
    x = np.ones((4, 3) + (2,) * dims)
    a = cls(p=0.5, channels_last=channels_last, seed=9).forward(x)
    assert np.array_equal(a, cls(p=0.5, channels_last=channels_last, seed=9).forward(x))


@pytest.mark.parametrize("dims,layout,last", [(1, r"\(N, C, L\)", r"\(N, L, C\)"),
                                              (2, r"\(N, C, H, W\)", r"\(N, H, W, C\)"),
                                              (3, r"\(N, C, D, H, W\)", r"\(N, D, H, W, C\)")])
def test_unbatched_input_is_rejected_with_the_expected_layout(dims, layout, last):
    layer = variant_class(name(dims))(p=0.5)
    unbatched = np.ones((3,) + (4,) * dims)
    with pytest.raises(InvalidArgument, match=rf"{name(dims)} expects {layout} \(or {last} with "
                                              r"channels_last=True\); got rank .* batch axis"):
        layer.forward(unbatched)
    with pytest.raises(InvalidArgument, match=rf"expects {layout}"):
        layer.forward(np.ones((2, 3) + (4,) * (dims + 1)))
    with pytest.raises(InvalidArgument, match=rf"layout {layout}"):
        get_contract(name(dims)).check_shape(unbatched.shape)


def test_contract_moments_and_params():
    c = get_contract(name(2))
    x = np.array([[1.0, -2.0]])
    np.testing.assert_allclose(c.output_variance((x,), {"p": 0.2, "channels_last": False}), x * x * 0.25)
    np.testing.assert_array_equal(c.output_mean((x,), {"p": 0.2, "channels_last": False}), x)
    assert np.all(c.output_mean((x,), {"p": 1.0, "channels_last": False}) == 0)
    assert np.all(c.output_variance((x,), {"p": 1.0, "channels_last": False}) == 0)
    with pytest.raises(InvalidArgument, match="channels_last"):
        variant_class(name(2))(p=0.5, channels_last="yes")
    assert c.shared_axes({"p": 0.5, "channels_last": True}, (2, 4, 4, 3)) == (1, 2)
    assert c.shared_axes({"p": 0.5, "channels_last": False}, (2, 3, 4, 4)) == (2, 3)
