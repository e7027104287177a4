"""`make bench`: throughput of the reference variants and of the harness, measured side by side.

Timing on shared machines is noisy, so every comparison is a ratio measured in one run
(best of several repeats). Writes reports/bench.md.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Callable, List, Tuple

import numpy as np

from dropverify.checks import Settings
from dropverify.contracts import all_contracts
from dropverify.report import write_atomic
from dropverify.runner import verify
from dropverify.targets import reference_spec
from dropverify.variants import variant_class


def best_of(fn: Callable[[], object], repeats: int = 5, number: int = 3) -> float:
    """Best mean wall time of ``number`` calls over ``repeats`` repeats, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return best


def naive_dropblock(x: np.ndarray, rng: np.random.Generator, gamma: float, bs: int) -> np.ndarray:
    """The textbook loop over block seeds (what the reference must NOT do), for comparison."""
    n, c, h, w = x.shape
    seeds = rng.random((n, c, h - bs + 1, w - bs + 1)) < gamma
    mask = np.ones_like(x, dtype=bool)
    for i, j, a, b in zip(*np.nonzero(seeds)):
        mask[i, j, a:a + bs, b:b + bs] = False
    kept = mask.sum()
    return np.where(mask, x * (mask.size / max(kept, 1)), 0)


def variant_rows(shape_by_variant) -> List[Tuple[str, str, float, float]]:
    rows = []
    for c in all_contracts():
        shape = shape_by_variant.get(c.name, c.default_shape)
        layer = variant_class(c.name)(seed=0)
        inputs = c.probe_inputs(shape, np.random.default_rng(0), np.float32)
        seconds = best_of(lambda: layer.forward(*inputs))
        elements = int(np.prod(np.shape(inputs[0])))
        rows.append((c.name, str(tuple(np.shape(inputs[0]))), seconds * 1e3, elements / seconds / 1e6))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run")
    parser.add_argument("--out", default="reports/bench.md")
    args = parser.parse_args(argv)
    lines = ["# dropverify benchmarks", "", "Best of 5 repeats; compare ratios within this file only (noisy machine).",
             "", "## Reference variants: forward, float32", "",
             "| variant | input shape | ms per call | M elements / s |", "|---|---|---|---|"]
    for name, shape, ms, rate in variant_rows({}):
        lines.append(f"| `{name}` | {shape} | {ms:.3f} | {rate:.1f} |")
    x = np.random.default_rng(0).random((32, 64, 56, 56)).astype(np.float32)
    db = variant_class("dropblock_2d")(p=0.1, block_size=7, seed=0)
    gamma = float(db.contract.extra["gamma"](db.params, x.shape))
    vec = best_of(lambda: db.forward(x), repeats=3, number=1)
    naive = best_of(lambda: naive_dropblock(x, np.random.default_rng(0), gamma, 7), repeats=3, number=1)
    lines += ["", "## DropBlock: vectorised reference vs a loop over block seeds", "",
              "Input (32, 64, 56, 56), block_size 7, p 0.1 (ResNet stage-3 size).", "",
              "| implementation | seconds per call | ratio |", "|---|---|---|",
              f"| reference (separable box-OR over the block offsets) | {vec:.3f} | 1.0 |",
              f"| loop over seeds | {naive:.3f} | {naive / vec:.1f}x slower |"]
    lines += ["", "## Harness: one default-settings verification per reference variant", "",
              "| variant | seconds | statistical results | samples drawn (calls, summed) |", "|---|---|---|---|"]
    for c in all_contracts():
        t0 = time.perf_counter()
        run = verify([reference_spec(c.name)], Settings(seed=1))
        seconds = time.perf_counter() - t0
        stat = [r for r in run.all_results() if r.statistical]
        calls = sum(int(r.details.get("calls", r.details.get("steps", 0)) or 0) for r in stat)
        lines.append(f"| `{c.name}` | {seconds:.2f} | {len(stat)} | {calls} |")
    text = "\n".join(lines) + "\n"
    write_atomic(Path(args.out), text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
