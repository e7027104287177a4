"""Issue 25, item 3: how long ``dropverify run TARGET --quick`` takes at the default shape, and
whether every statistical check gets samples under the quick profile (defined by calls, no time
budget).

Runs the command line as a user does (a fresh process: start-up and framework import included)
for ``torch:Dropout --param p=0.3`` and ``numpy:dropout``, ``REPEATS`` times each, and writes
reports/issue25/api.md: wall time, the child's CPU time (user + system, which other work on a
shared machine does not inflate as it does the wall time), the run's own seconds, the load
average before and after, and, from the run's JSON, the smallest sample count of any statistical
result and how many had none.

    PYTHONPATH=. python benchmarks/issue25_api.py [--repeats N] [--out reports/issue25/api.md]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

TARGETS = (["torch:Dropout", "--param", "p=0.3"], ["numpy:dropout"])
GOAL_S = 10.0


def measure(target: List[str], extra: List[str]) -> Dict[str, Any]:
    """One ``dropverify run TARGET --quick EXTRA`` in a fresh process: times, load and samples."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "r.md"
        argv = [sys.executable, "-m", "dropverify", "run", *target, "--quick", *extra, "--quiet", "--report",
                str(report)]
        load0 = os.getloadavg()[0]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        load1 = os.getloadavg()[0]
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        doc = json.loads(report.with_suffix(".json").read_text())
    stats = [r for r in doc["results"] if r.get("statistical")]
    empty = [r["check"] for r in stats if not r.get("n") or r.get("estimate") is None]
    verdicts: Dict[str, int] = {}
    for r in doc["results"]:
        verdicts[r["verdict"]] = verdicts.get(r["verdict"], 0) + 1
    run_s = next((float(line.rsplit(",", 1)[1].split()[0]) for line in proc.stdout.splitlines()
                  if line.startswith("OK") and line.endswith(" s")), float("nan"))
    return {"target": " ".join([*target, "--quick", *extra]), "wall": wall, "cpu": (after.ru_utime - before.ru_utime)
            + (after.ru_stime - before.ru_stime), "run_s": run_s, "load": (load0, load1),
            "statistical": len(stats), "min_n": min((r["n"] for r in stats if r.get("n")), default=0),
            "empty": empty, "verdicts": verdicts, "settings": doc["run"]["settings"]}


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default="reports/issue25/api.md")
    parser.add_argument("--also-max-calls", type=int, action="append", default=[],
                        help="also measure --quick --max-calls N (what a smaller quick profile would cost)")
    args = parser.parse_args(argv)
    extras = [[]] + [["--max-calls", str(n)] for n in args.also_max_calls]
    rows = [measure(t, e) for _ in range(args.repeats) for e in extras for t in TARGETS]
    s = rows[0]["settings"]
    lines = [
        "# Issue 25: `--quick` at the default shape",
        "",
        f"Command: `PYTHONPATH=. python benchmarks/issue25_api.py {shlex.join(argv or sys.argv[1:])}`".rstrip() + "",
        "",
        f"Each row is `dropverify run TARGET --quick --quiet --report R.md` in a fresh process (start-up and framework "
        f"import included) on a machine with {os.cpu_count()} CPU cores. The quick profile (dropverify.settings.PROFILES) "
        f"is bounded by calls: max_calls {s['max_calls']}, power {s['power']}, alpha {s['alpha']}, time budget "
        f"{s['time_budget_s']}, so its results do not depend on the machine's speed (only its times do). "
        "CPU is the child's user + system time; load is the 1-minute load average before / after the row "
        "(other work on the machine: the wall time is inflated by it, the CPU time much less).",
        "",
        "| target | wall s | CPU s | run s (its own line) | load before / after | statistical results | fewest samples | results without samples | verdicts |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| `{r['target']}` | {r['wall']:.1f} | {r['cpu']:.1f} | {r['run_s']:.1f} | "
                     f"{r['load'][0]:.2f} / {r['load'][1]:.2f} | {r['statistical']} | {r['min_n']} | "
                     f"{len(r['empty'])}{(': ' + ', '.join(r['empty'])) if r['empty'] else ''} | "
                     + ", ".join(f"{k} {v}" for k, v in sorted(r["verdicts"].items())) + " |")
    best = {t: min(r["cpu"] for r in rows if r["target"] == t) for t in {r["target"] for r in rows}}
    lines += ["", f"Goal: <= {GOAL_S:g} s on 2 idle cores. The CPU time is what the run needs of the machine (the wall "
              "time on an idle machine is at least that, one intra-op thread per framework); least CPU per row: "
              + ", ".join(f"`{t}` {v:.1f} s" for t, v in sorted(best.items())) + ". Within the goal in CPU time: "
              + (", ".join(f"`{t}`" for t, v in sorted(best.items()) if v <= GOAL_S) or "none") + "; over it: "
              + (", ".join(f"`{t}`" for t, v in sorted(best.items()) if v > GOAL_S) or "none") + "."]
    lines.append("Every statistical result got samples." if not any(r["empty"] for r in rows)
                 else "Some statistical results got NO samples (listed above).")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
