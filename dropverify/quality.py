"""How good is the harness? Kill table, measured false-alarm rates, power curves.

``python -m dropverify.quality`` (``make quality``) writes ``reports/quality.md`` with:

1. the mutant kill table (dropverify.mutants): every mutant, the check that must FAIL it,
   the verdict and the samples to detection;
2. calibration: each statistical check family run alone at the default settings on a
   correct reference under many seeds; the measured false-alarm rate (Clopper-Pearson CI)
   at several nominal levels, read off the check's sequential p-value, and its histogram;
3. power: detection probability against deviation size for the drop-rate and expectation
   checks, measured, beside the power of the optimal fixed-sample test at the same alpha
   and the check's final sample size.
"""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from scipy import stats as sps

from .settings import DEFAULT_SEED, Settings
from .report import write_atomic
from .runner import verify
from .targets import numpy_spec, reference_spec


@dataclass(frozen=True)
class Family:
    """One statistical check family on one correct reference configuration."""

    check: str
    variant: str
    params: Mapping[str, Any]
    shape: Tuple[int, ...]


FAMILIES: Tuple[Family, ...] = (
    Family("drop_rate_matches_by_binomial", "dropout", {"p": 0.3}, (16, 8, 4, 4)),
    Family("drop_rate_matches_by_binomial", "dropout", {"p": 0.001}, (64, 32, 8, 8)),
    Family("drop_rate_per_position_by_binomial", "dropout", {"p": 0.3}, (16, 8, 4, 4)),
    Family("masks_independent_at_flat_offsets_by_fisher", "dropout", {"p": 0.3}, (16, 8, 4, 4)),
    Family("expectation_matches_by_t_test", "dropout", {"p": 0.3}, (16, 8, 4, 4)),
    Family("expectation_matches_by_t_test", "alpha_dropout", {"p": 0.2}, (16, 8, 4, 4)),
    Family("variance_matches_by_t_test", "gaussian_dropout", {"p": 0.3}, (16, 8, 4, 4)),
    Family("masks_independent_along_axes_by_fisher", "spatial_dropout_2d", {"p": 0.3}, (16, 8, 4, 4)),
    Family("masks_fresh_across_calls_by_fisher", "dropout", {"p": 0.3}, (16, 8, 4, 4)),
    Family("masks_independent_across_seeds_by_fisher", "gaussian_dropout", {"p": 0.3}, (16, 8, 4, 4)),
    Family("seed_streams_do_not_overlap_by_fisher", "dropout", {"p": 0.3}, (16, 8, 4, 4)),
    Family("drop_map_matches_theory_by_binomial", "dropblock_2d", {"p": 0.2, "block_size": 3}, (8, 4, 9, 7)),
    Family("gamma_matches_by_binomial", "dropblock_2d", {"p": 0.2, "block_size": 3}, (64, 16, 9, 7)),
    Family("block_rate_matches_by_t_test", "dropblock_2d", {"p": 0.2, "block_size": 3}, (8, 4, 9, 7)),
    Family("masks_fresh_across_calls_by_fisher", "dropblock_2d", {"p": 0.2, "block_size": 3}, (8, 4, 9, 7)),
    Family("expected_depth_matches_by_t_test", "stochastic_depth_network", {"p": 0.5, "num_blocks": 8}, (64, 8)),
    # batch 1 and a rare outcome: the regime where a t-test on observed per-call rates false-alarmed
    Family("drop_rate_per_position_by_binomial", "dropout", {"p": 0.02}, (1, 32, 8, 8)),
    # input dependence: element-wise, units that share a draw (5 |x| bins), continuous noise
    Family("drop_rate_independent_of_input_by_stratum", "dropout", {"p": 0.3}, (16, 8, 4, 4)),
    Family("drop_rate_independent_of_input_by_stratum", "spatial_dropout_2d", {"p": 0.3}, (16, 16, 2, 2)),
    Family("drop_rate_independent_of_input_by_stratum", "gaussian_dropout", {"p": 0.3}, (16, 8, 4, 4)),
)
LEVELS = (0.001, 0.01, 0.05, 0.2)


