"""``lookup_reuses_forward_mask_exact``: word-type dropout's lookup(ids) returns the rows of
the forward's dropped matrix, so one word type is dropped alike wherever it occurs."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from dropverify.checks import FAIL, INCONCLUSIVE, PASS, Settings
from dropverify.checks.lookup import NAME, _mismatches
from dropverify.mutants._sequence import WordDropoutPerOccurrence, WordDropoutRedrawnAtLookup
from dropverify.runner import verify
from dropverify.targets import numpy_spec, reference_spec
from dropverify.variants.sequence import WordEmbeddingDropout


def result(spec, seed: int = 5):
    res = verify([spec], Settings(seed=seed), checks=[NAME]).targets[0].results
    assert len(res) == 1
    return res[0]


@pytest.mark.parametrize("p", [0.0, 0.01, 0.3, 1.0])
def test_reference_passes(p):
    r = result(reference_spec("word_embedding_dropout", {"p": p}, shape=(64, 4)))
    assert r.verdict == PASS, r.message
    assert r.details["mismatched"] == 0 and r.details["occurrences"] == 3 * 64 * 64


@pytest.mark.parametrize("cls", [WordDropoutRedrawnAtLookup, WordDropoutPerOccurrence])
def test_mask_drawn_again_at_lookup_fails(cls):
    spec = numpy_spec("redrawn", "word_embedding_dropout", lambda prm: cls(**prm), {"p": 0.3}, shape=(64, 4))
    r = result(spec)
    assert r.verdict == FAIL
    assert r.details["mismatched"] > 0 and r.details["split_word_types"] > 0
    assert "looked-up rows differing from the forward's dropped matrix" in r.message


def test_target_without_lookup_is_not_run():
    class NoLookup:
        """Forward/backward of the reference, no lookup."""

        def __init__(self, **prm: Any) -> None:
            self._layer = WordEmbeddingDropout(**prm)
            self.rng, self.training = self._layer.rng, True

        def forward(self, w: np.ndarray) -> np.ndarray:
            self._layer.rng, self._layer.training = self.rng, self.training
            return self._layer.forward(w)

        def backward(self, g: np.ndarray) -> np.ndarray:
            return self._layer.backward(g)

    r = result(numpy_spec("nolookup", "word_embedding_dropout", lambda prm: NoLookup(**prm), {"p": 0.3}))
    assert r.verdict == INCONCLUSIVE and "no lookup(ids)" in r.message


def test_applies_only_where_the_contract_promises_lookup():
    res = verify([reference_spec("dropout", shape=(8, 8))], Settings(seed=0), checks=[NAME]).targets[0].results
    assert res == ()


def test_mismatch_counts_occurrences_and_split_word_types():
    ids = np.array([[0, 1, 0], [2, 1, 0]])
    table = np.arange(6.0).reshape(3, 2)
    rows = table[ids].copy()
    assert _mismatches(ids, rows, table[ids]) == (0, 0)
    rows[1, 2] = 0.0  # the second occurrence-set of word 0 differs
    assert _mismatches(ids, rows, table[ids]) == (1, 1)
