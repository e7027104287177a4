"""Exact DropBlock arithmetic: checked against full enumeration of seed configurations and
against hand-computed counts, independently of the module's own window arithmetic."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, strategies as st

from dropverify.errors import InvalidArgument
from dropverify.variants import _dropblock_theory as th


def block_matrix(bs, dims, region):
    """(n_seeds, n_positions) bool: seed s's block covers position q, built straight from the
    geometric definition (seeds in C order over the seed grid, positions in C order)."""
    ks = [min(bs, d) for d in dims]
    if region == "valid":
        starts = [np.arange(d - k + 1) for d, k in zip(dims, ks)]      # top-left corner t
    else:
        starts = [np.arange(d) - k // 2 for d, k in zip(dims, ks)]     # centre c, block from c - k//2
    covers = [(s[:, None] <= np.arange(d)) & (np.arange(d) < s[:, None] + k)
              for s, d, k in zip(starts, dims, ks)]
    out = covers[0]
    for c in covers[1:]:
        out = (out[:, None, :, None] & c[None, :, None, :]).reshape(out.shape[0] * c.shape[0], -1)
    return out


def exact_map_by_enumeration(gamma, bs, dims, region):
    """P(position dropped), summing over all 2^n_seeds seed configurations."""
    blocks = block_matrix(bs, dims, region).astype(np.int64)
    n = blocks.shape[0]
    assert n <= 16, "enumeration is meant for tiny maps"
    configs = (np.arange(2 ** n)[:, None] >> np.arange(n)) & 1          # (2^n, n) bits
    on = configs.sum(axis=1)
    weight = gamma ** on * (1 - gamma) ** (n - on)
    dropped = (configs @ blocks) > 0
    assert np.isclose(weight.sum(), 1.0)
    return (weight @ dropped).reshape(dims)


CASES = [  # (bs, dims, region): every one has at most 12 seeds
    (2, (4, 5), "valid"), (3, (5, 6), "valid"), (1, (3, 4), "valid"), (5, (3, 4), "valid"),
    (2, (3, 4), "anywhere"), (3, (3, 4), "anywhere"), (4, (2, 5), "anywhere"), (1, (2, 5), "anywhere"),
    (2, (3, 3, 4), "valid"), (2, (2, 2, 3), "anywhere"), (3, (2, 2, 3), "anywhere"),
]


@pytest.mark.parametrize("bs,dims,region", CASES)
@pytest.mark.parametrize("gamma", [0.0, 0.07, 0.4, 1.0])
def test_drop_map_equals_full_enumeration(bs, dims, region, gamma):
    expected = exact_map_by_enumeration(gamma, bs, dims, region)
    np.testing.assert_allclose(th.drop_probability_map(gamma, bs, dims, region), expected, rtol=1e-12, atol=1e-15)
    assert th.mean_drop_rate(gamma, bs, dims, region) == pytest.approx(expected.mean(), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("bs,dims,region", CASES)
def test_coverage_counts_equal_block_matrix_column_sums(bs, dims, region):
    blocks = block_matrix(bs, dims, region)
    np.testing.assert_array_equal(th.coverage_counts(bs, dims, region), blocks.sum(axis=0).reshape(dims))
    assert blocks.shape[0] == np.prod(th.seed_grid_shape(bs, dims, region))


def test_hand_computed_coverage_4x5():
    # valid, bs=2: top-left corners t in [0,2]x[0,3]; per axis counts rows [1,2,2,1], cols [1,2,2,2,1]
    np.testing.assert_array_equal(th.coverage_counts(2, (4, 5), "valid"),
                                  [[1, 2, 2, 2, 1], [2, 4, 4, 4, 2], [2, 4, 4, 4, 2], [1, 2, 2, 2, 1]])
    # anywhere, bs=2: seed c covers {c-1, c}, so i is covered by c = i and c = i+1 (if on the map)
    np.testing.assert_array_equal(th.coverage_counts(2, (4, 5), "anywhere"),
                                  [[4, 4, 4, 4, 2], [4, 4, 4, 4, 2], [4, 4, 4, 4, 2], [2, 2, 2, 2, 1]])
    # anywhere, bs=3: centred blocks, rows [2,3,3,2], cols [2,3,3,3,2]
    np.testing.assert_array_equal(th.coverage_counts(3, (4, 5), "anywhere"),
                                  np.outer([2, 3, 3, 2], [2, 3, 3, 3, 2]))
    # block larger than the map along H only: k = (3, 4) on 3x6, one seed row
    np.testing.assert_array_equal(th.coverage_counts(4, (3, 6), "valid"), np.tile([1, 2, 3, 3, 2, 1], (3, 1)))


def test_block_extent_odd_and_even():
    assert th.block_extent(3, "anywhere") == (-1, 1)
    assert th.block_extent(4, "anywhere") == (-2, 1)
    assert th.block_extent(1, "anywhere") == (0, 0)
    assert th.block_extent(4, "valid") == (0, 3)
    with pytest.raises(InvalidArgument, match="seed_region"):
        th.block_extent(3, "center")


def test_paper_gamma_uses_every_axis():
    # non-square: 0.1 * 12*10 / (3^2 * 10*8); the height-only form 0.1 * 12^2 / (9 * 10^2) differs
    assert th.paper_gamma(0.1, 3, (12, 10)) == pytest.approx(0.1 * 120 / (9 * 10 * 8), rel=1e-15)
    assert th.paper_gamma(0.1, 3, (12, 10)) != pytest.approx(0.1 * 144 / (9 * 100))
    assert th.paper_gamma(0.1, 3, (10, 12)) == th.paper_gamma(0.1, 3, (12, 10))
    assert th.paper_gamma(0.2, 3, (6, 8, 10)) == pytest.approx(0.2 * 480 / (27 * 4 * 6 * 8), rel=1e-15)
    # clipped per axis: k = (3, 5) on a 3x8 map
    assert th.paper_gamma(0.3, 5, (3, 8)) == pytest.approx(0.3 * 24 / (15 * 1 * 4), rel=1e-15)


def test_effective_gamma_edges():
    assert th.effective_gamma(1.0, 3, (12, 10), "valid", "paper") == 1.0
    assert th.effective_gamma(1.0, 3, (12, 10), "anywhere", "exact") == 1.0
    assert th.effective_gamma(0.0, 3, (12, 10), "valid", "exact") == 0.0
    assert th.effective_gamma(0.9, 5, (5, 5), "valid", "paper") == 0.9          # k = dim: one seed per map
    with pytest.raises(InvalidArgument, match="gamma_rule"):
        th.effective_gamma(0.1, 3, (4, 4), "valid", "nope")
    with pytest.raises(InvalidArgument, match="dims"):
        th.coverage_counts(3, (4, 0), "valid")


dims_st = st.lists(st.integers(1, 9), min_size=2, max_size=3).map(tuple)


@given(p=st.floats(1e-6, 1 - 1e-6), bs=st.integers(1, 7), dims=dims_st,
       region=st.sampled_from(th.SEED_REGIONS))
def test_solve_gamma_hits_p(p, bs, dims, region):
    g = th.solve_gamma(p, bs, dims, region)
    assert 0.0 < g <= 1.0
    assert abs(th.mean_drop_rate(g, bs, dims, region) - p) < 1e-10


@given(p=st.floats(0.01, 0.5), bs=st.integers(2, 7), dims=dims_st)
def test_paper_gamma_undershoots_p_with_valid_seeds(p, bs, dims):
    g = th.paper_gamma(p, bs, dims)
    assert g <= p * (1 + 1e-12)   # prod(d) <= prod(k (d - k + 1)) since (k - 1)(d - k) >= 0
    k = th.coverage_counts(bs, dims, "valid")
    if g < 1 and k.max() > 1:
        # first order: mean(K * gamma) == p exactly; overlaps make the true rate strictly lower
        assert np.mean(k) * g == pytest.approx(p, rel=1e-12)
        assert th.mean_drop_rate(g, bs, dims, "valid") < p


@given(bs=st.integers(1, 6), dims=dims_st, region=st.sampled_from(th.SEED_REGIONS))
def test_every_position_is_covered_and_corners_least(bs, dims, region):
    k = th.coverage_counts(bs, dims, region)
    assert k.min() >= 1
    assert k.max() <= np.prod(th.clipped_sizes(bs, dims))
    corner = tuple(0 for _ in dims)
    assert k[corner] == k.min() or region == "anywhere"   # anywhere: the far corner is the least covered
    far = tuple(d - 1 for d in dims)
    assert k[far] == k.min()


def test_solve_gamma_rejects_bad_p_and_is_monotone():
    with pytest.raises(InvalidArgument, match=r"p="):
        th.solve_gamma(1.5, 3, (5, 5))
    gs = [th.solve_gamma(p, 3, (7, 9), "valid") for p in (0.05, 0.1, 0.2, 0.4, 0.8)]
    assert all(a < b for a, b in itertools.pairwise(gs))