def _calibration_chunk(family: Family, seeds: Sequence[int]) -> Tuple[List[float], int]:
    """Adjusted p-values and FAIL count of one family over the given seeds (a worker's share)."""
    spec = reference_spec(family.variant, family.params, shape=family.shape)
    p_values: List[float] = []
    fails = 0
    for seed in seeds:
        run = verify([spec], Settings(seed=seed), checks=[family.check])
        for r in run.all_results():
            if r.statistical:
                if r.verdict == "ERROR":
                    raise RuntimeError(f"calibration run errored: {r.message}")
                p_values.append(float(r.p_adjusted))
                fails += r.verdict == "FAIL"
    return p_values, fails


def _kill_row(index: int, seed: int) -> Dict[str, Any]:
    from .mutants import all_mutants, evaluate
    return evaluate(all_mutants()[index], Settings(seed=seed))


def _map(fn: Any, jobs: Sequence[Tuple[Any, ...]], workers: int) -> List[Any]:
    """``[fn(*job) for job in jobs]``, in ``workers`` processes when more than one (the same list:
    every job is a pure function of its arguments)."""
    if workers <= 1:
        return [fn(*job) for job in jobs]
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(fn, *zip(*jobs))) if jobs else []


def kill_rows(seed: int, workers: int = 1) -> List[Dict[str, Any]]:
    """The mutant kill table (every mutant, every check, default settings), in corpus order,
    computed in ``workers`` processes (the rows do not depend on it)."""
    from .mutants import all_mutants
    return _map(_kill_row, [(i, seed) for i in range(len(all_mutants()))], workers)


def calibrate(family: Family, seeds: int, base_seed: int, workers: int = 1) -> Dict[str, Any]:
    """Run one check family alone under ``seeds`` seeds at the default settings (in ``workers``
    processes; the seeds, hence the results, do not depend on it); return its p-values and the
    measured false-alarm rate at each nominal level (with CIs)."""
    start = time.perf_counter()
    all_seeds = [base_seed + i for i in range(seeds)]
    chunks = max(1, workers)
    parts = _map(_calibration_chunk, [(family, all_seeds[k::chunks]) for k in range(chunks)], workers)
    p_values = [p for part, _ in parts for p in part]
    fails = sum(f for _, f in parts)
    p = np.asarray(p_values)
    rates = {}
    for level in LEVELS:
        k = int(np.sum(p <= level))
        ci = sps.binomtest(k, p.size, level).proportion_ci(0.95, method="exact")
        above = sps.binomtest(k, p.size, level, alternative="greater").pvalue
        rates[level] = {"count": k, "rate": k / p.size, "ci": (ci.low, ci.high), "p_excess": above}
    return {"family": family, "runs": seeds, "results": int(p.size), "fails_at_default": fails,
            "p_values": p, "rates": rates, "seconds": time.perf_counter() - start}


# ------------------------------------------------------------------------------ false passes

def _adversaries() -> List[Any]:
    from .mutants.adversaries import ADVERSARIES, INPUT_ADVERSARIES
    return list(ADVERSARIES + INPUT_ADVERSARIES)


def _false_pass_chunk(index: int, alpha: float, seeds: Sequence[int]) -> Tuple[Dict[str, int], Optional[float]]:
    """Verdict counts (and the margin) of adversary ``index`` against its check over ``seeds``."""
    adv = _adversaries()[index]
    spec = numpy_spec(f"adversary:{adv.name}", adv.variant, adv.factory, dict(adv.params), shape=(16, 64))
    verdicts = {"PASS": 0, "FAIL": 0, "INCONCLUSIVE": 0, "ERROR": 0}
    margin = None
    for seed in seeds:
        run = verify([spec], Settings(seed=seed, alpha=alpha), checks=[adv.check])
        r = next(x for x in run.all_results() if x.statistical)
        verdicts[r.verdict] += 1
        margin = r.margin
    return verdicts, margin


