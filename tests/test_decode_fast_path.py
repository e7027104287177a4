"""`Contract.decode_dropped` (the mask statistics' hot path) must return exactly
`decode_output(...).dropped` for every contract and dtype, at the tolerance boundary too."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from dropverify.contracts import value_tolerance
from dropverify.variants import all_contracts
from dropverify.variants import variant_class


def _outputs(contract, dtype, rng):
    """Outputs of the reference plus values at and around the dropped value's tolerance edge."""
    layer = variant_class(contract.name)(seed=0)
    inputs = contract.probe_inputs(contract.default_shape, rng, np.float64)
    y = np.asarray(layer.forward(*inputs), np.float64)
    _, atol = value_tolerance(dtype)
    edge = np.array([0.0, -0.0, atol, -atol, atol * (1 + 1e-3), atol * (1 - 1e-3), np.nan, np.inf, -np.inf])
    flat = y.reshape(-1).copy()
    flat[:edge.size] = edge[:flat.size]
    with np.errstate(over="ignore"):  # float16 overflows to inf: one more edge
        return inputs, flat.reshape(y.shape).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, ml_dtypes.bfloat16], ids=lambda d: np.dtype(d).name)
def test_decode_dropped_equals_the_full_decoders_dropped(dtype):
    rng = np.random.default_rng(3)
    checked = 0
    for contract in all_contracts():
        inputs, y = _outputs(contract, dtype, rng)
        params = contract.validate_params({})
        full = contract.decode_output(inputs, y, params).dropped
        fast = contract.decode_dropped(inputs, y, params)
        if full is None:
            assert fast is None
            continue
        assert fast.dtype == np.bool_ and np.array_equal(fast, full), contract.name
        checked += 1
    assert checked >= 10
