"""Issue 25, item 1, second pass: CPU of `verify --reference` and of `run torch:Dropout`, this tree
against others (main, and the integration branch this work started from), results compared byte for byte.

Every (tree, command) runs in a fresh child process with ``PYTHONPATH`` set to its tree, ALL AT ONCE
(so every tree sees the same machine load); the CPU seconds are the child's own (``os.wait4``'s
rusage: user + system, every thread), not wall time (the machine is shared). The reports each run
writes are compared with this tree's (every *.md / *.json, the harness fingerprint line aside,
timings.json left out; PNGs listed separately).

    python -m benchmarks.issue25_perf2 --tree main=/work/main --tree base=/tmp/pf2/base \
        --out reports/issue25/perf2.md
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "verify --reference": ["verify", "--reference", "--seed", "20261126", "--time-budget", "0"],
    "run torch:Dropout p=0.3": ["run", "torch:Dropout", "--param", "p=0.3", "--time-budget", "0", "--quiet"],
}


def _strip(path: Path) -> List[str]:
    return [ln for ln in path.read_text().splitlines()
            if "fingerprint" not in ln.lower() and '"harness": ' not in ln]


def compare(a: Path, b: Path, only_a: bool = False) -> Tuple[str, str]:
    """(md/json verdict, png verdict) of two report folders (``only_a``: the files ``a`` holds)."""
    names = sorted({p.name for d in ((a,) if only_a else (a, b)) for p in d.glob("*.*")
                    if p.suffix in (".md", ".json")} - {"timings.json"})
    bad = [n for n in names if not ((a / n).exists() and (b / n).exists()) or _strip(a / n) != _strip(b / n)]
    pngs = sorted({p.relative_to(d) for d in ((a,) if only_a else (a, b)) for p in d.rglob("*.png")})
    pbad = [str(n) for n in pngs if not ((a / n).exists() and (b / n).exists())
            or (a / n).read_bytes() != (b / n).read_bytes()]
    md = f"identical ({len(names)} files)" if not bad else f"DIFFER: {', '.join(bad[:6])}{' ...' if len(bad) > 6 else ''}"
    png = f"identical ({len(pngs)} PNGs)" if not pbad else f"{len(pbad)} of {len(pngs)} PNGs differ"
    return md, png


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.issue25_perf2")
    ap.add_argument("--tree", action="append", default=[], help="NAME=PATH of a tree to compare with (repeatable)")
    ap.add_argument("--work", default="/tmp/pf2/bench", help="folder for the runs' reports")
    ap.add_argument("--out", default="reports/issue25/perf2.md")
    ap.add_argument("--per-check", action="append", default=[],
                    help="tree NAME whose per-check CPU to measure too (repeatable; 'this tree' last)")
    args = ap.parse_args(argv)
    trees: Dict[str, Path] = dict((t.split("=", 1)[0], Path(t.split("=", 1)[1])) for t in args.tree)
    trees["this tree"] = ROOT
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()
    start = time.time()
    procs = {}
    for cname, cargs in COMMANDS.items():
        for tname, tree in trees.items():
            out = work / f"{cname.split()[0]}-{tname.replace(' ', '_')}"
            env = dict(os.environ, PYTHONPATH=str(tree), KERAS_BACKEND="torch")
            # cwd: a neutral folder (with `-m` the cwd comes first on sys.path, before PYTHONPATH)
            p = subprocess.Popen([sys.executable, "-m", "dropverify.cli", *cargs, "--out", str(out)], cwd=str(work),
                                 env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs[p.pid] = (cname, tname, out, time.time())
    from benchmarks.issue25_perf import CHILD
    checks = {}
    for tname in args.per_check:
        env = dict(os.environ, PYTHONPATH=str(trees[tname]), KERAS_BACKEND="torch")
        checks[tname] = subprocess.Popen([sys.executable, "-c", CHILD, "references", "2000", "per-check"], cwd=str(work),
                                         env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    res: Dict[Tuple[str, str], Tuple[float, float, int, Path]] = {}
    while procs:
        pid, status, ru = os.wait4(-1, 0)
        if pid not in procs:
            continue
        cname, tname, out, t0 = procs.pop(pid)
        res[(cname, tname)] = (ru.ru_utime + ru.ru_stime, time.time() - t0, os.waitstatus_to_exitcode(status), out)
    import json
    per = {t: json.loads(p.communicate()[0].strip().splitlines()[-1]) for t, p in checks.items()}
    load1 = os.getloadavg()
    lines = ["# Issue 25, item 1, second pass: CPU of the checks' own statistics, before and after", "",
             f"Command: `{' '.join(['python -m benchmarks.issue25_perf2'] + (argv if argv is not None else sys.argv[1:]))}` "
             f"(cwd: the repository root). Trees: " + ", ".join(f"{k} = `{v}`" for k, v in trees.items()) + ". "
             f"All {len(res)} runs at once, each a fresh child process; CPU seconds are the child's (user + system, every "
             f"thread, `os.wait4`). Load average (1, 5, 15 min) {', '.join(f'{x:.1f}' for x in load0)} at the start and "
             f"{', '.join(f'{x:.1f}' for x in load1)} at the end, 2 CPU cores: **the machine was loaded** (other sessions' "
             f"work), so compare CPU seconds within a row; wall seconds are shown but mean little.", ""]
    for cname, cargs in COMMANDS.items():
        mine = res[(cname, "this tree")]
        lines += [f"## `dropverify {' '.join(cargs)} --out DIR`", "",
                  "| tree | CPU s | wall s | exit | CPU / this tree's | reports vs this tree's (md, json) | PNGs vs this tree's |",
                  "|---|---|---|---|---|---|---|"]
        for tname in trees:
            cpu, wall, rc, out = res[(cname, tname)]
            md, png = compare(out, mine[3]) if tname != "this tree" else ("-", "-")
            lines.append(f"| {tname} | {cpu:.1f} | {wall:.1f} | {rc} | {cpu / mine[0]:.2f} | {md} | {png} |")
        if cname.startswith("verify"):
            md, png = compare(mine[3], ROOT / "reports", only_a=True)
            lines += ["", f"This tree's reports against the committed `reports/` (the integration branch's): {md}; {png}."]
        lines.append("")
    if per:
        names = list(per)
        top = sorted(per[names[0]]["per_check"], key=lambda c: -per[names[0]]["per_check"][c])[:10]
        same = all(per[t]["fingerprint"] == per[names[0]]["fingerprint"] for t in names)
        lines += ["## CPU of each check's own work (the statistics' thread)", "",
                  "`verify(reference_targets(), Settings(seed=1, max_calls=2000))` (make bench's run) in a fresh child per "
                  "tree, run alongside the above: `time.thread_time()` around `engine.run_check`, summed over the 18 "
                  "configurations (benchmarks/issue25_perf.py's child; the target's calls run in the target thread, "
                  f"not counted). Results (check, verdict, estimate, p-value, n of every result) identical across "
                  f"these trees: **{'yes' if same else 'NO'}** ({len(per[names[0]]['fingerprint'])} results).", "",
                  "| check | " + " | ".join(f"{t} CPU s" for t in names) + " | this tree / " + names[0] + " |",
                  "|---|" + "---|" * (len(names) + 1)]
        for c in top + ["(all checks)"]:
            v = [sum(per[t]["per_check"].values()) if c == "(all checks)" else per[t]["per_check"].get(c, 0.0) for t in names]
            lines.append(f"| `{c}` | " + " | ".join(f"{x:.2f}" for x in v) + f" | {v[-1] / max(v[0], 1e-9):.2f} |")
        lines += ["", "Process CPU s of these children: " + ", ".join(f"{t} {per[t]['cpu']:.1f}" for t in names) + ".", ""]
    lines.append(f"Benchmark wall time: {time.time() - start:.0f} s.")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
