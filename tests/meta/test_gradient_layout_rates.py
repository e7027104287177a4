"""Measured rates of the per-layout gradient checks (exact: no alpha), deterministic seeds.

* No false alarm: a correct reference PASSes every layout row on every seed.
* No false pass: the layout mutants FAIL their layout rows on every seed (and PASS
  [contiguous]: what the contiguous probe alone saw), and an adversary off at ONE element by
  twice the tolerance on non-contiguous layouts FAILs those rows on every seed; off by half
  the tolerance it PASSes (the documented blind spot below the tolerance).
200 seeds each, on a small probe (the dtypes, variants and frameworks of the full measurement:
``python -m benchmarks.issue22_gradlayout``, reports/issue22/gradlayout.md).
"""
from __future__ import annotations

import dataclasses

import pytest

from dropverify.checks import Settings
from dropverify.checks.gradients import FINITE_DIFF, FORWARD_MASK, _grad_tol
from dropverify.mutants import all_mutants, mutant_spec, reference_spec_for
from dropverify.mutants._layouts import OneElementOffOffContiguous
from dropverify.runner import verify
from dropverify.targets import numpy_spec

pytestmark = pytest.mark.slow  # 200-seed measurements: `make test-slow`

SMALL = (8, 6, 4, 5)
GRAD = [FORWARD_MASK, FINITE_DIFF]


def _rows(spec, seed: int) -> dict:
    return {r.check: r.verdict for r in verify([spec], Settings(seed=330_000 + seed), checks=GRAD).all_results()}


@pytest.mark.parametrize("name,seeds", [("dropout_backward_mask_memory_order", 200),
                                        ("torch_backward_mask_storage_order", 200)])
def test_layout_mutant_killed_and_reference_clean_on_every_seed(name: str, seeds: int):
    m = next(m for m in all_mutants() if m.name == name)
    spec, ref = (dataclasses.replace(s, shape=SMALL) for s in (mutant_spec(m), reference_spec_for(m)))
    for seed in range(seeds):
        got = _rows(spec, seed)
        assert all(got[k] == "FAIL" for k in m.kills), (seed, got)
        assert all(got[f"{c}[contiguous]"] == "PASS" for c in GRAD), (seed, got)
        clean = _rows(ref, seed)
        assert set(clean.values()) == {"PASS"}, (seed, clean)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_one_element_beyond_the_tolerance_fails_and_within_it_passes(dtype: str):
    tol = _grad_tol(dtype) * 10
    for factor, want in ((2.0, "FAIL"), (0.5, "PASS")):
        spec = numpy_spec("adversary", "dropout", lambda prm, d=factor * tol: OneElementOffOffContiguous(prm["p"], d),
                          {"p": 0.5}, shape=SMALL, dtype=dtype)
        for seed in range(200):
            got = _rows(spec, seed)
            assert got[f"{FORWARD_MASK}[contiguous]"] == "PASS", (seed, got)
            assert got[f"{FORWARD_MASK}[transposed]"] == want and got[f"{FORWARD_MASK}[strided]"] == want, (seed, got)
