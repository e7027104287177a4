"""Issue 22 items 4-5: marginal rates along every axis (batch included) and the flat index, and
dependence statistics conditioned on the marginal rates. Deterministic: fixed seeds."""
from __future__ import annotations

import numpy as np
import pytest

from dropverify.checks import CHECKS, FAIL, PASS, Settings, is_marginal
from dropverify.checks import _conditioned, _words, marginals
from dropverify.diagnosis import RootCause, marginals_first
from dropverify.mutants._marginals import FlatTailNeverDropped, PerSampleRateRamp
from dropverify.runner import verify
from dropverify.targets import numpy_spec, reference_spec

SETTINGS = Settings(seed=20261206)
DEPENDENCE = ("masks_independent_along_axis", "masks_independent_at_flat_offsets", "masks_fresh_across_calls",
              "masks_independent_across_seeds", "seed_streams_do_not_overlap", "draws_not_reused_shifted",
              "draws_not_shared_at_any_flat_lag")


def _spec(cls, shape=(64, 32, 8, 8)):
    return numpy_spec(f"test:{cls.__name__}", "dropout", lambda prm: cls(**prm), {"p": 0.3}, shape=shape)


@pytest.fixture(scope="module", params=[PerSampleRateRamp, FlatTailNeverDropped], ids=["ramp", "tail"])
def uneven(request):
    return request.param, verify([_spec(request.param)], SETTINGS).targets[0]


def test_uneven_rates_are_named_first_and_not_as_dependence(uneven):
    cls, target = uneven
    verdicts = {r.check: r.verdict for r in target.results}
    assert verdicts[marginals.NAME] == FAIL
    fails = [c for c in target.root_causes if c.kind == FAIL]
    assert fails[0].evidence[0] == marginals.NAME, [c.summary for c in fails]
    if cls is PerSampleRateRamp:
        assert fails[0].summary.startswith("sample 63 drops at 0.40, sample 0 at 0.20"), fails[0].summary
    else:
        assert fails[0].summary.startswith("positions 130176-131071 of the flattened mask never dropped")
    for cause in fails:
        assert not any(e.startswith(DEPENDENCE) for e in cause.evidence), (cause.summary, cause.evidence)
    dependence = {c: v for c, v in verdicts.items() if c.startswith(DEPENDENCE)}
    assert len(dependence) >= 8 and FAIL not in dependence.values(), dependence


def test_correct_reference_passes_the_marginal_check_on_a_large_batch():
    run = verify([reference_spec("dropout", {"p": 0.3}, shape=(64, 32, 8, 8))], SETTINGS, checks=[marginals.NAME])
    (r,) = run.targets[0].results
    assert r.verdict == PASS, r.message
    assert r.details["cells"] == 64 + 32 + 8 + 8 + 256 and r.details["axes"] == [0, 1, 2, 3]


def test_cells_cover_every_axis_and_the_flat_index():
    v = np.zeros((4, 3, 5), bool)
    v[3, 2, 4] = True  # the last flat element
    fake = {"view": v.shape, "axes": [0, 1, 2], "starts": {0: np.arange(4), 1: np.arange(3), 2: np.arange(5)},
            "flat": marginals._bounds(v.size, 6)}
    counts = marginals._cell_counts(fake, v)
    assert counts.tolist() == [0, 0, 0, 1] + [0, 0, 1] + [0, 0, 0, 0, 1] + [0, 0, 0, 0, 0, 1]


def test_chernoff_bound_is_valid_on_both_sides():
    rng = np.random.default_rng(3)
    m, pi = 400, 0.3
    x = rng.binomial(m, pi, size=200_000)
    for c in (90, 100, 140, 150):
        bound = np.exp(marginals.chernoff_two_sided_log_p(np.array([float(c)]), np.array([float(m)]), pi))[0]
        tail = np.mean(x >= c) if c > m * pi else np.mean(x <= c)
        assert tail <= bound / 2 + 1e-3, (c, tail, bound)


def test_never_dropped_run_is_found():
    elem = np.full(100, 7, np.int32)
    elem[60:75] = 0
    assert marginals._never_run(elem, elem == 0) == (60, 74)


def _sign_p(draw, steps=40, lanes=1, units=2000, seed=0):
    """p of the conditioned test on pairs (unit 2i, unit 2i+1) over ``steps`` steps."""
    rng = np.random.default_rng(seed)
    tables = _conditioned.SignTables(lanes)
    for _ in range(steps):
        x = draw(rng, units)
        tables.add_lists([(x[0::2], x[1::2])])
    return tables.p_value(0)


def test_conditioning_removes_uneven_rates_but_keeps_shared_draws():
    rate = np.where(np.arange(2000) < 1000, 0.1, 0.5)  # pair members share a rate: Simpson for a pooled test
    rate[0::2] = rate[1::2]
    ps = [_sign_p(lambda rng, n: rng.random(n) < rate, seed=s) for s in range(40)]
    assert min(ps) > 1e-3 and np.mean(np.array(ps) <= 0.05) <= 0.2, sorted(ps)[:5]

    def shared(rng, n):  # a quarter of the pairs share one draw; per-call rate shifts on top
        x = rng.random(n) < rate + 0.2 * rng.random()
        x[1:500:2] = x[0:500:2]
        return x
    assert _sign_p(shared) < 1e-9


def test_words():
    from dropverify.results import CheckResult
    r = CheckResult(check=marginals.NAME, target="t", variant="dropout", verdict=FAIL, text="x", label="l",
                    details={"worst_cell": {"axis": 1, "start": 5, "stop": 5, "rate": 0.1},
                             "highest_cell": {"start": 2, "stop": 3, "rate": 0.31},
                             "lowest_cell": {"start": 5, "stop": 5, "rate": 0.1}, "overall_rate": 0.3})
    assert _words.marginal_rates(r, "(N, C, H, W)").startswith("axis 1 (channels) index 2-3 drops at 0.31, "
                                                               "axis 1 (channels) index 5 at 0.10")


def test_marginal_flag_orders_causes():
    flagged = {c.name for c in CHECKS if c.marginal}
    assert {"drop_rate_matches_by_binomial", "drop_rate_per_position_by_binomial", marginals.NAME,
            "drop_rate_independent_of_input_by_stratum"} <= flagged
    assert is_marginal(marginals.NAME) and not is_marginal("masks_independent_along_axis1_by_fisher")
    dep = RootCause("masks dependent", ("masks_independent_along_axis1_by_fisher",))
    rate = RootCause("sample 3 drops at 0.5", (marginals.NAME,))
    assert marginals_first([dep, rate]) == [rate, dep]
