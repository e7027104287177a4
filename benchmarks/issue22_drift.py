"""Issue 22 item 3: measured error rates, cost and causes of shifted reuse at lags 1..K and of
the drift check. Writes reports/issue22/drift.md (the asserted versions of the rates are in
tests/meta/test_drift_rates.py).

    python -m benchmarks.issue22_drift --seeds 200
"""
from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, List

from scipy import stats as sps

from dropverify.checks import Settings, drift, longhorizon
from dropverify.mutants import MUTANTS, default_settings, mutant_spec
from dropverify.mutants._drift import (CreepingRate, DriftBeyondMargin, InterleavedShiftedCounters,
                                       LagReuseOnQuarter, WarmUpBeyondMargin, WarmUpRate)
from dropverify.mutants.adversaries import OverDispersed25
from dropverify.report import write_atomic
from dropverify.runner import verify
from dropverify.targets import numpy_spec, reference_spec
from benchmarks.long_horizon import count_verdicts, rate_text

DEFAULT_SHAPE = (64, 32, 8, 8)


def _patched(name: str, value, fn: Callable[[], object]):
    old = getattr(longhorizon, name)
    setattr(longhorizon, name, value)
    try:
        return fn()
    finally:
        setattr(longhorizon, name, old)


def _layer(cls, shape, **attrs):
    sub = type(cls.__name__, (cls,), dict(attrs))
    return numpy_spec(f"adversary:{cls.__name__}", "dropout", lambda prm: sub(**prm), {"p": 0.3}, shape=shape)


def _cost(lines: List[str]) -> None:
    spec = reference_spec("dropout", {"p": 0.3}, shape=DEFAULT_SHAPE)
    lines += ["## Cost of the shift statistic on the default shape", "",
              f"dropout p=0.3, {' x '.join(map(str, DEFAULT_SHAPE))} (131072 units), default settings, the check alone "
              "(seconds of the check, drawing its calls included; median of 3 runs, seeds 1..3). Lags 1 is the "
              f"statistic before this change ({longhorizon.SHIFT_PAIRS + 1} calls, {longhorizon.SHIFT_PAIRS} "
              "pairs).", "", "| lags | calls read | call pairs | seconds (median) | detectable reused fraction |",
              "|---|---|---|---|---|"]
    for lags in (1, longhorizon.SHIFT_LAGS):
        runs = [_patched("SHIFT_LAGS", lags, lambda s=s: verify([spec], Settings(seed=s),
                                                                 checks=[longhorizon.SHIFT]).all_results()[0])
                for s in (1, 2, 3)]
        r = runs[0]
        lines.append(f"| 1..{lags} | {r.details['calls']} | {r.details['pairs']} | "
                     f"{statistics.median(x.seconds for x in runs):.2f} | "
                     f"{r.details['detectable_reused_fraction']:.3f} |")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines += ["", f"Load average while measuring: {load:.1f} on {os.cpu_count()} CPUs (seconds on a shared machine "
              "scale with it; the ratio of the two rows is the figure to read)."]
    t0 = time.perf_counter()
    (d,) = verify([spec], Settings(seed=1), checks=[drift.NAME]).all_results()
    lines += ["", f"The drift check alone on the same configuration: {d.verdict}, {d.details['calls']} calls read "
              f"(the stream the long-horizon hash reads anyway), {time.perf_counter() - t0:.1f} s wall with the "
              f"calls drawn; margin {d.margin:.4f}, certified interval of the largest window deviation "
              f"{d.ci[0]:.5f}..{d.ci[1]:.5f}, smallest window deviation detected with power 0.99: {d.mdd:.5f}.", ""]