def false_passes(seeds: int, base_seed: int, alphas: Sequence[float] = (0.05, 1e-3),
                 workers: int = 1) -> List[Dict[str, Any]]:
    """Each adversary of :mod:`dropverify.mutants.adversaries` (a fault on some calls whose
    mean effect exceeds the margin) against the check it must not PASS, alone, under
    ``seeds`` seeds at each alpha: the measured false-pass rate with its exact 95 % CI
    (seeds ``base_seed``, ``base_seed + 1``, ... in ``workers`` processes: the counts do not depend on it)."""
    advs = _adversaries()
    cells = [(i, alpha) for i in range(len(advs)) for alpha in alphas]
    chunks = max(1, workers)
    jobs = [(i, alpha, [base_seed + k for k in range(seeds)][c::chunks]) for i, alpha in cells for c in range(chunks)]
    parts = _map(_false_pass_chunk, jobs, workers)
    rows = []
    for n, (i, alpha) in enumerate(cells):
        adv = advs[i]
        verdicts = {"PASS": 0, "FAIL": 0, "INCONCLUSIVE": 0, "ERROR": 0}
        margin = None
        for counts, m in parts[n * chunks:(n + 1) * chunks]:
            for k, v in counts.items():
                verdicts[k] += v
            margin = m if m is not None else margin
        ci = sps.binomtest(verdicts["PASS"], seeds, alpha).proportion_ci(0.95, method="exact")
        rows.append({"adversary": adv.name, "check": adv.check, "deviation": adv.deviation, "margin": margin,
                     "alpha": alpha, "seeds": seeds, "verdicts": verdicts,
                     "rate": verdicts["PASS"] / seeds, "ci": (ci.low, ci.high),
                     "p_excess": sps.binomtest(verdicts["PASS"], seeds, alpha, alternative="greater").pvalue})
    return rows


# ------------------------------------------------------------------------------ power

def _shifted_dropout(rate_shift: float = 0.0, scale_factor: float = 1.0):
    from .variants import variant_class
    base = variant_class("dropout")

    class Shifted(base):  # type: ignore[misc, valid-type]
        def draw_keep(self, shape):
            return self.rng.random(self.mask_shape(shape)) >= self.p + rate_shift

        def scale(self):
            return scale_factor / (1.0 - self.p)

    return Shifted


POWER_STUDIES = {
    "drop_rate_matches_by_binomial": ("rate error", (0.0, 0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02),
                                      lambda d: _shifted_dropout(rate_shift=d)),
    "expectation_matches_by_t_test": ("relative scale error", (0.0, 0.002, 0.004, 0.006, 0.008, 0.01, 0.02, 0.05),
                                      lambda d: _shifted_dropout(scale_factor=1.0 + d)),
}
POWER_SHAPE = (8, 8, 4, 4)
POWER_P = 0.3


def _power_chunk(check: str, d: float, seeds: Sequence[int]) -> Tuple[int, List[int], float, List[float]]:
    """(FAILs, final sample sizes, alpha, pilot sds) of ``check`` against a deviation ``d`` over ``seeds``."""
    cls = POWER_STUDIES[check][2](d)
    spec = numpy_spec(f"power:{check}:{d}", "dropout", lambda prm, cls=cls: cls(**prm), {"p": POWER_P},
                      shape=POWER_SHAPE)
    hits, n_final, alpha, sd = 0, [], 1e-3, []
    for seed in seeds:
        run = verify([spec], Settings(seed=seed), checks=[check])
        r = next(x for x in run.all_results() if x.statistical)
        hits += r.verdict == "FAIL"
        n_final.append(int(r.details.get("n_max", r.n)))
        alpha = r.alpha
        if "pilot_sd" in r.details:  # t-test: sd of one sample (a per-call mean)
            sd.append(float(r.details["pilot_sd"]))
    return hits, n_final, alpha, sd


def power_curve(check: str, seeds: int, base_seed: int, workers: int = 1) -> Dict[str, Any]:
    """Measured detection probability per deviation, and the optimal fixed-sample test's
    power at the same alpha and the check's final sample size (normal approximation); seeds
    ``base_seed``.. in ``workers`` processes (the numbers do not depend on it)."""
    label, deviations, _ = POWER_STUDIES[check]
    chunks = max(1, workers)
    all_seeds = [base_seed + i for i in range(seeds)]
    parts = _map(_power_chunk, [(check, d, all_seeds[c::chunks]) for d in deviations for c in range(chunks)], workers)
    measured, theory, ns = [], [], []
    for j, d in enumerate(deviations):
        mine = parts[j * chunks:(j + 1) * chunks]
        hits = sum(m[0] for m in mine)
        n_final = [n for m in mine for n in m[1]]
        sd = [v for m in mine for v in m[3]]
        alpha = mine[-1][2]
        measured.append(hits / seeds)
        n = int(np.median(n_final))  # the budget the sequential test may use
        ns.append(n)
        sigma = float(np.median(sd)) if sd else math.sqrt(POWER_P * (1 - POWER_P))  # binomial: per unit
        z = sps.norm.isf(alpha / 2)
        shift = d * math.sqrt(n) / sigma
        theory.append(float(sps.norm.sf(z - shift) + sps.norm.cdf(-z - shift)))
    return {"check": check, "label": label, "deviations": deviations, "measured": measured, "theory": theory,
            "n": ns, "seeds": seeds}


