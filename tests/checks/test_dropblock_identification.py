"""DropBlock identification by maximum likelihood (issue 8, item 7): the fit recovers gamma,
the seed scheme and the gamma rule from simulated masks, and the three measured
misdiagnoses come out right on our own numpy layers."""
from __future__ import annotations

import re
from typing import Any, Dict, Tuple

import numpy as np
import pytest
from hypothesis import given, strategies as st

from dropverify.checks import Settings
from dropverify.checks import _dropblock_fit as F
from dropverify.checks import dropblock as D
from dropverify.runner import verify
from dropverify.targets.numpy_ref import numpy_spec
from dropverify.variants import _dropblock_theory as th
from dropverify.variants.dropblock import DropBlock2d, DropBlock3d

SHAPE = (16, 4, 12, 10)
SHARED_SHAPE = (64, 2, 12, 10)   # shared masks: one unit per batch item, so a larger batch


# ------------------------------------------------------------------------------ simulation

def simulate(region: str, rule: str, p: float, bs: int, shape: Tuple[int, ...], calls: int, seed: int,
             share: bool = False, cls: type = DropBlock2d) -> Tuple[np.ndarray, int, np.ndarray, float, Any]:
    """Counts, units, unit maps (units, P), true gamma and channel sharing of the reference's masks,
    with units chosen as the fit should: channel 0 when channels share one mask."""
    layer = cls(p=p, block_size=bs, seed_region=region, gamma_rule=rule, share_channels=share, seed=seed)
    dims = shape[2:]
    size = int(np.prod(dims))
    masks = np.stack([~layer.draw_keep(shape) for _ in range(calls)])      # (calls, N, 1 or C, *dims)
    masks = np.broadcast_to(masks, (calls,) + tuple(shape))
    shared = F.channels_shared(masks.reshape((-1,) + tuple(shape[1:])))
    rows = (masks[:, :, 0] if shared else masks).reshape(-1, size).astype(np.float64)
    return rows.sum(0).reshape(dims), rows.shape[0], rows, layer.gamma(tuple(dims)), shared


@pytest.mark.parametrize("region", th.SEED_REGIONS)
@pytest.mark.parametrize("share", [False, True])
@pytest.mark.parametrize("rule", ["paper", "uncorrected"])
def test_fit_recovers_gamma_scheme_and_rule(region, share, rule):
    counts, n, rows, gamma, shared = simulate(region, rule, 0.1, 5, SHAPE, 60, seed=11, share=share)
    assert shared is share
    ident = F.identify(counts, n, 0.1, 5, SHAPE[2:], 0.999, unit_rows=rows, channels_shared=shared)
    assert ident.scheme == region and ident.log_likelihood_ratio > 10
    lo, hi = ident.fit.ci
    assert lo <= gamma <= hi and lo < ident.fit.gamma < hi
    assert ident.fit.dispersion > 2  # overlapping blocks: positions are positively dependent
    assert rule in ident.matched_rules
    assert ident.rule_gammas[rule] == pytest.approx(gamma)


def test_fit_recovers_3d_and_model_based_sandwich():
    counts, n, _, gamma, _ = simulate("anywhere", "paper", 0.2, 3, (8, 2, 6, 8, 10), 40, seed=5, cls=DropBlock3d)
    ident = F.identify(counts, n, 0.2, 3, (6, 8, 10), 0.999)   # no unit maps: the model's pair probabilities
    assert ident.scheme == "anywhere"
    assert ident.fit.ci[0] <= gamma <= ident.fit.ci[1] and "paper" in ident.matched_rules


def test_ci_covers_the_truth_at_its_level():
    """Sandwich LR interval at 80 %: coverage over 60 seeds within binomial noise (a naive interval
    ignoring the positions' dependence covers far less)."""
    cover = naive = 0
    for seed in range(60):
        counts, n, rows, gamma, _ = simulate("valid", "paper", 0.15, 4, (8, 2, 9, 8), 8, seed=100 + seed)
        cov = th.coverage_counts(4, (9, 8), "valid")
        fit = F.fit_scheme(counts, n, cov, 0.8, "valid", unit_rows=rows)
        bare = F.fit_scheme(counts, n, cov, 0.8, "valid")
        cover += fit.ci[0] <= gamma <= fit.ci[1]
        naive += bare.ci[0] <= gamma <= bare.ci[1]
    assert 38 <= cover <= 58      # Binomial(60, 0.8): 99.9 % range
    assert naive < cover


