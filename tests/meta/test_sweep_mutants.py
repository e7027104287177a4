"""Every corner-case mutant (one per sweep axis, dropverify/mutants/_sweep.py) passes the
single-configuration run's named check at its declared configuration, is found by a sweep
with the default axes and error control, and is shrunk to a configuration that still FAILs
(confirmed with a fresh seed) in the corner it hides in.

Budget (this suite's own): small probe shapes, 600 calls per check, no hypothesis search
(the covering design finds every one), two shrinking rounds; the large tensor only for the
mutant that needs it."""
from __future__ import annotations

import pytest

from dropverify.checks import Settings
from dropverify.mutants._sweep import SWEEP_MUTANTS
from dropverify.sweep import run_sweep

pytestmark = pytest.mark.slow  # ~150 s of sweeps (a measurement of the sweep's power): `make test-slow`, run by .ci/run

# where each mutant hides: a predicate on the minimal configuration
CORNER = {
    "sweep_float16_no_rescale": lambda c: c.dtype == "float16",
    "sweep_noncontiguous_rate": lambda c: c.layout != "contiguous",
    "sweep_quantised_threshold": lambda c: c.p in (0.001, 0.999, 0.02),
    "sweep_stream_wraps": lambda c: c.role == "large",
    "sweep_odd_batch_tail": lambda c: c.shape[0] % 2 == 1 and c.shape[0] > 1,
    "sweep_float16_backward_fresh_mask": lambda c: c.dtype == "float16",
    # a map smaller than the block clips the block to the map: an even effective size (2x2 map,
    # block 3) and a gamma formula off its square-map case; the shrinker rightly prefers it
    "sweep_even_block_size": lambda c: dict(c.params)["block_size"] % 2 == 0 or c.shape[-1] < dict(c.params)["block_size"],
    "sweep_nonsquare_gamma": lambda c: c.shape[-1] != c.shape[-2] or c.shape[-1] < dict(c.params)["block_size"],
    "sweep_signed_abs": lambda c: True,
}


@pytest.mark.parametrize("mutant", SWEEP_MUTANTS, ids=lambda m: m.name)
def test_default_sweep_finds_and_shrinks_each_corner_case(mutant):
    result = run_sweep(mutant.target_name, None, Settings(seed=20261127), strength=1, search=0,
                       large=mutant.name == "sweep_stream_wraps", max_calls=600, shrink_rounds=2)
    assert result.verdict == "FAIL", [(r["config"].label(), r["verdict"]) for r in result.rows]
    confirmed = [m for m in result.minimal if m["confirmed"]]
    assert confirmed, result.minimal
    cfg = confirmed[0]["config"]
    assert CORNER[mutant.name](cfg), cfg.label()
    failing = {r["check"].split("[")[0] for r in confirmed[0]["row"]["results"] if r["verdict"] == "FAIL"}
    assert any(k.split("[")[0] in failing for k in mutant.kills), (cfg.label(), failing)


def test_the_covering_rows_of_a_correct_reference_raise_no_false_alarm():
    """The same budget on the correct references of the mutants' variants: no FAIL anywhere."""
    for target, shape in (("numpy:dropout", (16, 8, 4, 4)), ("numpy:dropblock_2d", (16, 4, 9, 9))):
        result = run_sweep(target, None, Settings(seed=20261127), strength=1, search=0,
                           large=False, max_calls=600, shrink_rounds=0, base_shape=shape)
        assert result.verdict != "FAIL", [(r["config"].label(), r["causes"]) for r in result.rows
                                          if r["verdict"] == "FAIL"]
