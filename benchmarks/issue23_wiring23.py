"""Issue 23 item 4 (a, c, d, f, g, h): measured error rates of the scan's wiring checks.

Writes reports/issue23/wiring23.md: each check of :mod:`dropverify.modelscan.wiring` on small torch
models, SEEDS runs (the wiring passes seeded 230000, 230001, ...): correct models (false-alarm
rate), the statistical rules at a raised false-alarm level (calibration), and adversaries that
deviate just beyond what a PASS certifies (false-pass rate), with exact 95 % intervals.
Run: ``python -m benchmarks.issue23_wiring23 [--seeds 200]``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable, List

import numpy as np
import torch
import torch.nn as nn
from scipy import stats as sps
from torch.utils.checkpoint import checkpoint

from dropverify.checks.callpatterns import overlap_limits
from dropverify.modelscan import wiring
from dropverify.modelscan.discovery import Recorder, module_sites
from dropverify.report import write_atomic
from benchmarks.long_horizon import rate_text

SEED0 = 230_000
P = 0.3
SHAPE = (16, 32)


class PartDropout(nn.Module):
    """Adversary of (a): a dropout at p whose second instance reuses the first's mask on a fraction ``f`` of
    the units (a fresh draw elsewhere): f = 1 is one shared mask."""

    def __init__(self, p: float, holder: dict, f: float, first: bool) -> None:
        super().__init__()
        self.p, self.holder, self.f, self.first = p, holder, f, first

    def forward(self, x):
        if not self.training:
            return x
        m = torch.rand(x.shape) >= self.p
        if self.first:
            self.holder["m"] = m
        else:
            m = torch.where(torch.rand(x.shape) < self.f, self.holder["m"], m)
        return x * m.float() / (1 - self.p)


class Shared(nn.Module):
    def __init__(self, f: float) -> None:
        super().__init__()
        holder: dict = {}
        self.fc1, self.fc2 = nn.Linear(SHAPE[1], SHAPE[1]), nn.Linear(SHAPE[1], SHAPE[1])
        self.drop1, self.drop2 = PartDropout(P, holder, f, True), PartDropout(P, holder, f, False)

    def forward(self, x):
        return self.drop2(self.fc2(self.drop1(self.fc1(x))))


class TwoDropouts(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(SHAPE[1], SHAPE[1]), nn.Linear(SHAPE[1], SHAPE[1])
        self.drop1, self.drop2 = nn.Dropout(P), nn.Dropout(P)

    def forward(self, x):
        return self.drop2(self.fc2(self.drop1(self.fc1(x))))


class LockedDropout(nn.Module):
    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training:
            return x
        return x * (torch.rand(x.shape[0], 1, x.shape[2]) >= self.p).float() / (1 - self.p)


class TwoLocked(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.fc = LockedDropout(P), LockedDropout(P), nn.Linear(8, 8)

    def forward(self, x):
        return self.b(self.fc(self.a(x)))


class LayerDrop(nn.Module):
    """6 layers skipped at rate ``skip`` each (independently) in training; the configured rate is 0.2."""

    def __init__(self, skip: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(8, 8) for _ in range(6))
        self.layerdrop, self.skip = 0.2, skip
        self.drop = nn.Dropout(0.1)

    def forward(self, x):
        for layer in self.layers:
            if self.training and float(torch.rand(())) < self.skip:
                continue
            x = layer(x)
        return self.drop(x)


class DropPath(nn.Module):
    def __init__(self, drop_prob: float) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x):
        if not self.training:
            return x
        keep = 1 - self.drop_prob
        return x * x.new_empty((x.shape[0], 1)).bernoulli_(keep) / keep


class Residual(nn.Module):
    def __init__(self, rate: float) -> None:
        super().__init__()
        self.fc, self.drop_path = nn.Linear(16, 16), DropPath(rate)

    def forward(self, x):
        return x + self.drop_path(self.fc(x))


class Ckpt(nn.Module):
    def __init__(self, preserve: bool) -> None:
        super().__init__()
        self.pre, self.block, self.head = nn.Linear(16, 16), nn.Sequential(nn.Linear(16, 16), nn.Dropout(P)), \
            nn.Linear(16, 2)
        self.preserve = preserve

    def forward(self, x):
        return self.head(checkpoint(self.block, self.pre(x), use_reentrant=False, preserve_rng_state=self.preserve))


def _sites(model: nn.Module, x: torch.Tensor) -> list:
    rec = Recorder(model, module_sites(model))
    model.train()
    with torch.no_grad(), rec.recording("train"):
        model(x)
    return rec.sites


def _count(model_fn: Callable[[], nn.Module], shape, check: str, verdict: str, seeds: int, with_sites: bool = False,
           fn: Callable = None) -> int:
    hits = 0
    for k in range(seeds):
        torch.manual_seed(SEED0 + k)
        model = model_fn()
        x = torch.randn(*shape)
        sites = _sites(model, x) if with_sites else []
        if fn is not None:
            res = fn(model, x, sites, SEED0 + k)
        else:
            every = wiring.wiring_results(model, (x,), {}, sites, SEED0 + k, "(model)")
            (res,) = [r for r in every if r.check == check]
        assert res.verdict in ("PASS", "FAIL", "INCONCLUSIVE"), res.message
        hits += res.verdict == verdict
    return hits


def _raised(value: float, fn: Callable[[], int]) -> int:
    old = wiring.SHARED_FALSE_ALARM
    wiring.SHARED_FALSE_ALARM = value
    try:
        return fn()
    finally:
        wiring.SHARED_FALSE_ALARM = old


def _raised_ld(value: float, fn: Callable[[], int]) -> int:
    old = wiring.LAYERDROP_ALPHA
    wiring.LAYERDROP_ALPHA = value
    try:
        return fn()
    finally:
        wiring.LAYERDROP_ALPHA = old


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--out", default="reports/issue23/wiring23.md")
    a = ap.parse_args(argv)
    n = a.seeds
    t0 = time.perf_counter()
    # predictions: the sharing rule's limit for two masks dropping the expected 154 of 512 units (6 pairs), the
    # overlap f a + (1 - f) a b / n a fraction f of shared units gives; LayerDrop's acceptance region
    units, drops = SHAPE[0] * SHAPE[1], round(P * SHAPE[0] * SHAPE[1])
    limit = int(overlap_limits(units, np.array([drops]), np.array([drops]), 6)[0])
    share = lambda f: f * drops + (1 - f) * drops * drops / units  # noqa: E731
    f_min = (limit - drops * drops / units) / (drops - drops * drops / units)
    trials = 6 * wiring.LAYERDROP_PASSES
    lo = int(sps.binom.ppf(wiring.LAYERDROP_ALPHA / 2, trials, 0.2))
    hi = int(sps.binom.isf(wiring.LAYERDROP_ALPHA / 2, trials, 0.2))
    S, L, C, B = wiring.SHARED, wiring.LAYERDROP, wiring.PLACEMENT, wiring.BACKWARD
    backward = lambda m, x, s, seed: wiring.backward_masks(m, (x,), {}, seed, "(model)")  # noqa: E731
    rows: List[tuple] = [
        (S, "hypergeometric, 1e-9", "two nn.Dropout(0.3) on 16 x 32", "none (correct)",
         _count(TwoDropouts, SHAPE, S, "FAIL", n), "<= 1e-9"),
        (S, "hypergeometric, 1e-9", "two LockedDropout(0.3) on 4 x 50 x 8 (mask shared over time)", "none (correct)",
         _count(TwoLocked, (4, 50, 8), S, "FAIL", n), "<= 1e-9 (time axis merged into the unit)"),
        (S, "hypergeometric, raised to 0.05", "two nn.Dropout(0.3) on 16 x 32", "none (correct; bound raised)",
         _raised(0.05, lambda: _count(TwoDropouts, SHAPE, S, "FAIL", n)),
         "<= 0.05 (union bound over 6 correlated pairs: conservative)"),
        (S, "hypergeometric, 1e-9", "second dropout reuses the first's mask on all units", "f = 1 (one mask)",
         _count(lambda: Shared(1.0), SHAPE, S, "PASS", n), "0 expected"),
        (S, "hypergeometric, 1e-9", "... on half of the units", "f = 0.5",
         _count(lambda: Shared(0.5), SHAPE, S, "PASS", n),
         f"mean overlap {share(0.5):.0f} vs limit {limit} (at {drops} of {units} dropped): f > {f_min:.2f} caught"),
        (S, "hypergeometric, 1e-9", "... on a quarter of the units", "f = 0.25 (below the detectable share)",
         _count(lambda: Shared(0.25), SHAPE, S, "PASS", n),
         f"mean overlap {share(0.25):.0f} vs limit {limit}: mostly PASS (below the detectable share)"),
        (L, "binomial, 1e-6", "LayerDrop p = 0.2, 6 layers, 24 passes", "none (correct)",
         _count(lambda: LayerDrop(0.2), (4, 8), L, "FAIL", n), f"<= 1e-6 (accepts {lo}..{hi} of {trials})"),
        (L, "binomial, raised to 0.05", "LayerDrop p = 0.2, 6 layers, 24 passes", "none (correct; alpha raised)",
         _raised_ld(0.05, lambda: _count(lambda: LayerDrop(0.2), (4, 8), L, "FAIL", n)), "<= 0.05"),
        (L, "binomial, 1e-6", "layers kept with probability p", "skip rate 0.8 for p = 0.2",
         _count(lambda: LayerDrop(0.8), (4, 8), L, "PASS", n), "0 expected"),
        (L, "binomial, 1e-6", f"skip rate just beyond the acceptance region ({lo}..{hi} of {trials})",
         "skip rate 0.45", _count(lambda: LayerDrop(0.45), (4, 8), L, "PASS", n),
         f"P({lo} <= skips <= {hi}) at 0.45 = "
         f"{sps.binom.cdf(hi, trials, 0.45) - sps.binom.cdf(lo - 1, trials, 0.45):.3f}"),
        (C, "exact", "3 residual blocks x + drop_path(f(x)), p = 0.1..0.3", "none (correct)",
         _count(lambda: nn.Sequential(*[Residual(r) for r in (0.1, 0.2, 0.3)]), (4, 16), C, "FAIL", n, True),
         "0 (exact)"),
        (B, "exact", "checkpoint(preserve_rng_state=True) around Linear + Dropout", "none (correct)",
         _count(lambda: Ckpt(True), (8, 16), B, "FAIL", n, fn=backward), "0 (exact)"),
        (B, "exact", "checkpoint(preserve_rng_state=False)", "another mask in backward",
         _count(lambda: Ckpt(False), (8, 16), B, "PASS", n, fn=backward),
         f"P(same 128-element mask) = {(P * P + (1 - P) ** 2) ** 128:.1g}"),
    ]
    took = time.perf_counter() - t0
    lines = ["# Issue 23 item 4: the scan's wiring checks, measured error rates", "",
             f"Written by `python -m benchmarks.issue23_wiring23 --seeds {n}` (wiring passes seeded {SEED0}..; "
             f"torch {torch.__version__}, CPU). Each row: {n} models, each check on its own passes. Counts with exact "
             f"95 % intervals. Total {took:.0f} s.", "",
             "| check | rule | model | deviation | FAIL (correct models) or PASS (adversaries) | bound or prediction |",
             "|---|---|---|---|---|---|"]
    lines += [f"| `{c}` | {r} | {m} | {d} | {rate_text(k, n)} | {b} |" for c, r, m, d, k, b in rows]
    lines += ["", "The depth schedule in execution order and the channel-dropout rank are exact functions of the "
              "configured rates and recorded shapes (no randomness): tests/test_scan_wiring.py covers them."]
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
