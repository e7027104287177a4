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


@given(st.lists(st.integers(1, 9), min_size=1, max_size=4), st.data())
def test_axis_pair_slices_equal_takes_of_the_disjoint_index_pairs(shape, data):
    """The along-axis test's per-lane step reads its pairs from block slices: the same arrays,
    element for element and in the same C order, as a take of the disjoint pairs."""
    from dropverify.checks.independence import _axis_pairs
    x = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape) * 1.5
    if data.draw(st.booleans()) and x.ndim > 1:
        x = np.moveaxis(x, 0, -1)  # a non-contiguous view, as unit_view gives
    axis = data.draw(st.integers(0, x.ndim - 1))
    if x.shape[axis] < 2:
        return
    d = data.draw(st.integers(1, x.shape[axis] - 1))
    a, b = _disjoint_pairs(x.shape[axis], d)
    u, v = _axis_pairs(x, axis, d)
    for got, want in ((u, x.take(a, axis=axis)), (v, x.take(b, axis=axis))):
        assert got.shape == want.shape and got.tobytes() == np.ascontiguousarray(want).tobytes()
