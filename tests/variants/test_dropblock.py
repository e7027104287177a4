"""Properties of the DropBlock 2-D / 3-D references and their contracts."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st
from scipy import stats

from dropverify.variants import get_contract
from dropverify.errors import InvalidArgument
from dropverify.variants import _dropblock_theory as th
from dropverify.variants import variant_class

RANKS = {2: "dropblock_2d", 3: "dropblock_3d"}
dtypes = st.sampled_from([np.float16, np.float32, np.float64])
seeds = st.integers(0, 2**32 - 1)
regions = st.sampled_from(th.SEED_REGIONS)
rules = st.sampled_from(th.GAMMA_RULES)


@st.composite
def configs(draw, max_side=7):
    """(name, shape, params): any rank, H != W allowed, block sizes up to beyond the map."""
    rank = draw(st.sampled_from(sorted(RANKS)))
    dims = tuple(draw(st.lists(st.integers(1, max_side), min_size=rank, max_size=rank)))
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) + dims
    params = dict(p=draw(st.floats(0.0, 1.0)), block_size=draw(st.integers(1, max_side + 1)),
                  share_channels=draw(st.booleans()), seed_region=draw(regions), gamma_rule=draw(rules))
    return RANKS[rank], shape, params


def block_matrix(bs, dims, region):
    """(n_seeds, n_positions) bool straight from the geometry (independent of the module's windows)."""
    ks = [min(bs, d) for d in dims]
    starts = ([np.arange(d - k + 1) for d, k in zip(dims, ks)] if region == "valid"
              else [np.arange(d) - k // 2 for d, k in zip(dims, ks)])
    covers = [(s[:, None] <= np.arange(d)) & (np.arange(d) < s[:, None] + k) for s, d, k in zip(starts, dims, ks)]
    out = covers[0]
    for c in covers[1:]:
        out = (out[:, None, :, None] & c[None, :, None, :]).reshape(out.shape[0] * c.shape[0], -1)
    return out


def probe(shape, seed, dtype=np.float64):
    return (0.5 + np.random.default_rng(seed).random(shape)).astype(dtype)


@given(cfg=configs(), seed=seeds)
def test_mask_is_the_block_expansion_of_bernoulli_seeds_on_the_seed_grid(cfg, seed):
    name, shape, params = cfg
    layer = variant_class(name)(seed=seed, **params)
    y = layer.forward(probe(shape, seed))
    if params["p"] == 0.0:
        return
    # replay the layer's own draw with an independent expansion
    dims = shape[2:]
    lead = (shape[0], 1 if params["share_channels"] else shape[1])
    grid = th.seed_grid_shape(params["block_size"], dims, params["seed_region"])
    gamma = th.effective_gamma(params["p"], params["block_size"], dims, params["seed_region"], params["gamma_rule"])
    seeds_on = np.random.default_rng(seed).random(lead + grid) < gamma
    blocks = block_matrix(params["block_size"], dims, params["seed_region"]).astype(np.int64)
    expected = (seeds_on.reshape(-1, blocks.shape[0]) @ blocks > 0).reshape(lead + dims)
    np.testing.assert_array_equal(y == 0, np.broadcast_to(expected, shape))


@given(cfg=configs(), seed=seeds)
def test_dropped_set_is_a_union_of_whole_admissible_blocks(cfg, seed):
    name, shape, params = cfg
    y = variant_class(name)(seed=seed, **params).forward(probe(shape, seed))
    dims = shape[2:]
    blocks = block_matrix(params["block_size"], dims, params["seed_region"]).astype(np.int64)
    dropped = (y == 0).reshape(-1, blocks.shape[1]).astype(np.int64)
    whole = dropped @ blocks.T == blocks.sum(axis=1)              # admissible blocks fully dropped
    union = (whole.astype(np.int64) @ blocks) > 0
    np.testing.assert_array_equal(union, dropped.astype(bool))


@given(cfg=configs(), dtype=dtypes, seed=seeds)
def test_values_are_zero_or_x_times_numel_over_kept(cfg, dtype, seed):
    name, shape, params = cfg
    x = probe(shape, seed, dtype)
    y = variant_class(name)(seed=seed, **params).forward(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    kept = y != 0
    if params["p"] == 0.0:
        assert y is x or np.array_equal(y, x)
        return
    n_kept = int(kept.sum())
    if n_kept:
        np.testing.assert_array_equal(y[kept], x[kept] * dtype(x.size / n_kept))
        # the per-call aggregate mean of y / x is 1
        assert np.mean(y.astype(np.float64) / x.astype(np.float64)) == pytest.approx(1.0, rel=2e-3)
    if params["share_channels"]:
        assert (kept == kept[:, :1]).all()
    if params["p"] == 1.0:
        assert n_kept == 0


@given(cfg=configs(), seed=seeds)
def test_backward_uses_forward_mask_and_scale(cfg, seed):
    name, shape, params = cfg
    layer = variant_class(name)(seed=seed, **params)
    x = probe(shape, seed)
    y = layer.forward(x)
    g = np.random.default_rng(seed + 1).normal(size=shape)
    dx = layer.backward(g)
    np.testing.assert_allclose(dx, g * y / x, rtol=1e-12, atol=0)
    (expected,) = get_contract(name).input_gradients((x,), y, g, layer.params)
    np.testing.assert_allclose(dx, expected, rtol=1e-12, atol=0)
    assert np.isfinite(dx).all()


@given(cfg=configs(), seed=seeds)
def test_contract_decodes_the_layer_output(cfg, seed):
    name, shape, params = cfg
    c = get_contract(name)
    layer = variant_class(name)(seed=seed, **params)
    x = probe(shape, seed)
    y = layer.forward(x)
    d = c.decode_output((x,), y, layer.params)
    assert d.valid.all()
    np.testing.assert_array_equal(d.dropped, y == 0)
    assert c.shared_axes(layer.params, shape) == ((1,) if params["share_channels"] else ())
    m = c.drop_probability(layer.params, shape)
    assert m.shape == (1, 1) + shape[2:]
    np.testing.assert_allclose(m[0, 0], th.drop_probability_map(layer.gamma(shape[2:]), params["block_size"],
                                                                shape[2:], params["seed_region"]), rtol=1e-15)
    assert c.extra["gamma"](layer.params, shape) == layer.gamma(shape[2:])
    assert c.extra["nominal_rate"](layer.params) == params["p"]
    if params["gamma_rule"] == "exact":
        assert abs(c.extra["mean_drop_rate"](layer.params, shape) - params["p"]) < 1e-10


@pytest.mark.parametrize("name", sorted(RANKS.values()))
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_p_zero_and_eval_are_bit_identity(name, dtype):
    shape = get_contract(name).default_shape
    x = np.random.default_rng(0).normal(size=shape).astype(dtype)
    for layer in (variant_class(name)(p=0.0, seed=1), variant_class(name)(p=0.7, seed=1).eval()):
        y = layer.forward(x)
        assert y.dtype == x.dtype and np.array_equal(y, x)
        assert np.array_equal(layer.backward(np.ones_like(x)), np.ones_like(x))
        assert np.array_equal(get_contract(name).eval_output((x,), layer.params), x)


@pytest.mark.parametrize("name", sorted(RANKS.values()))
@pytest.mark.parametrize("region,rule", [(r, g) for r in th.SEED_REGIONS for g in th.GAMMA_RULES])
def test_p_one_gives_zeros_and_finite_gradients(name, region, rule):
    shape = get_contract(name).default_shape
    layer = variant_class(name)(p=1.0, block_size=3, seed_region=region, gamma_rule=rule, seed=0)
    y = layer.forward(np.ones(shape, np.float32))
    assert y.dtype == np.float32 and not y.any()
    dx = layer.backward(np.ones(shape, np.float32))
    assert np.isfinite(dx).all() and not dx.any()
    assert np.all(get_contract(name).drop_probability(layer.params, shape) == 1.0)
    kept = get_contract(name).kept_value((np.ones(shape),), layer.params, np.ones(shape, bool))
    assert np.isfinite(kept).all()


@pytest.mark.parametrize("name,layout,bad", [("dropblock_2d", r"\(N, C, H, W\)", (3, 8, 8)),
                                             ("dropblock_2d", r"\(N, C, H, W\)", (2, 3, 4, 5, 6)),
                                             ("dropblock_3d", r"\(N, C, D, H, W\)", (2, 3, 8, 8))])
def test_wrong_rank_names_the_layout(name, layout, bad):
    with pytest.raises(InvalidArgument, match=layout):
        variant_class(name)(seed=0).forward(np.ones(bad))


@pytest.mark.parametrize("kw,pattern", [({"p": 1.5}, r"p=1.5, but should be a number in \[0, 1\]"),
                                        ({"block_size": 0}, r"block_size=0"),
                                        ({"block_size": 2.5}, r"block_size=2.5"),
                                        ({"seed_region": "center"}, r"seed_region='center'.*'valid', 'anywhere'"),
                                        ({"gamma_rule": "tf"}, r"gamma_rule='tf'"),
                                        ({"share_channels": 1}, r"share_channels=1")])
def test_invalid_params_are_rejected(kw, pattern):
    with pytest.raises(InvalidArgument, match=pattern):
        variant_class("dropblock_2d")(**kw)


@pytest.mark.parametrize("name", sorted(RANKS.values()))
def test_empty_batch_fresh_masks_and_reproducible(name):
    shape = get_contract(name).default_shape
    layer = variant_class(name)(p=0.3, seed=5)
    assert layer.forward(np.ones((0,) + shape[1:], np.float32)).shape == (0,) + shape[1:]
    x = np.ones(shape)
    a, b = layer.forward(x), layer.forward(x)
    assert not np.array_equal(a == 0, b == 0)
    assert np.array_equal(variant_class(name)(p=0.3, seed=5).forward(x), variant_class(name)(p=0.3, seed=5).forward(x))


def test_gamma_is_recoverable_from_the_least_covered_position():
    c = get_contract("dropblock_2d")
    for region in th.SEED_REGIONS:
        params = c.validate_params(p=0.2, block_size=4, seed_region=region)
        shape = c.default_shape
        k, q = c.extra["coverage"](params, shape), c.drop_probability(params, shape)
        i = np.unravel_index(np.argmin(k), k.shape)
        assert 1 - (1 - q[i]) ** (1 / k[i]) == pytest.approx(c.extra["gamma"](params, shape), rel=1e-12)
        assert c.extra["block_extent"](params, shape) == (((0, 3),) * 2 if region == "valid" else ((-2, 1),) * 2)


@pytest.mark.parametrize("region,bs", [("valid", 3), ("anywhere", 2)])
def test_empirical_map_matches_theory(region, bs):
    """Per-position drop counts over n independent maps against Binomial(n, q_pos).

    Each position's count is exactly Binomial(n, q) (maps are i.i.d.); the two-sided
    acceptance region is the central 1 - alpha/M quantile range for each of the M positions
    (Bonferroni), so a correct layer fails with probability <= alpha = 1e-9 whatever the
    dependence between positions. The seed is fixed, so the test is deterministic.
    """
    alpha, n, dims = 1e-9, 4000, (6, 7)
    params = dict(p=0.25, block_size=bs, seed_region=region)
    layer = variant_class("dropblock_2d")(seed=20261126, **params)
    counts = (layer.forward(np.ones((n, 1) + dims)) == 0).sum(axis=(0, 1))
    q = get_contract("dropblock_2d").drop_probability(layer.params, (n, 1) + dims)[0, 0]
    m = q.size
    lo = stats.binom.ppf(alpha / (2 * m), n, q)
    hi = stats.binom.isf(alpha / (2 * m), n, q)
    assert ((counts >= lo) & (counts <= hi)).all(), (counts / n, q)