# ------------------------------------------------------------------------------ report

def _plots(out: Path, calib: Sequence[Dict[str, Any]], powers: Sequence[Dict[str, Any]]) -> Dict[str, str]:
    from .report.plots import _png, _pyplot
    plt = _pyplot()
    images = {}
    cols = 4
    rows = math.ceil(len(calib) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(13, 2.6 * rows), squeeze=False)
    for ax, c in zip(axes.ravel(), calib):
        ax.hist(c["p_values"], bins=20, range=(0, 1), color="tab:blue", alpha=0.8)
        ax.axhline(c["results"] / 20, color="0.3", ls="--", lw=0.8)
        f = c["family"]
        ax.set_title(f"{f.check[:34]}\n{f.variant}", fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(calib):]:
        ax.axis("off")
    fig.suptitle("Sequential p-values on correct references (dashed: uniform); mass at 1 = conservative", fontsize=9)
    fig.tight_layout()
    images["calibration"] = "img/quality-pvalues.png"
    write_atomic(out / images["calibration"], _png(fig))
    if powers:
        fig, axes = plt.subplots(1, len(powers), figsize=(5.5 * len(powers), 3.6), squeeze=False)
        for ax, pw in zip(axes.ravel(), powers):
            ax.plot(pw["deviations"], pw["measured"], "o-", label=f"measured ({pw['seeds']} seeds)")
            ax.plot(pw["deviations"], pw["theory"], "s--", label="optimal fixed-sample test, same alpha and n")
            ax.set_xlabel(pw["label"]); ax.set_ylabel("P(FAIL)"); ax.set_ylim(-0.03, 1.03)
            ax.set_title(pw["check"], fontsize=9); ax.legend(fontsize=7)
        fig.tight_layout()
        images["power"] = "img/quality-power.png"
        write_atomic(out / images["power"], _png(fig))
    return images


