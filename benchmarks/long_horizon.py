"""`make quality` (second part): measured error rates of the issue-16 statistics.

Writes reports/long_horizon.md: for each new statistic, its false-alarm rate on correct
references and its false-pass rate against adversaries, over SEEDS seeds each, and the full
check suite on every long-horizon mutant (which checks FAIL, the cause line). The same
measurements, with asserted bounds, run in tests/meta/test_long_horizon_rates.py.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Callable, List

from scipy import stats as sps

from dropverify.checks import Settings, dispersion, longhorizon
from dropverify.mutants import MUTANTS, default_settings, mutant_spec
from dropverify.report import write_atomic
from dropverify.runner import verify
from dropverify.targets import numpy_spec, reference_spec


def rate_text(count: int, n: int) -> str:
    """``count/n (x %, 95 % CI lo..hi %)``: a count over seeds with its exact (Clopper-Pearson) interval."""
    ci = sps.binomtest(count, n).proportion_ci(0.95, method="exact")
    return f"{count}/{n} ({100 * count / n:.1f} %, 95 % CI {100 * ci.low:.1f}..{100 * ci.high:.1f} %)"


def count_verdicts(spec, check: str, verdict: str, seeds: int, base: int = 60_000, **settings) -> int:
    """Runs of ``check`` alone, seeds ``base``, ``base + 1``, ...: how many end in ``verdict``."""
    hits = 0
    for seed in range(seeds):
        (r,) = verify([spec], Settings(seed=base + seed, **settings), checks=[check]).all_results()
        assert r.verdict != "ERROR", r.message
        hits += r.verdict == verdict
    return hits


def _with_threshold(value: float, fn: Callable[[], int]) -> int:
    old = longhorizon.FALSE_ALARM
    longhorizon.FALSE_ALARM = value
    try:
        return fn()
    finally:
        longhorizon.FALSE_ALARM = old


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.long_horizon")
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--out", default="reports/long_horizon.md")
    args = parser.parse_args(argv)
    from dropverify.mutants._longhorizon import ShiftedCounter
    from dropverify.mutants.adversaries import LagSharedOnQuarter, OverDispersed25
    n = args.seeds
    started = time.perf_counter()
    lines: List[str] = [
        "# The issue-16 statistics: measured error rates", "",
        f"Written by `python -m benchmarks.long_horizon --seeds {n}` (part of `make quality`). Each row is {n} "
        "runs of one check alone, seeds 60000.., on a small probe (16 x 64 unless stated). Counts with exact 95 % "
        "intervals.", "",
        "## False alarms on correct references", "",
        "| statistic | configuration | threshold / alpha | FAILs |", "|---|---|---|---|"]
    for p in (0.3, 0.9):
        spec = reference_spec("dropout", {"p": p}, shape=(16, 64))
        k = count_verdicts(spec, dispersion.NAME, "FAIL", n, alpha=0.05, max_calls=400)
        lines.append(f"| `{dispersion.NAME}` | dropout p={p} | alpha 0.05 | {rate_text(k, n)} |")
    spec = reference_spec("dropblock_2d", {"p": 0.2, "block_size": 3}, shape=(8, 4, 9, 7))
    k = count_verdicts(spec, dispersion.NAME, "FAIL", n, alpha=0.05, max_calls=400)
    lines.append(f"| `{dispersion.NAME}` | dropblock_2d p=0.2 bs=3, 8 x 4 x 9 x 7, against its simulated null "
                 f"({dispersion.NULL_CALLS} reference calls) | alpha 0.05 | {rate_text(k, n)} |")
    for check in (longhorizon.SHIFT, longhorizon.LAG):
        for p in (0.3, 0.03):
            spec = reference_spec("dropout", {"p": p}, shape=(16, 64))
            k = _with_threshold(0.05, lambda: count_verdicts(spec, check, "FAIL", n, max_calls=200))
            lines.append(f"| `{check}` | dropout p={p} | bound 0.05 (default 1e-9) | {rate_text(k, n)} |")
    spec = reference_spec("dropout", {"p": 0.5}, shape=(2, 8))
    (probe,) = _with_threshold(0.05, lambda: verify([spec], Settings(seed=1, max_calls=40),
                                                     checks=[longhorizon.REPEAT]).all_results())
    k = _with_threshold(0.05, lambda: count_verdicts(spec, longhorizon.REPEAT, "FAIL", n, max_calls=40))
    lines.append(f"| `{longhorizon.REPEAT}` | dropout p=0.5, 2 x 8 (16 units), 40 calls: chance repeats "
                 f"possible, union bound {probe.details['collision_bound']} | bound 0.05 (default 1e-9) | "
                 f"{rate_text(k, n)} |")
    lines += ["", "## False passes against adversaries beyond the margin", "",
              "| statistic | adversary | PASSes |", "|---|---|---|"]
    spec = numpy_spec("adversary:over-dispersed-2.5", "dropout", lambda prm: OverDispersed25(**prm), {"p": 0.3},
                      shape=(16, 64))
    k = count_verdicts(spec, dispersion.NAME, "PASS", n, alpha=0.05, max_calls=3000)
    lines.append(f"| `{dispersion.NAME}` (alpha 0.05, margin 1 ± 0.5) | per-call count variance 2.5x binomial | "
                 f"{rate_text(k, n)} |")
    for layer, check, what in ((LagSharedOnQuarter, longhorizon.LAG, "draws shared 96 apart in a quarter of "
                                "the 192-element blocks, 16 x 32 x 4 x 4"),
                               (ShiftedCounter, longhorizon.SHIFT, "counter advanced by 4000 instead of 8192, "
                                "16 x 32 x 4 x 4")):
        spec = numpy_spec(f"adversary:{layer.__name__}", "dropout", lambda prm, layer=layer: layer(**prm),
                          {"p": 0.3}, shape=(16, 32, 4, 4))
        k = count_verdicts(spec, check, "PASS", n)
        lines.append(f"| `{check}` (default bound 1e-9) | {what} | {rate_text(k, n)} |")
    lines += ["", "## The long-horizon mutants against the whole check suite", "",
              "Default settings, seed 20261126, every applicable check (as `dropverify run mutant:NAME`).", "",
              "| mutant | FAILs | cause lines |", "|---|---|---|"]
    for m in MUTANTS:
        if m.name not in ("mask_bank_256", "frozen_after_1000", "shared_draw_at_lag_96", "shifted_counter_4000",
                          "over_dispersed_rate"):
            continue
        t = verify([mutant_spec(m)], default_settings()).targets[0]
        fails = ", ".join(f"`{r.check}`" for r in t.results if r.verdict == "FAIL")
        causes = "; ".join(c.summary for c in t.root_causes)
        lines.append(f"| `{m.name}` | {fails} | {causes} |")
    from dropverify.provenance import fingerprint_line
    lines += ["", fingerprint_line()]  # the wall time goes to the console only: the report is the same on any machine
    write_atomic(Path(args.out), "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"Wall time: {time.perf_counter() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
