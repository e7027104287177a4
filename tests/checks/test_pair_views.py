"""The flat-offset pair test reads its pairs from strided views, not index arrays (which take
2 GB per side on a 2^25-element call): the views must give exactly the disjoint pairs, in order."""
from __future__ import annotations

import numpy as np
from hypothesis import given, strategies as st

from dropverify.checks.independence import _disjoint_pair_count, _disjoint_pairs, _flat_pairs


@given(st.integers(min_value=2, max_value=600).flatmap(lambda n: st.tuples(st.just(n), st.integers(1, n - 1))))
def test_flat_pair_views_equal_the_disjoint_index_pairs(size_and_offset):
    size, d = size_and_offset
    x = np.arange(size) * 7 % 13 + np.arange(size) / size  # distinct values
    a, b = _disjoint_pairs(size, d)
    u, v = _flat_pairs(x, d)
    assert _disjoint_pair_count(size, d) == len(a)
    assert np.array_equal(u, x[a]) and np.array_equal(v, x[b])
    assert len(np.intersect1d(a, b)) == 0  # disjoint: no unit in two pairs