def _user_cases(lines: List[str]) -> None:
    lines += ["## The issue's cases on the default shape", "",
              f"dropout p=0.3, {' x '.join(map(str, DEFAULT_SHAPE))}, default settings (seed 20261126), every "
              "applicable check; the cause lines of the diagnosis.", "",
              "| layer | shift check at lag 1 only | FAILs (all checks) | cause lines |", "|---|---|---|---|"]
    cases = (("two generators interleaved, call t+2 = call t shifted by 40000",
              _layer(InterleavedShiftedCounters, DEFAULT_SHAPE, STEP=40000)),
             ("warm-up: rate ramps 0 -> 0.3 over the first 500 calls", _layer(WarmUpRate, DEFAULT_SHAPE)),
             ("rate creeps 0.3 -> 0.42 over 4000 calls", _layer(CreepingRate, DEFAULT_SHAPE)))
    for what, spec in cases:
        (lag1,) = _patched("SHIFT_LAGS", 1, lambda: verify([spec], default_settings(),
                                                           checks=[longhorizon.SHIFT]).all_results())
        t = verify([spec], default_settings()).targets[0]
        fails = ", ".join(f"`{r.check}`" for r in t.results if r.verdict == "FAIL")
        causes = "; ".join(c.summary for c in t.root_causes)
        lines.append(f"| {what} | {lag1.verdict} | {fails} | {causes} |")
    lines.append("")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.issue22_drift")
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--out", default="reports/issue22/drift.md")
    args = parser.parse_args(argv)
    n = args.seeds
    started = time.perf_counter()
    gc.freeze()  # the objects alive now are never garbage: each run's gc.collect (statsmodels) stays cheap
    lines: List[str] = [
        "# Issue 22 item 3: reuse at lags 1..K and rate drift over the stream", "",
        f"Written by `python -m benchmarks.issue22_drift {' '.join(sys.argv[1:] if argv is None else argv)}`. "
        f"Each rate row is {n} runs of one check alone, seeds 70000.., with exact 95 % intervals.", "",
        "## False alarms on correct references", "",
        "| statistic | configuration | threshold / alpha | FAILs |", "|---|---|---|---|"]
    for p in (0.3, 0.03):
        spec = reference_spec("dropout", {"p": p}, shape=(16, 64))
        k = _patched("FALSE_ALARM", 0.05, lambda: count_verdicts(spec, longhorizon.SHIFT, "FAIL", n, base=70_000,
                                                                  max_calls=200))
        lines.append(f"| `{longhorizon.SHIFT}` (lags 1..{longhorizon.SHIFT_LAGS}) | dropout p={p}, 16 x 64 | "
                     f"bound 0.05 (default 1e-9) | {rate_text(k, n)} |")
    for name, spec in (("dropout p=0.3, 16 x 64", reference_spec("dropout", {"p": 0.3}, shape=(16, 64))),
                       ("dropout p=0.9, 16 x 64", reference_spec("dropout", {"p": 0.9}, shape=(16, 64))),
                       ("steady but over-dispersed rate (count variance 2.5x binomial), p=0.3, 16 x 64",
                        _layer(OverDispersed25, (16, 64)))):
        k = count_verdicts(spec, drift.NAME, "FAIL", n, base=70_000, alpha=0.05, max_calls=400)
        lines.append(f"| `{drift.NAME}` | {name}, 400 calls | alpha 0.05 | {rate_text(k, n)} |")
    ref = reference_spec("dropout", {"p": 0.3}, shape=(16, 64))
    k = count_verdicts(ref, drift.NAME, "PASS", n, base=70_000, alpha=0.05, max_calls=400)
    lines += ["", f"The reference is certified (PASS) in {rate_text(k, n)} of the runs at that configuration, so the "
              "false-pass rows below are not vacuous.", "",
              "## False passes against adversaries just beyond what a PASS certifies", "",
              "| statistic | adversary | PASSes |", "|---|---|---|"]
    for layer, what in ((DriftBeyondMargin, "linear drift centred on p = 0.3 (mean rate exact): first and last "
                         "windows of 50 calls deviate from the stream's rate by 1.1 x the margin 0.03"),
                        (WarmUpBeyondMargin, "warm-up: the first 50 of 400 calls at a lower rate, window "
                         "deviation 1.1 x the margin 0.03")):
        k = count_verdicts(_layer(layer, (16, 64)), drift.NAME, "PASS", n, base=70_000, alpha=0.05, max_calls=400)
        lines.append(f"| `{drift.NAME}` (alpha 0.05, 400 calls) | {what} | {rate_text(k, n)} |")
    k = count_verdicts(_layer(LagReuseOnQuarter, (16, 32, 4, 4)), longhorizon.SHIFT, "PASS", n, base=70_000)
    lines += [f"| `{longhorizon.SHIFT}` (default bound 1e-9) | a quarter of the calls reuse call t-3's draws "
              f"shifted by 3000, 16 x 32 x 4 x 4 (hides in all 21 lag-3 pairs with probability 0.75^21 = "
              f"{0.75 ** 21:.4f}) | {rate_text(k, n)} |", ""]
    _cost(lines)
    _user_cases(lines)
    lines += ["## The issue-22 mutants (and a frozen mask) against the whole check suite", "",
              "Default settings, seed 20261126, every applicable check (as `dropverify run mutant:NAME`).", "",
              "| mutant | FAILs | cause lines |", "|---|---|---|"]
    for m in MUTANTS:
        if m.name in ("interleaved_counters_lag2", "warm_up_rate_500", "creeping_rate", "frozen_after_1000"):
            t = verify([mutant_spec(m)], default_settings()).targets[0]
            fails = ", ".join(f"`{r.check}`" for r in t.results if r.verdict == "FAIL")
            lines.append(f"| `{m.name}` | {fails} | {'; '.join(c.summary for c in t.root_causes)} |")
    lines += ["", f"Wall time: {time.perf_counter() - started:.0f} s."]
    write_atomic(Path(args.out), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
