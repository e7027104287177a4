"""Word-type embedding dropout at lookup: ``lookup(ids)`` after ``forward(W)`` returns that
call's dropped rows, so every occurrence of a word type carries its row's one mask."""
from __future__ import annotations

import time
from typing import List, Tuple

import numpy as np

from ..results import CheckResult
from ._core import CheckContext
from ._sequential import error_result, exact_result, skipped_result
from ._worker import TargetError, guarded

NAME = "lookup_reuses_forward_mask_exact"


def applies(ctx: CheckContext) -> bool:
    """Contracts that promise a ``lookup(ids)`` of the last forward's output."""
    return bool(ctx.contract.extra.get("lookup"))


def _mismatches(ids: np.ndarray, rows: np.ndarray, expected: np.ndarray) -> Tuple[int, int]:
    """(occurrences whose row differs from the forward's, word types whose occurrences
    disagree among themselves); rows compare bit for bit, NaN equal to NaN."""
    same = (rows == expected) | (np.isnan(rows) & np.isnan(expected))
    bad = ~same.reshape(ids.size, -1).all(axis=1)
    flat_ids, flat_rows = ids.reshape(-1), rows.reshape(ids.size, -1)
    _, first, inverse = np.unique(flat_ids, return_index=True, return_inverse=True)
    inverse = np.asarray(inverse).reshape(-1)
    split = ~(flat_rows == flat_rows[first[inverse]]).all(axis=1)
    return int(bad.sum()), int(np.unique(flat_ids[split]).size)


def lookup_reuses_forward_mask_exact(ctx: CheckContext, calls: int = 3,
                                     ids_shape: Tuple[int, int] = (64, 64)) -> List[CheckResult]:
    """Exact, bit for bit: after each training ``forward(W)``, ``lookup(ids)`` equals
    ``forward(W)[ids]`` for ids drawn uniformly from the vocabulary (4096 per call, so each
    word type occurs about 4096 / V times). A mask drawn again at lookup disagrees with the
    forward's on a fraction 2p(1-p) of occurrences: missed with probability
    (1 - 2p(1-p))^(3 * 4096), below 1e-9 for 0.0017 <= p <= 0.9983."""
    start = time.perf_counter()
    tgt = ctx.target
    if not (getattr(tgt, "has_lookup", False) and callable(getattr(tgt, "lookup", None))):
        return [skipped_result(ctx, NAME, "the target has no lookup(ids)")]
    seeds = ctx.seeds(NAME)
    inputs = seeds.probe()
    vocab = int(np.shape(inputs[0])[0])
    rng = seeds.rng()
    bad = split = total = 0
    try:
        stream = ctx.stream(inputs, seeds.seed())
        for _ in range(calls):
            y = np.asarray(next(stream))
            ids = rng.integers(0, vocab, size=ids_shape)
            rows = np.asarray(guarded(lambda: tgt.lookup(ids), ctx.settings.call_timeout_s, "lookup"))
            expected = y[ids]
            if rows.shape != expected.shape:
                return [exact_result(ctx, NAME, False, f"lookup output shape={rows.shape}", f"{expected.shape}")]
            b, s = _mismatches(ids, rows, expected)
            bad, split, total = bad + b, split + s, total + ids.size
    except TargetError as exc:
        return [error_result(ctx, NAME, str(exc))]
    observed = (f"looked-up rows differing from the forward's dropped matrix={bad} of {total}; word types "
                f"whose occurrences got different vectors={split}")
    return [exact_result(ctx, NAME, bad == 0, observed,
                         "0 and 0 (one mask per word type, drawn in forward and reused at every occurrence)",
                         {"occurrences": total, "mismatched": bad, "split_word_types": split, "calls": calls},
                         time.perf_counter() - start)]
