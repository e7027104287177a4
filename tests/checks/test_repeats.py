"""Exact repeat detection by hashing (``masks_never_repeat_by_hash``): correct references
pass, layers that reuse masks (pools, stale masks, batch items, ignored seeds, overlapping
seed streams) FAIL with a message naming the repeat, the chance-repeat bound is the direct
probability, and masks too short to tell are skipped with the reason. Deterministic: fixed
seeds throughout."""
from __future__ import annotations

import itertools
import math
from typing import Tuple

import numpy as np
import pytest

from dropverify.checks import FAIL, PASS, Settings
from dropverify.checks import repeats
from dropverify.mutants import run_one
from dropverify.mutants._calllevel import BatchTailReusesHead, PoolOfFiveMasks, StaleMask15Percent
from dropverify.mutants._elementwise import GaussianCachedNoise
from dropverify.targets import numpy_spec, reference_spec
from dropverify.variants import variant_names
from dropverify.variants.dropout import Dropout

SETTINGS = Settings(seed=20261126)
NAME = repeats.NAME


def _result(spec):
    results = run_one(spec, SETTINGS, checks=[NAME]).targets[0].results
    assert [r.check for r in results] == [NAME], results
    return results[0]


def _layer(cls, variant: str = "dropout", **params):
    return numpy_spec(f"test:{cls.__name__}", variant, lambda prm: cls(**prm), params)


# ------------------------------------------------------------------------------ layers with repeats

class SeedIgnored(Dropout):
    """Replaces whatever generator it is given with one seeded 1234: every seed gives the
    same stream (fresh masks within the stream)."""

    @property
    def rng(self) -> np.random.Generator:
        return self._rng

    @rng.setter
    def rng(self, value: np.random.Generator) -> None:
        self._rng = np.random.default_rng(1234)


class OverlappingStreams(Dropout):
    """Call k after seed s draws from seed s + k: seed s+1 replays seed s one call later."""

    @property
    def rng(self) -> np.random.Generator:
        return self._rng

    @rng.setter
    def rng(self, value: np.random.Generator) -> None:
        self._rng = value
        self._base, self._k = int(value.bit_generator.seed_seq.entropy), 0

    def draw_keep(self, shape: Tuple[int, ...]) -> np.ndarray:
        g = np.random.default_rng(self._base + self._k)
        self._k += 1
        return g.random(self.mask_shape(shape)) >= self.p


# ------------------------------------------------------------------------------ references pass

@pytest.mark.parametrize("variant", variant_names())
def test_every_reference_passes(variant):
    r = _result(reference_spec(variant))
    assert r.verdict == PASS, r.message
    assert not r.statistical and "no two identical masks" in r.message
    classes = r.details["classes"]
    assert set(classes) == {"calls", "items", "seeds"}
    for c in classes.values():
        assert c["repeats"] == 0
        assert c["status"].startswith("skipped") or c["collision_bound"] <= repeats.COLLISION_THRESHOLD


@pytest.mark.parametrize("p", [1e-3, 0.999])
def test_reference_passes_near_p_zero_and_one(p):
    r = _result(reference_spec("dropout", {"p": p}))
    assert r.verdict == PASS, r.message


def test_continuous_masks_have_collision_probability_zero():
    r = _result(reference_spec("gaussian_dropout"))
    assert r.verdict == PASS
    assert r.details["binary"] is False
    assert all(c["collision_bound"] == 0.0 and c["status"] == "checked" for c in r.details["classes"].values())


# ------------------------------------------------------------------------------ layers that FAIL

def test_pool_of_five_masks_fails_naming_the_cycle():
    r = _result(_layer(PoolOfFiveMasks, p=0.5))
    assert r.verdict == FAIL
    assert "call 5 repeats call 0's mask exactly" in r.message and "call 6 = call 1" in r.message
    assert r.details["classes"]["calls"]["repeats"] == repeats.CALLS - 5


def test_batch_tail_reusing_head_fails_naming_the_items():
    r = _result(_layer(BatchTailReusesHead, p=0.5))
    assert r.verdict == FAIL
    assert "batch item 56 of call 0 repeats item 0's mask exactly" in r.message
    assert r.details["classes"]["items"]["repeats"] == 8 * repeats.CALLS
    assert r.details["classes"]["calls"]["repeats"] == 0


def test_stale_mask_fails_naming_consecutive_calls():
    r = _result(_layer(StaleMask15Percent, p=0.5))
    assert r.verdict == FAIL
    first = r.details["classes"]["calls"]["first_repeats"]
    assert first, r.message
    pairs = dict(tuple(int(s.split()[-1]) for s in pair.split(" = ")) for pair in first)
    for later, earlier in pairs.items():  # a stale mask repeats the call before it (or that call's source)
        assert later - 1 == earlier or pairs.get(later - 1) == earlier, (later, earlier, first)
    assert "repeats call" in r.message


