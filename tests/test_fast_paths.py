"""Speed-only rewrites of hot statistics must give the same bits as the plain formula they
replace (results are identical across harness versions unless a result is meant to change)."""
from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest

from dropverify.contracts import probe_magnitudes, signed_probe


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
