"""Issue 22 item 5 (inputs): measured error rates of the neighbour strata of
``drop_rate_independent_of_input_by_stratum`` and the naming of negative dependence.

Writes reports/issue22/inputs.md:

* false-alarm rate of the extended check (own + neighbour strata) on correct references —
  element-wise dropout, spatial dropout (units share a draw), Gaussian dropout — at a nominal
  alpha of 0.05, ``--seeds`` seeds each;
* false-pass rate against adversaries just beyond the margin on the NEIGHBOUR strata (drop rate
  p (1 +- 0.03) by the sign of x[i+1]: 1.2 x the rate margin; Gaussian: mean multiplier
  1 +- 0.006 by the sign of x[i+1]: 1.2 x the mean margin), nominal 0.05;
* the mutant ``never_twice_in_a_row`` (lag-1 relative risk 0): how often
  masks_fresh_across_calls FAILs it, and how often the diagnosis names negative dependence
  (never "stale or cached masks"), at the default alpha;
* the FAIL rows of those runs: how many show an interval containing the null beside p < alpha.

The same measurements with asserted bounds (fewer seeds where 200 do not fit 90 s) are in
tests/meta/test_neighbour_rates.py.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

from scipy import stats as sps

from dropverify.checks import Settings
from dropverify.checks.inputs import NAME
from dropverify.mutants._inputs import BoundaryNeighbourSignRate, GaussianNeighbourMean
from dropverify.mutants._negative import NeverTwiceInARow
from dropverify.report import write_atomic
from dropverify.runner import verify
from dropverify.targets import numpy_spec, reference_spec
from benchmarks.long_horizon import rate_text

NOMINAL = 0.05
FRESH = "masks_fresh_across_calls_by_fisher"
REFERENCES = [("dropout", (4, 64)), ("spatial_dropout_2d", (16, 16, 2, 2)), ("gaussian_dropout", (4, 64))]
ADVERSARIES = [(BoundaryNeighbourSignRate, "dropout", 2 * 0.03 * 0.3),
               (GaussianNeighbourMean, "gaussian_dropout", 2 * 0.006)]


def _excess(count: int, n: int) -> str:
    return f"{sps.binomtest(count, n, NOMINAL, alternative='greater').pvalue:.3g}"


def _incoherent(r) -> bool:
    """A FAIL row whose interval contains the null beside p below alpha."""
    return (r.verdict == "FAIL" and r.statistical and r.ci is not None and r.p_value is not None
            and r.p_value < r.alpha and r.ci[0] <= r.expected <= r.ci[1])


def _one(spec, seed: int, checks: List[str], **kw: Any):
    run = verify([spec], Settings(seed=seed, **kw), checks=checks)
    target = run.targets[0]
    return target, [r for r in target.results if r.statistical]


def false_alarms(seeds: int, max_calls: int) -> List[Dict[str, Any]]:
    rows = []
    for variant, shape in REFERENCES:
        spec = reference_spec(variant, {"p": 0.3}, shape=shape)
        counts = {"FAIL": 0, "PASS": 0, "INCONCLUSIVE": 0, "ERROR": 0}
        neighbour = 0
        bad = 0
        start = time.perf_counter()
        for seed in range(seeds):
            _, (r,) = _one(spec, 10_000 + seed, [NAME], alpha=NOMINAL, max_calls=max_calls)
            counts[str(r.verdict)] += 1
            neighbour += r.verdict == "FAIL" and "[" in str(r.details.get("worst_lane", ""))
            bad += _incoherent(r)
        rows.append({"variant": variant, "shape": shape, "counts": counts, "neighbour": neighbour, "bad": bad,
                     "lanes": len(str(r.details.get("lanes", "")).split(", ")), "seconds": time.perf_counter() - start})
        print(variant, counts, file=sys.stderr)
    return rows


def false_passes(seeds: int, max_calls: int) -> List[Dict[str, Any]]:
    rows = []
    for layer, variant, deviation in ADVERSARIES:
        spec = numpy_spec(f"adversary:{layer.__name__}", variant, lambda prm, L=layer: L(**prm), {"p": 0.3},
                          shape=(16, 64))
        counts = {"FAIL": 0, "PASS": 0, "INCONCLUSIVE": 0, "ERROR": 0}
        named = bad = 0
        margin = None
        start = time.perf_counter()
        for seed in range(seeds):
            _, (r,) = _one(spec, 50_000 + seed, [NAME], alpha=NOMINAL, max_calls=max_calls)
            counts[str(r.verdict)] += 1
            margin = r.margin
            named += r.verdict == "FAIL" and "x[i+1]" in str(r.details.get("worst_lane", ""))
            bad += _incoherent(r)
        rows.append({"layer": layer.__name__, "variant": variant, "deviation": deviation, "margin": margin,
                     "counts": counts, "named": named, "bad": bad, "seconds": time.perf_counter() - start})
        print(layer.__name__, counts, file=sys.stderr)
    return rows


def negative_naming(seeds: int) -> Dict[str, Any]:
    spec = numpy_spec("mutant:never_twice_in_a_row", "dropout", lambda prm: NeverTwiceInARow(**prm), {"p": 0.3},
                      shape=(16, 64))
    fails = negative = stale = bad = 0
    example = ""
    start = time.perf_counter()
    for seed in range(seeds):
        target, (r,) = _one(spec, 70_000 + seed, [FRESH])
        fails += r.verdict == "FAIL"
        words = [c.summary for c in target.root_causes]
        negative += bool(words) and words[0].startswith("a unit dropped at call t is rarely dropped at call t+1")
        stale += any("stale or cached" in w for w in words)
        bad += _incoherent(r)
        example = example or (words[0] if words else "")
    return {"fails": fails, "negative": negative, "stale": stale, "bad": bad, "example": example,
            "seeds": seeds, "seconds": time.perf_counter() - start}


def render(args: argparse.Namespace, fa, fp, neg) -> str:
    n = args.seeds
    lines = ["# Issue 22 item 5: neighbour strata, negative dependence, coherent FAIL rows", "",
             f"Command: `PYTHONPATH=. python benchmarks/issue22_inputs.py --seeds {n} --max-calls {args.max_calls} "
             f"--max-calls-adversary {args.max_calls_adversary}` (or the same with `--part negative`, `--part "
             "false_pass` and `--part false_alarm` run apart, each keeping its numbers in a .json beside the report, "
             "then `--part render`)", "",
             "Produced by benchmarks/issue22_inputs.py (real runs, fixed seeds). Rates with exact 95 % binomial "
             f"intervals; 'excess p' is the one-sided exact binomial test of the count against the nominal {NOMINAL}.",
             "", "## False alarms of drop_rate_independent_of_input_by_stratum on correct references", "",
             f"Nominal alpha {NOMINAL}, at most {args.max_calls} calls, p = 0.3, the check alone. A false alarm "
             "rate holds at any budget; this one is too small to certify (every non-FAIL is INCONCLUSIVE): the "
             "default budget certifies the references (tests/checks/test_neighbours_and_rows.py).", "",
             "| reference | shape | lanes (contrasts) | FAIL | of which on a neighbour lane | excess p | PASS | "
             "INCONCLUSIVE | incoherent FAIL rows | seconds |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in fa:
        c = row["counts"]
        lines.append(f"| {row['variant']} | {row['shape']} | {row['lanes']} | {rate_text(c['FAIL'], n)} | {row['neighbour']} | "
                     f"{_excess(c['FAIL'], n)} | {c['PASS']} | {c['INCONCLUSIVE']} | {row['bad']} | {row['seconds']:.0f} |")
    lines += ["", "## False passes against adversaries just beyond the margin on the neighbour strata", "",
              f"Nominal alpha {NOMINAL}, at most {args.max_calls_adversary} calls, shape (16, 64), p = 0.3: a PASS "
              "certifies every contrast within the margin, which the adversary exceeds.", "",
              "| adversary | true contrast | margin | PASS (false pass) | excess p | FAIL | of which naming x[i+1] | "
              "INCONCLUSIVE | incoherent FAIL rows | seconds |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in fp:
        c = row["counts"]
        lines.append(f"| {row['layer']} ({row['variant']}) | {row['deviation']:.4g} | {row['margin']:.4g} | "
                     f"{rate_text(c['PASS'], n)} | {_excess(c['PASS'], n)} | {c['FAIL']} | {row['named']} | "
                     f"{c['INCONCLUSIVE']} | {row['bad']} | {row['seconds']:.0f} |")
    lines += ["", "## Negative dependence named: never_twice_in_a_row", "",
              "masks_fresh_across_calls_by_fisher alone at the default settings (alpha 0.001), shape (16, 64), p = 0.3.",
              "", f"- FAIL: {rate_text(neg['fails'], neg['seeds'])}",
              f"- first root cause names negative dependence at call t+1: {rate_text(neg['negative'], neg['seeds'])}",
              f"- any root cause saying 'stale or cached masks': {neg['stale']}",
              f"- incoherent FAIL rows (interval containing the null beside p < alpha): {neg['bad']}",
              f"- example: \"{neg['example']}\"", f"- seconds: {neg['seconds']:.0f}", ""]
    return "\n".join(lines)


PARTS = ("negative", "false_pass", "false_alarm")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--max-calls", type=int, default=60)
    ap.add_argument("--max-calls-adversary", type=int, default=3000)
    ap.add_argument("--part", choices=PARTS + ("all", "render"), default="all",
                    help="measure one part (kept in --out with .json; parts may run in parallel), or render. "
                         "Default: %(default)r")
    ap.add_argument("--out", default="reports/issue22/inputs.md")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    parts = PARTS if args.part == "all" else (() if args.part == "render" else (args.part,))
    for part in parts:
        value = {"negative": lambda: negative_naming(args.seeds),
                 "false_pass": lambda: false_passes(args.seeds, args.max_calls_adversary),
                 "false_alarm": lambda: false_alarms(args.seeds, args.max_calls)}[part]()
        store = out.with_name(f"{out.stem}.{part}.json")
        write_atomic(store, json.dumps({"value": value, "seeds": args.seeds, "max_calls": args.max_calls,
                                        "max_calls_adversary": args.max_calls_adversary}, default=list))
    stored = {}
    for part in PARTS:
        store = out.with_name(f"{out.stem}.{part}.json")
        if store.exists():
            stored[part] = json.loads(store.read_text())
    if len(stored) == len(PARTS):
        seeds = {v["seeds"] for v in stored.values()}
        assert len(seeds) == 1, f"parts measured with different --seeds: {seeds}"
        args.seeds = seeds.pop()
        args.max_calls = stored["false_alarm"]["max_calls"]
        args.max_calls_adversary = stored["false_pass"]["max_calls_adversary"]
        write_atomic(out, render(args, stored["false_alarm"]["value"], stored["false_pass"]["value"],
                                 stored["negative"]["value"]))
        print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