def quality_markdown(kills: Sequence[Dict[str, Any]], calib: Sequence[Dict[str, Any]],
                     powers: Sequence[Dict[str, Any]], images: Dict[str, str], seed: int,
                     fpass: Sequence[Dict[str, Any]] = ()) -> str:
    killed = sum(1 for k in kills if k["killed"])
    lines = ["# dropverify quality: what the harness catches, and how rarely it cries wolf", "",
             f"Produced by `make quality` (seed {seed}) from real runs at the default settings "
             "(family-wise alpha 1e-3, power 0.99).", "", "## 1. Mutant kill table", ""]
    if kills:
        lines += [f"Kill rate: **{killed} / {len(kills)}** ({100 * killed / len(kills):.0f} %). Each mutant is a "
                  "deliberately broken implementation modelled on a public bug; it counts as killed when every "
                  "check it names FAILs under the default settings (its whole check suite is run).", "",
                  "| mutant | variant | bug class | source | must fail | verdicts | samples to detection | killed |",
                  "|---|---|---|---|---|---|---|---|"]
        for k in kills:
            verdicts = ", ".join(f"{c}: {v}" for c, v in k["verdicts"].items())
            if k.get("n") is not None:
                detection = f"{k['n']} {k['n_unit']} ({k['looks']} look{'s' if k['looks'] != 1 else ''})"
            else:
                detection = "exact check"
            killed = "yes" if k["killed"] else ("**NO** — known gap: " + k["known_gap"] if k.get("known_gap")
                                                else "**NO**")
            lines.append(f"| `{k['name']}` | `{k['variant']}` | {k['bug_class']} | {k['source']} | "
                         f"{', '.join(f'`{c}`' for c in k['expected'])} | {verdicts} | {detection} | {killed} |")
    else:
        lines.append("No mutant corpus available.")
    lines += ["", "## 2. Calibration: measured false-alarm rates", "",
              "Each family runs one check alone (so the run's whole alpha is the check's) on a correct reference "
              "under the given number of seeds. The rate at a nominal level a is the fraction of sequential "
              "p-values <= a — valid for any a, since the sequential p-value is a valid p-value whatever the "
              "stopping time. `p(excess)` is the exact one-sided binomial test of 'rate > nominal'.", "",
              "| check | reference | runs | FAIL at default (1e-3) | " +
              " | ".join(f"rate at {a:g} (95% CI)" for a in LEVELS) + " | min p(excess) |",
              "|---|---|---|---|" + "---|" * len(LEVELS) + "---|"]
    for c in calib:
        f = c["family"]
        cells = [f"{r['rate']:.4f} ({r['ci'][0]:.4f}..{r['ci'][1]:.4f})" for r in c["rates"].values()]
        worst = min(r["p_excess"] for r in c["rates"].values())
        lines.append(f"| `{f.check}` | `{f.variant}{dict(f.params)}` | {c['runs']} | {c['fails_at_default']} | "
                     + " | ".join(cells) + f" | {worst:.3g} |")
    if "calibration" in images:
        lines += ["", f"![p-value histograms]({images['calibration']})"]
    lines += ["", "## 3. False passes against faults that strike whole calls", "",
              "A PASS certifies that the deviation is within the margin, with false-pass probability at most the "
              "check's alpha. Each adversary deviates by more than the margin, but only on some calls (its own coin "
              "per call), which statistics pooled over the units of a call cannot see. Run alone, so the check's "
              "alpha is the run's.", "",
              "| adversary | check | true deviation | margin | alpha | seeds | PASS | FAIL | INCONCLUSIVE | "
              "false-pass rate (95% CI) | p(rate > alpha) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in fpass:
        v = row["verdicts"]
        lines.append(f"| `{row['adversary']}` | `{row['check']}` | {row['deviation']:.4f} | {row['margin']:.4f} | "
                     f"{row['alpha']:g} | {row['seeds']} | {v['PASS']} | {v['FAIL']} | {v['INCONCLUSIVE']} | "
                     f"{row['rate']:.4f} ({row['ci'][0]:.4f}..{row['ci'][1]:.4f}) | {row['p_excess']:.3g} |")
    lines += ["", "## 4. Power", ""]
    for pw in powers:
        lines += [f"### `{pw['check']}` on dropout(p={POWER_P}), probe {POWER_SHAPE}, {pw['seeds']} seeds per point",
                  "", f"| {pw['label']} | measured P(FAIL) | optimal fixed-sample test | final n |", "|---|---|---|---|"]
        for d, m, t, n in zip(pw["deviations"], pw["measured"], pw["theory"], pw["n"]):
            lines.append(f"| {d:g} | {m:.3f} | {t:.3f} | {n} |")
        lines.append("")
    if "power" in images:
        lines += [f"![power curves]({images['power']})", ""]
    lines += ["The sequential checks stop early on a gross deviation and spend the rest of the budget only where "
              "needed; at the final look their power trails the optimal fixed-sample test at the same alpha by "
              "the Bonferroni cost of four looks (alpha/4 per look).", ""]
    from .provenance import fingerprint_line
    lines += [fingerprint_line(), ""]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dropverify.quality")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out", default="reports")
    parser.add_argument("--seeds", type=int, default=500, help="seeds per calibration family. Default: %(default)r")
    parser.add_argument("--power-seeds", type=int, default=100, help="seeds per power point. Default: %(default)r")
    parser.add_argument("--workers", type=int, default=2, help="processes for every part. Default: %(default)r")
    parser.add_argument("--false-pass-seeds", type=int, default=500,
                        help="seeds per adversary and alpha. Default: %(default)r")
    args = parser.parse_args(argv)
    out = Path(args.out)
    try:
        kills = kill_rows(args.seed, workers=args.workers)
    except ImportError:
        kills = []
    calib = []
    for i, family in enumerate(FAMILIES):
        calib.append(calibrate(family, args.seeds, args.seed + 100_000 * (i + 1), workers=args.workers))
        print(f"calibrated {family.check} on {family.variant}: {calib[-1]['rates'][0.05]['rate']:.4f} at 0.05")
    fpass = false_passes(args.false_pass_seeds, args.seed + 9_000_000, workers=args.workers)
    print("false passes: " + ", ".join(f"{r['adversary']}@{r['alpha']:g}={r['verdicts']['PASS']}" for r in fpass))
    powers = [power_curve(check, args.power_seeds, args.seed + 7_000_000, workers=args.workers)
              for check in POWER_STUDIES]
    images = _plots(out, calib, powers)
    write_atomic(out / "quality.md", quality_markdown(kills, calib, powers, images, args.seed, fpass))
    print(f"wrote {out / 'quality.md'}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
