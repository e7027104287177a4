"""Time budget and hangs (issue 22, item 6): measured wall times and verdicts -> reports/issue22/budget.md.

``python -m benchmarks.issue22_budget [--out reports/issue22/budget.md]`` runs, on this machine:

1. ``dropverify run torch:Dropout --param p=0.3 --strict`` (default options: 45 s budget), with torch's
   default intra-op threads and with ``OMP_NUM_THREADS=1``: exit 0 means every check PASSes;
2. a layer sleeping 30 s per call with ``--time-budget 20`` (``benchmarks/issue22_budget_layers.py``):
   must end within 20 s + ``call_timeout_s`` (60 s), every check INCONCLUSIVE or PASS on what it saw;
3. a layer sleeping 30 s per call with ``call_timeout_s=3`` (Python API): a hang, an ERROR within 3 s;
and records the load average before and after each (other processes share the machine).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Tuple

ROOT = Path(__file__).resolve().parents[1]


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?"


def _cli(args: List[str], env_extra: dict) -> Tuple[int, float, str, str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), KERAS_BACKEND=os.environ.get("KERAS_BACKEND", "torch"), **env_extra)
    before = _load()
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dropverify.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    return proc.returncode, time.perf_counter() - t0, before, _load(), proc.stdout + proc.stderr


def _summary(text: str) -> List[str]:
    keep = [ln.rstrip() for ln in text.splitlines()
            if re.match(r"^(PASS|FAIL|INCONCLUSIVE|ERROR|OK|NOT OK)\b", ln.strip())]
    return [ln[:400] for ln in keep]


def _hang() -> Tuple[float, List[str]]:
    sys.path.insert(0, str(ROOT))
    os.environ["DV_SLEEP"] = "30"
    from dropverify.runner import verify
    from dropverify.settings import Settings
    from dropverify.targets.resolve import resolve_target
    specs = resolve_target(f"{ROOT / 'benchmarks' / 'issue22_budget_layers.py'}:slow_dropout", "dropout", {"p": 0.3})
    t0 = time.perf_counter()
    run = verify(specs, Settings(call_timeout_s=3.0, time_budget_s=20.0))
    wall = time.perf_counter() - t0
    counts = run.targets[0].counts()
    lines = [f"verdicts: {', '.join(f'{k}={v}' for k, v in counts.items() if v)}"]
    lines += sorted({r.message.split(' [')[0] for r in run.all_results()})[:4]
    return wall, lines


def main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.issue22_budget")
    ap.add_argument("--out", default="reports/issue22/budget.md")
    args = ap.parse_args(argv)
    out: List[str] = ["# Time budget and hangs (issue 22, item 6)", "",
                      f"Command: `python -m benchmarks.issue22_budget --out {args.out}` on {os.cpu_count()} CPU "
                      "core(s), shared with other processes (load average before/after each run below).", ""]

    rc, wall, lb, la, text = _cli(["run", "torch:Dropout", "--param", "p=0.3", "--strict"], {})
    out += ["## 1. A correct layer at default options", "",
            "`dropverify run torch:Dropout --param p=0.3 --strict` (45 s budget, default shape)", "",
            f"- exit status {rc} (0: every check PASS), wall {wall:.1f} s, load average {lb} -> {la}", "",
            "```", *_summary(text), "```", ""]

    rc, wall, lb, la, text = _cli(["run", "torch:Dropout", "--param", "p=0.3", "--strict"], {"OMP_NUM_THREADS": "1"})
    out += ["The same command with `OMP_NUM_THREADS=1` (torch's intra-op threads: on a machine whose cores are "
            "all busy, two threads per call of this small layer wait on each other):", "",
            f"- exit status {rc}, wall {wall:.1f} s, load average {lb} -> {la}", "",
            "```", *_summary(text)[:8], "```", ""]

    rc, wall, lb, la, text = _cli(["run", "benchmarks/issue22_budget_layers.py:slow_dropout", "--variant", "dropout",
                                   "--param", "p=0.3", "--time-budget", "20"], {"DV_SLEEP": "30"})
    out += ["## 2. A layer sleeping 30 s per call, `--time-budget 20`", "",
            "`DV_SLEEP=30 dropverify run benchmarks/issue22_budget_layers.py:slow_dropout --variant dropout "
            "--param p=0.3 --time-budget 20` (call_timeout_s 60 s: each call is slow, not hung)", "",
            f"- exit status {rc}, wall {wall:.1f} s (bound: 20 s + 60 s + start-up), load average {lb} -> {la}", "",
            "```", *_summary(text)[:12], "```", ""]

    lb = _load()
    wall, lines = _hang()
    out += ["## 3. A hung layer: 30 s per call, `call_timeout_s=3`, `time_budget_s=20` (Python API)", "",
            f"- wall {wall:.1f} s (bound: 3 s + start-up), load average {lb} -> {_load()}", "",
            "```", *lines, "```", ""]
    path = ROOT / args.out
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out), encoding="utf-8")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
