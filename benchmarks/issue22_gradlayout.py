"""Issue 22 item 2 ("layouts for real"): the gradient checks on every layout, measured.

Writes reports/issue22/gradlayout.md. The two gradient checks are exact (deterministic
comparisons, no alpha): their false-alarm rate is measured as the count of non-PASS rows on
correct references over seeds, variants, dtypes and layouts; their false-pass rate against (a)
the layout mutants of the corpus and (b) an adversary whose backward is off by just beyond the
tolerance at ONE element on non-contiguous layouts (and one just within it: what a PASS cannot
see). Last, the wall time the extra layout rows add to a default run of torch:Dropout.

    PYTHONPATH=. python -m benchmarks.issue22_gradlayout --seeds 200
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple

from scipy import stats as sps

from dropverify.checks import Settings
from dropverify.checks.gradients import FINITE_DIFF, FORWARD_MASK, _grad_tol
from dropverify.mutants import all_mutants, mutant_spec, reference_spec_for
from dropverify.report import write_atomic
from dropverify.runner import verify
from dropverify.targets import get_target, numpy_spec, reference_spec
from dropverify.variants import variant_names

GRAD = [FORWARD_MASK, FINITE_DIFF]
SMALL = (8, 6, 4, 5)           # 4-D (channels_last exists), no two axes alike
DTYPES = ("float16", "float32", "float64")
SEED0 = 220_000


def _rate(count: int, n: int) -> str:
    ci = sps.binomtest(count, n).proportion_ci(0.95, method="exact")
    return f"{count}/{n} (95 % CI {100 * ci.low:.2f}..{100 * ci.high:.2f} %)"


def _rows(spec, seed: int) -> List:
    return verify([spec], Settings(seed=seed), checks=GRAD).targets[0].results


def _tally(specs: Iterable, seeds: Sequence[int]) -> Tuple[Counter, Counter, List[str]]:
    """(rows per layout, non-PASS rows per layout, first few non-PASS messages)."""
    rows, bad, notes = Counter(), Counter(), []
    for spec in specs:
        for seed in seeds:
            for r in _rows(spec, seed):
                lay = r.check.partition("[")[2].rstrip("]") or "(whole check)"
                rows[lay] += 1
                if r.verdict != "PASS":
                    bad[lay] += 1
                    if len(notes) < 5:
                        notes.append(f"{spec.name} {spec.dtype} seed {seed}: {r.check} {r.verdict}: {r.message}")
    return rows, bad, notes


def _layout_table(title: str, rows: Counter, bad: Counter) -> List[str]:
    out = [f"| {title} | " + " | ".join(rows) + " |", "|---|" + "---|" * len(rows)]
    out.append("| non-PASS rows / rows | " + " | ".join(f"{bad[k]}/{rows[k]}" for k in rows) + " |")
    return out


def false_alarms(n: int) -> List[str]:
    lines = ["## False alarms: correct implementations, every layout and dtype", ""]
    seeds = range(SEED0, SEED0 + n)
    for name, make in (("numpy:dropout", lambda dt: reference_spec("dropout", shape=SMALL, dtype=dt)),
                       ("torch:Dropout", lambda dt: dataclasses.replace(get_target("torch:Dropout")[0], shape=SMALL,
                                                                         dtype=dt))):
        for dt in DTYPES:
            rows, bad, notes = _tally([make(dt)], seeds)
            lines += [f"**{name}, {dt}, probe {SMALL}, {n} seeds** ({SEED0}..): both gradient checks, "
                      f"non-PASS rows {_rate(sum(bad.values()), sum(rows.values()))}", ""]
            lines += _layout_table("layout", rows, bad) + [""] + [f"- {t}" for t in notes]
    few = range(SEED0, SEED0 + 3)
    specs = [reference_spec(v, dtype=dt) for v in variant_names() for dt in DTYPES]
    rows, bad, notes = _tally(specs, few)
    lines += [f"**Every numpy reference variant ({len(variant_names())}) x {len(DTYPES)} dtypes, default probe "
              f"shapes, 3 seeds:** non-PASS rows {_rate(sum(bad.values()), sum(rows.values()))}", ""]
    lines += _layout_table("layout", rows, bad) + [""] + [f"- {t}" for t in notes]
    torch_specs = [dataclasses.replace(s, dtype=dt) for name in _torch_names() for s in get_target(name)
                   for dt in DTYPES]
    rows, bad, notes = _tally(torch_specs, range(SEED0, SEED0 + 2))
    lines += [f"**Every torch built-in ({len(_torch_names())} names, {len(torch_specs) // len(DTYPES)} specs) x "
              f"{len(DTYPES)} dtypes, default probe shapes, 2 seeds:** non-PASS rows "
              f"{_rate(sum(bad.values()), sum(rows.values()))}", ""]
    lines += _layout_table("layout", rows, bad) + [""] + [f"- {t}" for t in notes]
    return lines


FRAMEWORK_TARGETS = ("jax:random.bernoulli", "flax:nnx.Dropout", "tf:nn.dropout", "keras:Dropout")


def framework_alarms() -> List[str]:
    """JAX, Flax, TF, Keras (run FIRST: TF is imported before torch, the order tf_compat expects)."""
    specs = [dataclasses.replace(s, dtype=dt, shape=SMALL) for name in FRAMEWORK_TARGETS
             for s in get_target(name) for dt in ("float32", "float64")]
    rows, bad, notes = _tally(specs, range(SEED0, SEED0 + 3))
    lines = [f"**{', '.join(FRAMEWORK_TARGETS)} (Keras on torch) x float32/64, probe {SMALL}, 3 seeds:** "
             f"non-PASS rows {_rate(sum(bad.values()), sum(rows.values()))}. On jax / TF the layout is the host "
             "array's only (their arrays have no strides); the row says so.", ""]
    return lines + _layout_table("layout", rows, bad) + [""] + [f"- {t}" for t in notes]


def _torch_names() -> List[str]:
    from dropverify.targets import target_names
    return list(target_names("torch"))


def mutant_kills(n: int) -> List[str]:
    lines = ["## The layout mutants: killed on every seed", "",
             "A kill row FAILs; the contiguous row is what the gradient checks saw before this change "
             "(contiguous probe only), so its PASS count is the old harness's false-pass count.", "",
             "| mutant | kill rows | FAIL (kill rows, all seeds) | contiguous rows PASS | reference: non-PASS rows |",
             "|---|---|---|---|---|"]
    for m in (m for m in all_mutants() if m.name in ("dropout_backward_mask_memory_order",
                                                      "torch_backward_mask_storage_order")):
        spec, ref = (dataclasses.replace(s, shape=SMALL) for s in (mutant_spec(m), reference_spec_for(m)))
        killed = contiguous = ref_bad = 0
        for seed in range(SEED0, SEED0 + n):
            got = {r.check: r.verdict for r in _rows(spec, seed)}
            killed += all(got[k] == "FAIL" for k in m.kills)
            contiguous += all(got[f"{c}[contiguous]"] == "PASS" for c in GRAD)
            ref_bad += sum(r.verdict != "PASS" for r in _rows(ref, seed))
        lines.append(f"| `{m.name}` | {', '.join(f'`{k}`' for k in m.kills)} | {_rate(killed, n)} | "
                     f"{contiguous}/{n} | {ref_bad} |")
    return lines


def adversary(n: int) -> List[str]:
    from dropverify.mutants._layouts import OneElementOffOffContiguous as Adv
    lines = ["", "## One element off by just beyond / within the tolerance (non-contiguous layouts only)", "",
             "`OneElementOffOffContiguous`: backward moves one kept element's gradient by delta * max(|dx|, 1) "
             "when grad_out is not C-contiguous. The tolerance of `gradient_uses_forward_mask` is 10x the dtype's "
             "few-roundings bound (float64 1e-9, float32 1e-4).", "",
             "| dtype | delta | forward-mask rows FAIL [transposed] / [strided] | [contiguous] FAIL | "
             "finite-difference rows FAIL (any layout) |", "|---|---|---|---|---|"]
    for dt in ("float64", "float32"):
        tol = _grad_tol(dt) * 10
        for delta in (2 * tol, tol / 2):
            spec = numpy_spec("adversary", "dropout", lambda prm, d=delta: Adv(p=prm["p"], delta=d), {"p": 0.5},
                              shape=SMALL, dtype=dt)
            fails: Dict[str, int] = Counter()
            for seed in range(SEED0, SEED0 + n):
                for r in _rows(spec, seed):
                    fails[r.check] += r.verdict == "FAIL"
            fd = sum(v for k, v in fails.items() if k.startswith(FINITE_DIFF))
            lines.append(f"| {dt} | {delta:g} ({'2x' if delta > tol else '0.5x'} tol) | "
                         f"{fails[f'{FORWARD_MASK}[transposed]']}/{n} / {fails[f'{FORWARD_MASK}[strided]']}/{n} | "
                         f"{fails[f'{FORWARD_MASK}[contiguous]']}/{n} | {fd}/{3 * n} |")
    return lines


def timing() -> List[str]:
    (spec,) = get_target("torch:Dropout")
    t0 = time.perf_counter()
    run = verify([spec], Settings(seed=20261126))
    wall = time.perf_counter() - t0
    res = run.targets[0].results
    grad = [r for r in res if r.check.startswith(("gradient_uses", "gradient_matches"))]
    extra = sum(r.seconds for r in grad if not r.check.endswith("[contiguous]"))
    base = sum(r.seconds for r in grad if r.check.endswith("[contiguous]"))
    verdicts = Counter(r.verdict.value for r in res)
    lines = ["", "## Wall time: torch:Dropout, default shape " f"{spec.probe_shape()}, default settings", "",
             f"Whole run (every check, seed 20261126): {wall:.1f} s wall, verdicts {dict(verdicts)}. Gradient rows: "
             f"contiguous {base:.2f} s, the added layouts {extra:.2f} s "
             f"({100 * extra / wall:.1f} % of the run).", "", "| row | verdict | seconds |", "|---|---|---|"]
    lines += [f"| `{r.check}` | {r.verdict.value} | {r.seconds:.3f} |" for r in grad]
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.issue22_gradlayout")
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--no-frameworks", action="store_true", help="skip jax / flax / tf / keras")
    parser.add_argument("--out", default="reports/issue22/gradlayout.md")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    n = args.seeds
    cmd = "python -m benchmarks.issue22_gradlayout " + " ".join(sys.argv[1:] if argv is None else argv)
    lines = ["# Issue 22 item 2: gradient checks on every layout", "",
             f"Written by `{cmd.strip()}`. The gradient checks are exact (no alpha): a row FAILs when "
             "one gradient element is off by more than the tolerance, so the measurement is the count of non-PASS "
             "rows on correct implementations (false alarms) and the count of PASS rows on the layout mutants and "
             "on an adversary just beyond the tolerance (false passes). Counts with exact 95 % intervals.", ""]
    others = [] if args.no_frameworks else framework_alarms()
    lines += false_alarms(n) + others
    lines += mutant_kills(n)
    lines += adversary(n)
    lines += timing()
    lines += ["", f"Wall time of this script: {time.perf_counter() - started:.0f} s."]
    write_atomic(Path(args.out), "\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