@given(g=st.floats(1e-4, 0.5), k=st.lists(st.integers(1, 30), min_size=1, max_size=20), n=st.integers(1, 500),
       seed=st.integers(0, 2**31 - 1))
def test_mle_maximises_the_likelihood(g, k, n, seed):
    k = np.asarray(k)
    q = -np.expm1(k * np.log1p(-g))
    counts = np.random.default_rng(seed).binomial(n, q)
    fit = F.fit_scheme(counts, n, k, 0.95)
    best = F.log_likelihood(fit.gamma, counts, n, k)
    assert fit.loglik == pytest.approx(best, rel=1e-9, abs=1e-9)
    for other in (fit.gamma * 0.99, min(1.0, fit.gamma * 1.01), fit.ci[0], fit.ci[1]):
        assert F.log_likelihood(other, counts, n, k) <= best + 1e-9
    assert 0.0 <= fit.ci[0] <= fit.gamma <= fit.ci[1] <= 1.0


def test_edge_counts():
    k = np.array([1, 2, 4])
    none = F.fit_scheme(np.zeros(3), 50, k, 0.99)
    assert none.gamma == 0.0 and none.ci[0] == 0.0 and 0 < none.ci[1] < 1
    every = F.fit_scheme(np.full(3, 50), 50, k, 0.99)
    assert every.gamma == 1.0 and every.ci[1] == 1.0 and 0 < every.ci[0] < 1


def test_pair_coverage_diagonal_is_coverage():
    for region in th.SEED_REGIONS:
        pair = F.pair_coverage_counts(4, (7, 5), region)
        np.testing.assert_array_equal(np.diag(pair), th.coverage_counts(4, (7, 5), region).ravel())
        assert (pair == pair.T).all() and (pair <= np.sqrt(np.outer(np.diag(pair), np.diag(pair)))).all()


def test_channels_shared_is_exact():
    d = np.zeros((3, 4, 5, 5), bool)
    d[1, :, 2, 2] = True
    assert F.channels_shared(d) is True
    d[2, 3, 0, 0] = True
    assert F.channels_shared(d) is False
    assert F.channels_shared(d[:, :1]) is None


def test_uncorrected_rule_in_theory():
    assert th.effective_gamma(0.1, 7, (12, 10), "anywhere", "uncorrected") == pytest.approx(0.1 / 49)
    assert th.effective_gamma(0.1, 3, (6, 8, 10), "valid", "uncorrected") == pytest.approx(0.1 / 27)
    assert th.effective_gamma(1.0, 3, (6, 8), "valid", "uncorrected") == 1.0
    # below the paper's rule by exactly the feature-map factor
    assert th.paper_gamma(0.1, 3, (12, 10)) / th.uncorrected_gamma(0.1, 3, 2) == pytest.approx(120 / 80)
    layer = DropBlock2d(p=0.1, block_size=3, gamma_rule="uncorrected", seed=0)
    assert layer.gamma((12, 10)) == pytest.approx(0.1 / 9)


def test_describe_words():
    base = {"identified_scheme": "anywhere", "declared_scheme": "valid", "fitted_gamma": 0.00204,
            "matched_gamma_rules": ["uncorrected"], "declared_gamma_rule": "paper", "rank": 2,
            "channels_shared": False, "declared_share_channels": False}
    assert D.diagnose(base) == "seeds over the whole map; gamma 0.0020 = p/bs^2 (uncorrected)"
    ok = dict(base, identified_scheme="valid", matched_gamma_rules=["paper"])
    assert D.diagnose(ok) is None
    assert D.diagnose(dict(ok, channels_shared=True)) == "one mask shared by all channels (contract: one per channel)"
    off = dict(ok, matched_gamma_rules=[], nearest_gamma_rule="paper", gamma_relative_gap=0.3)
    assert "no known rule (nearest" in D.diagnose(off) and "+30%" in D.diagnose(off)
    assert D.diagnose({}) is None