def test_seed_ignored_fails_on_the_seeds_class_only():
    r = _result(_layer(SeedIgnored, p=0.5))
    assert r.verdict == FAIL
    assert "call 0 after seed s+1 repeats call 0 after seed s+0's mask exactly" in r.message
    assert r.details["classes"]["calls"]["repeats"] == 0
    assert r.details["classes"]["seeds"]["repeats"] > 0


def test_overlapping_seed_streams_fail():
    r = _result(_layer(OverlappingStreams, p=0.5))
    assert r.verdict == FAIL
    assert "call 0 after seed s+1 repeats call 1 after seed s+0's mask exactly" in r.message
    assert r.details["classes"]["calls"]["repeats"] == 0


def test_cached_gaussian_noise_fails_with_continuous_masks():
    r = _result(_layer(GaussianCachedNoise, "gaussian_dropout", p=0.5))
    assert r.verdict == FAIL and "call 1 repeats call 0's mask exactly" in r.message


# ------------------------------------------------------------------------------ skipping

def test_per_row_masks_of_one_bit_are_skipped_with_the_reason():
    r = _result(reference_spec("drop_path"))
    assert r.verdict == PASS
    items = r.details["classes"]["items"]
    assert items["status"].startswith("skipped") and "1 independent unit(s)" in items["status"]
    assert "repeats expected" in items["status"]
    assert r.details["classes"]["calls"]["status"] == "checked"


@pytest.mark.parametrize("spec", [
    reference_spec("stochastic_depth", {"mode": "batch"}),
    reference_spec("dropout", {"p": 1e-6}, shape=(4, 8)),
], ids=["one-draw-per-call", "p-near-zero"])
def test_masks_too_short_make_the_check_not_applicable(spec):
    run = run_one(spec, SETTINGS, checks=[NAME]).targets[0]
    assert not run.results  # not informative: listed as not applicable, with the reason, never a PASS
    why = dict(run.not_applicable)[NAME]
    assert "masks too short" in why and "repeats expected" in why


# ------------------------------------------------------------------------------ arithmetic

def _direct_match_probability(q: np.ndarray) -> float:
    """P(two independent masks are identical), by enumerating every mask."""
    total = 0.0
    for bits in itertools.product((0, 1), repeat=len(q)):
        b = np.array(bits)
        pm = float(np.prod(np.where(b == 1, q, 1 - q)))
        total += pm * pm
    return total


@pytest.mark.parametrize("q", [[0.5] * 6, [0.1, 0.5, 0.9, 0.01, 0.3], [0.0, 1.0, 0.2], [0.999, 0.001]])
def test_match_probability_equals_direct_enumeration(q):
    q = np.array(q)
    direct = _direct_match_probability(q)
    assert math.exp(repeats.match_log_probability(q)) == pytest.approx(direct, rel=1e-12)
    for m in (2, 5, 48):
        assert repeats.union_bound(repeats.match_log_probability(q), m) == pytest.approx(
            min(1.0, m * (m - 1) / 2 * direct), rel=1e-12)


def test_match_probability_with_rows_bounds_every_pair_of_rows():
    q = np.array([[0.1, 0.5, 0.7], [0.3, 0.5, 0.2], [0.9, 0.4, 0.6]])
    bound = math.exp(repeats.match_log_probability(q))
    for a, b in itertools.combinations(range(len(q)), 2):
        pair = float(np.prod(q[a] * q[b] + (1 - q[a]) * (1 - q[b])))
        assert pair <= bound + 1e-15


def test_union_bound_edges_and_readable_tiny_probabilities():
    assert repeats.union_bound(-math.inf, 10) == 0.0
    assert repeats.union_bound(0.0, 1) == 0.0
    assert repeats.union_bound(0.0, 3) == 1.0
    assert repeats.format_probability(-10_000 * math.log(10)) == "10^-10000"
    assert repeats.format_probability(math.log(1e-9)) == "1e-09"


def test_find_repeats_reports_the_earliest_equal_mask_and_respects_groups():
    h = [b"a", b"b", b"a", b"c", b"a"]
    assert repeats.find_repeats(h) == [(2, 0), (4, 0)]
    assert repeats.find_repeats(h, groups=[0, 0, 0, 1, 1]) == [(4, 0)]


def test_hash_distinguishes_masks_and_is_stable():
    rng = np.random.default_rng(3)
    a = rng.random((8, 17)) < 0.5
    b = a.copy(); b[3, 16] = ~b[3, 16]
    assert repeats.mask_hash(a, True) == repeats.mask_hash(a.copy(), True)
    assert repeats.mask_hash(a, True) != repeats.mask_hash(b, True)
    rows = repeats.row_hashes(a, True)
    assert len(rows) == 8 and rows[3] != repeats.row_hashes(b, True)[3] and rows[0] == repeats.row_hashes(b, True)[0]
