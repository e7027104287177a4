"""The stochastic-depth network reference: per-block survival, skipped blocks are identity."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

from dropverify.variants import get_contract
from dropverify.errors import InvalidArgument
from dropverify.variants import variant_class

Net = variant_class("stochastic_depth_network")


@given(L=st.integers(1, 16), p=st.floats(0.0, 1.0), seed=st.integers(0, 2**31))
def test_skipped_blocks_are_identity_and_kept_blocks_add_their_scaled_branch(L, p, seed):
    x = np.random.default_rng(seed).random((8, L))
    y = Net(p=p, num_blocks=L, seed=seed).forward(x)
    s = 1 - np.arange(1, L + 1) / L * p
    skipped = y == x
    kept_value = x + np.where(s > 0, 1 / np.where(s > 0, s, 1), 0)
    assert np.all(skipped | np.isclose(y, kept_value, rtol=0, atol=1e-12))


def test_map_is_the_paper_schedule_and_depth_its_sum():
    c = get_contract("stochastic_depth_network")
    q = c.drop_probability({"p": 0.5, "num_blocks": 4}, (10, 4))
    np.testing.assert_allclose(q.ravel(), [0.125, 0.25, 0.375, 0.5])
    assert c.extra["network_expected_depth"]({"p": 0.5, "num_blocks": 4}) == pytest.approx(4 - 0.5 * 5 / 2)


def test_eval_runs_every_block_and_wrong_width_is_rejected():
    net = Net(p=0.3, num_blocks=3, seed=0)
    assert np.array_equal(net.eval().forward(np.zeros((2, 3))), np.ones((2, 3)))
    with pytest.raises(InvalidArgument, match=r"should be \(N, 3\)"):
        net.train().forward(np.zeros((2, 4)))
