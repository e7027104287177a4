"""Issue 25, item 1: harness overhead and wall time, this tree against another (main), side by side.

Each measurement runs in a fresh child process with ``PYTHONPATH`` set to one tree; the two trees
alternate, so both see the same machine load. Reported per run: wall seconds, CPU seconds of the
child (``resource.getrusage``: every thread, the target thread included), the seconds spent inside
the targets' own calls (measured in the target thread around each call), and a fingerprint of the
results (check, verdict, estimate, p-value, n) that must be the same in both trees.

    python -m benchmarks.issue25_perf --base /work/main --out reports/issue25/perf.md
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parents[1]

CHILD = r'''
import json, resource, sys, time
kind, arg = sys.argv[1], sys.argv[2]
from dropverify.checks import _worker
from dropverify.runner import verify
from dropverify.settings import Settings
t0, c0 = time.perf_counter(), time.process_time()
if kind == "references":
    from dropverify.targets import reference_targets
    specs, settings = reference_targets(), Settings(seed=1, max_calls=int(arg))
else:
    from dropverify.targets.resolve import resolve_target
    specs, settings = resolve_target(kind, None, {"p": float(arg)}, None), Settings(seed=1)
_worker.reset_target_time()
per_check = {}
if len(sys.argv) > 3:  # CPU seconds of each check's own thread work (the statistics), summed over configurations
    from dropverify.checks import engine
    _run_check = engine.run_check
    def timed(check, ctx, job=None):
        c = time.thread_time()
        try:
            return _run_check(check, ctx, job)
        finally:
            per_check[check.name] = per_check.get(check.name, 0.0) + time.thread_time() - c
    engine.run_check = timed
t1, c1 = time.perf_counter(), time.process_time()
run = verify(specs, settings)
wall, cpu = time.perf_counter() - t1, time.process_time() - c1
spent = _worker.target_time()
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall": wall, "cpu": cpu, "setup": t1 - t0, "target": sum(s for _, s in spent.values()),
                  "forward": spent.get("forward", (0, 0.0))[0], "per_check": per_check,
                  "fingerprint": [[r.target, r.check, r.verdict, repr(r.estimate), repr(r.p_value), r.n]
                                  for r in run.all_results()]}))
'''


def child(tree: Path, *args: str) -> Dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree), "KERAS_BACKEND": "torch", "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, env=env,
                          cwd=str(tree), check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cli_verify(tree: Path, out: Path) -> Dict[str, Any]:
    """``dropverify verify --reference`` as ``make verify`` runs it (a fresh process, imports and
    report writing included): wall and CPU seconds of the process (all its threads)."""
    import resource
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "dropverify", "verify", "--reference", "--seed", "20261126", "--time-budget", "0",
           "--out", str(out), "--quiet"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(tree))
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "rc": proc.returncode}


def same_reports(a: Path, b: Path) -> List[str]:
    """Files the run into ``a`` wrote that differ from (or are missing in) ``b``, the harness fingerprint aside (it hashes the
    harness's source, so it differs between two trees by construction); timings.json is left out
    (untracked: it holds the machine and the timings)."""
    from dropverify.provenance import report_fingerprint
    marks = {report_fingerprint((d / "index.md").read_text(encoding="utf-8")) for d in (a, b)} - {None}
    differ = []
    names = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())  # what ``a``'s run wrote
    for name in names:
        if name == "timings.json":
            continue
        pa, pb = a / name, b / name
        if not (pa.exists() and pb.exists()):
            differ.append(name)
            continue
        da, db = pa.read_bytes(), pb.read_bytes()
        for mark in marks:  # each tree's own fingerprint, and nothing else, is masked
            da, db = da.replace(mark.encode(), b"FINGERPRINT"), db.replace(mark.encode(), b"FINGERPRINT")
        if da != db:
            differ.append(name)
    return differ


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.issue25_perf")
    parser.add_argument("--base", default="/work/main", help="the tree to compare with (default %(default)s)")
    parser.add_argument("--out", default="reports/issue25/perf.md")
    parser.add_argument("--max-calls", type=int, default=2000, help="max_calls of the overhead runs (make bench's)")
    parser.add_argument("--skip-cli", action="store_true", help="skip the two `verify --reference` runs")
    args = parser.parse_args(argv)
    base, this = Path(args.base).resolve(), ROOT
    trees = (("before (" + str(base) + ")", base), ("after (this tree)", this))
    load0 = os.getloadavg()
    started = time.perf_counter()
    rows: Dict[str, Dict[str, Dict[str, Any]]] = {"references": {}, "torch": {}, "cli": {}}
    for label, tree in trees:  # alternating: same load for both
        rows["references"][label] = child(tree, "references", str(args.max_calls))
        rows["torch"][label] = child(tree, "torch:Dropout", "0.3")
    per_check = child(this, "references", str(args.max_calls), "per-check")["per_check"]
    import tempfile
    outs = {}
    if not args.skip_cli:
        for label, tree in trees:
            outs[label] = Path(tempfile.mkdtemp(prefix="dv-issue25-")) / "reports"
            rows["cli"][label] = cli_verify(tree, outs[label])
    load1 = os.getloadavg()
    cmd = "python -m benchmarks.issue25_perf " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = ["# Issue 25, item 1: harness overhead, before and after, side by side", "",
             f"Command: `{cmd}` (cwd: the repository root). Each figure is one run in a fresh child process "
             "with PYTHONPATH set to its tree; the two trees ran alternately on the same machine, "
             f"{os.cpu_count()} CPU cores, load average (1, 5, 15 min) {', '.join(f'{v:.1f}' for v in load0)} at "
             f"the start and {', '.join(f'{v:.1f}' for v in load1)} at the end: **the machine was loaded** "
             "(other sessions' work), so compare the ratios within a row, not the absolute seconds with idle "
             "figures. CPU seconds are the child's (all its threads).", "",
             f"## `verify(reference_targets(), Settings(seed=1, max_calls={args.max_calls}))` (make bench's run)", "",
             "| tree | wall s | CPU s | target s | overhead (1 - target / wall) | harness CPU share "
             "((CPU - target) / CPU) | forward calls | results identical |", "|---|---|---|---|---|---|---|---|"]
    fp0 = None
    for key in ("references", "torch"):
        if key == "torch":
            lines += ["", "## `torch:Dropout`, p = 0.3, default shape, `Settings(seed=1)` (every check, no time "
                      "budget: the same work whatever the load)", "",
                      "| tree | wall s | CPU s | target s | wall / target | harness CPU share | forward calls | "
                      "results identical |", "|---|---|---|---|---|---|---|---|"]
        fp0 = None
        for label, _ in trees:
            r = rows[key][label]
            fp0 = r["fingerprint"] if fp0 is None else fp0
            same = "yes" if r["fingerprint"] == fp0 else "**NO**"
            ratio = (f"{100 * (1 - r['target'] / r['wall']):.1f} %" if key == "references"
                     else f"{r['wall'] / max(r['target'], 1e-9):.2f}x")
            lines.append(f"| {label} | {r['wall']:.1f} | {r['cpu']:.1f} | {r['target']:.1f} | {ratio} | "
                         f"{100 * max(r['cpu'] - r['target'], 0) / max(r['cpu'], 1e-9):.1f} % | {r['forward']} | "
                         f"{same} ({len(r['fingerprint'])} results) |")
        a, b = (rows[key][label] for label, _ in trees)
        lines += ["", f"After / before: wall {b['wall'] / a['wall']:.2f}, CPU {b['cpu'] / a['cpu']:.2f}."]
    if rows["cli"]:
        lines += ["", "## `dropverify verify --reference --seed 20261126 --time-budget 0` (make verify's command, "
                  "a fresh process: imports and report writing included)", "",
                  "| tree | wall s | CPU s (all threads) | exit |", "|---|---|---|---|"]
        for label, _ in trees:
            r = rows["cli"][label]
            lines.append(f"| {label} | {r['wall']:.1f} | {r['cpu']:.1f} | {r['rc']} |")
        a, b = (rows["cli"][label] for label, _ in trees)
        differ = same_reports(*(outs[label] for label, _ in trees))
        lines += ["", f"After / before: wall {b['wall'] / a['wall']:.2f}, CPU {b['cpu'] / a['cpu']:.2f}. "
                  f"Reports written by the two trees, byte for byte (the harness fingerprint aside, which hashes "
                  f"the source and so differs by construction; timings.json left out): "
                  + ("**identical**" if not differ else f"**differ: {', '.join(differ)}**") + "."]
    total = sum(per_check.values())
    lines += ["", f"## Where the harness's CPU goes (this tree, the references run above once more)", "",
              "CPU seconds of each check's own work (`time.thread_time()` around `engine.run_check`: the thread "
              "that runs the check's statistics; the target's calls run in the target thread and are not "
              f"counted), summed over the 18 configurations: {total:.1f} s in all.", "",
              "| check | CPU s | share |", "|---|---|---|"]
    for name, sec in sorted(per_check.items(), key=lambda kv: -kv[1])[:12]:
        lines.append(f"| `{name}` | {sec:.1f} | {100 * sec / max(total, 1e-9):.0f} % |")
    lines += ["", f"Benchmark wall time: {time.perf_counter() - started:.0f} s."]
    out = ROOT / args.out if not Path(args.out).is_absolute() else Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
