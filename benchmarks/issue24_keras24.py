"""Issue 24: the measured error rates of the NNX scan's exact check ``site_rng_advances_between_calls``.

Writes reports/issue24/keras24.md: over SEEDS seeds, its false-alarm rate on a correct NNX module
(``nnx.Dropout`` with its own advancing stream, ``examples/scan/nnx_models.py`` MLP) and its false-pass
rate on the adversary just beyond what a PASS certifies (the same module called with a fresh
``nnx.Rngs(dropout=seed)`` per call: a key that never advances), and how often it is judged at all.
The analytic bound: two independent dropped sets of n elements at rate p coincide with probability
(p^2 + (1 - p)^2)^n; the check judges only where that is <= 1e-9 (its false-alarm bound).

    PYTHONPATH=. python -m benchmarks.issue24_keras24 [--seeds 200]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _verdict(model, x) -> str:
    from dropverify.modelscan import layer_sites, nnx_scan
    pairs, _ = nnx_scan.record_passes(model, (x,), {}, 0, "probe")
    site = pairs[0][0]
    result = layer_sites.rng_advances(site, "dropout", "the model's RngStreams")
    return "NOT JUDGED" if result.details.get("judged") is False else result.verdict


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=200)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "examples" / "scan"))
    import jax.numpy as jnp
    from flax import nnx
    import nnx_models as M
    from benchmarks.long_horizon import rate_text
    from dropverify.report import write_atomic

    class FreshKeyS(M.MLP):
        seed = 0

        def __call__(self, x):
            return self.fc2(self.drop(nnx.relu(self.fc1(x)), rngs=nnx.Rngs(dropout=self.seed)))

    start = time.perf_counter()
    counts = {"correct": {}, "fresh": {}}
    for s in range(args.seeds):
        x = jnp.asarray(np.random.default_rng(s).standard_normal((8, 16)).astype(np.float32))
        rngs = nnx.Rngs(params=s, dropout=10_000 + s)
        good = M.MLP(nnx.Dropout(0.3, rngs=rngs), rngs=rngs)
        bad = FreshKeyS(nnx.Dropout(0.3), rngs=nnx.Rngs(params=s))
        bad.seed = s
        for name, model in (("correct", good), ("fresh", bad)):
            v = _verdict(model, x)
            counts[name][v] = counts[name].get(v, 0) + 1
    n = args.seeds
    chance = (0.3 ** 2 + 0.7 ** 2) ** (8 * 32)
    lines = ["# Issue 24: `site_rng_advances_between_calls` (NNX scan) — measured error rates", "",
             f"Command: `PYTHONPATH=. python -m benchmarks.issue24_keras24 --seeds {n}` "
             f"({time.perf_counter() - start:.0f} s).", "",
             "Module: `examples/scan/nnx_models.py` MLP, Linear(16, 32) -> nnx.Dropout(0.3) -> Linear(32, 4), "
             "input (8, 16) standard normal per seed: the site sees n = 256 elements, so two independent dropped "
             f"sets coincide with probability (0.3^2 + 0.7^2)^256 = {chance:.2g} (<= 1e-9: judged).", "",
             "| module | FAIL | PASS | not judged | rate |", "|---|---|---|---|---|",
             f"| correct (own stream, advances) | {counts['correct'].get('FAIL', 0)} | "
             f"{counts['correct'].get('PASS', 0)} | {counts['correct'].get('NOT JUDGED', 0)} | false alarm "
             f"{rate_text(counts['correct'].get('FAIL', 0), n)} |",
             f"| adversary (fresh nnx.Rngs(dropout=seed) per call) | {counts['fresh'].get('FAIL', 0)} | "
             f"{counts['fresh'].get('PASS', 0)} | {counts['fresh'].get('NOT JUDGED', 0)} | false pass "
             f"{rate_text(counts['fresh'].get('PASS', 0), n)} |", "",
             "What it can see: a site whose key does not advance between the two training passes of a scan (the "
             "same dropped set in both). What it cannot: a key that advances between those passes but repeats "
             "elsewhere (the in-situ `masks_never_repeat_by_hash` judges the layer's own stream), or a site too small "
             "for a repeat to be improbable (then it says 'not judged').", ""]
    out = ROOT / "reports" / "issue24" / "keras24.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