# ------------------------------------------------------------------------------ the three misdiagnoses

class _Behaves(DropBlock2d):
    """The reference, verified against its claimed params but drawing with ``actual`` ones."""

    actual: Dict[str, Any] = {}

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.params = dict(self.params, **self.actual)


class AnywhereUncorrected(_Behaves):
    actual = {"seed_region": "anywhere", "gamma_rule": "uncorrected"}


class PerChannelMasks(_Behaves):
    actual = {"share_channels": False}


class SharedMasks(_Behaves):
    actual = {"share_channels": True}


def _run(cls: type, params: Dict[str, Any], checks, seed: int = 7):
    shape = SHARED_SHAPE if params.get("share_channels") else SHAPE
    spec = numpy_spec("numpy:layer", "dropblock_2d", lambda prm: cls(**prm), params, shape=shape)
    return {r.check: r for r in verify([spec], Settings(seed=seed), checks=checks).all_results()}


def test_anywhere_uncorrected_is_identified_against_the_paper_contract():
    res = _run(AnywhereUncorrected, {"p": 0.1, "block_size": 7}, [D.GAMMA, D.MAP])
    truth = 0.1 / 49
    for name in (D.GAMMA, D.MAP):
        r = res[name]
        d = r.details
        assert r.verdict == "FAIL", r.message
        assert d["identified_scheme"] == "anywhere"
        assert d["log_likelihood_ratio"] < 0 < d["log_likelihood_ratio_identified"]  # valid - anywhere < 0
        assert d["fitted_gamma_ci"][0] <= truth <= d["fitted_gamma_ci"][1]
        assert d["fitted_gamma"] == pytest.approx(truth, rel=0.1)
        assert d["matched_gamma_rules"] == ["uncorrected"] and d["channels_shared"] is False
        assert re.match(r"seeds over the whole map; gamma 0\.002\d = p/bs\^2 \(uncorrected\): ", r.message), r.message
    g = res[D.GAMMA]
    assert g.estimate == pytest.approx(truth, rel=0.1) and g.ci[0] <= truth <= g.ci[1]


def test_per_channel_masks_fail_a_shared_contract():
    res = _run(PerChannelMasks, {"p": 0.2, "share_channels": True}, [D.CHANNELS, D.GAMMA])
    assert res[D.CHANNELS].verdict == "FAIL"
    assert res[D.CHANNELS].message.startswith("one mask per channel")
    assert res[D.GAMMA].details["channels_shared"] is False
    assert D.diagnose(res[D.GAMMA].details) == "one mask per channel (contract: one shared by all channels)"


def test_shared_masks_fail_a_per_channel_contract():
    res = _run(SharedMasks, {"p": 0.2, "share_channels": False},
               ["masks_independent_along_axes_by_fisher", D.MAP])
    axis1 = [r for name, r in res.items() if name.startswith("masks_independent_along_axis1")]
    assert axis1 and axis1[0].verdict == "FAIL"
    d = res[D.MAP].details
    assert d["channels_shared"] is True and d["fit_units"] < d["units"]  # channel 0 per batch item
    assert D.diagnose(d) == "one mask shared by all channels (contract: one per channel)"
    # the map's pooled units are copies across channels: a FAIL they raise is not counted against the map
    assert res[D.MAP].verdict != "FAIL"
    assert "p_pooled_fail" not in d or d.get("withdrawn_because", "").startswith("mask shared by all channels")


@pytest.mark.parametrize("params", [{"p": 0.2, "share_channels": True},
                                    {"p": 0.1, "block_size": 4, "seed_region": "anywhere"}])
def test_correct_references_pass_and_are_identified(params):
    res = _run(DropBlock2d, params, [D.GAMMA, D.MAP, D.CHANNELS])
    assert all(r.verdict == "PASS" for r in res.values()), [r.message for r in res.values()]
    for name in (D.GAMMA, D.MAP):
        d = res[name].details
        assert d["identified_scheme"] == params.get("seed_region", "valid")
        assert "paper" in d["matched_gamma_rules"] and D.diagnose(d) is None
    assert (D.CHANNELS in res) == params.get("share_channels", False)
