"""Speed-only rewrites of hot statistics must give the same bits as the plain formula they
replace (results are identical across harness versions unless a result is meant to change)."""
from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
from scipy import stats as sps

from dropverify.contracts import probe_magnitudes, signed_probe
from dropverify.stats import _hypergeom_kernel, _hypergeom_pmf


def _plain_signed_probe(shape, rng, dtype):
    sign = np.where(rng.random(shape) < 0.5, -1.0, 1.0)
    lo, hi = probe_magnitudes(dtype)
    return (sign * np.exp(rng.uniform(math.log(lo), math.log(hi), size=shape))).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, ml_dtypes.bfloat16], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(64, 32, 8, 8), (3,), (1, 1)])
def test_signed_probe_is_the_plain_formula_bit_for_bit(dtype, shape):
    fast = signed_probe(shape, np.random.default_rng(11), dtype)
    plain = _plain_signed_probe(shape, np.random.default_rng(11), dtype)
    assert fast.dtype == plain.dtype and fast.shape == plain.shape
    assert fast.tobytes() == plain.tobytes()


def test_hypergeom_pmf_is_scipys_bit_for_bit():
    assert _hypergeom_kernel() is not None  # this scipy has the kernel: the fast path is the one tested
    _hypergeom_pmf.cache_clear()
    for n in (1, 2, 5, 17, 100, 1000, 4097):
        for r in sorted({0, 1, 2, n // 3, n // 2, n - 1, n} & set(range(n + 1))):
            for c in sorted({0, 1, n // 4, n // 2, max(n - 2, 0), n} & set(range(n + 1))):
                fast = _hypergeom_pmf(n, r, c)
                plain = sps.hypergeom.pmf(np.arange(min(r, c) + 1), n, r, c)
                assert fast.tobytes() == plain.tobytes(), (n, r, c)
