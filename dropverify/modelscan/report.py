"""The scan's report: console summary, Markdown (the site table before the detailed rows) and
its JSON twin (``kind`` "scan", every target's full document inside). Deterministic: no clock
values in the Markdown or JSON; the timings go to ``<stem>.timings.json`` beside them."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..report import jsonout
from ..report._io import write_atomic
from ..report.markdown import _ICON, READING_GUIDE, root_cause_line, run_line, summary_table

_SCAN_CHECKS = {
    "eval_output_deterministic": "two eval calls of the model under different seeds give identical outputs",
    "site_receives_configured_p_in_training": "in training the site receives the rate its module is configured "
                                              "with, and is active",
    "site_inactive_in_eval": "in eval the site applies nothing (arguments passed; a module's output on the real "
                             "activations)",
    "site_p_restored_after_eval": "train -> eval -> train leaves every call's p and activity as before",
    "depth_schedule_linear": "DropPath / stochastic-depth rates across repeated blocks rise linearly with depth",
    "no_dropout_applied_twice_in_series": "no dropout takes the unchanged output of another dropout of its kind (or "
                                          "its own): two in series are one dropout at p = 1 - (1 - p1)(1 - p2)",
    "rnn_dropout_matches_layer_replay": "a torch LSTM / GRU / RNN in training equals its layers run one by one with "
                                        "its weights and F.dropout(p) between them, under one seed",
    "site_rate_matches_config_field": "no active site's rate is a config field of another kind (attention / hidden / "
                                      "drop path / drop block) instead of its own, nor a keep_prob passed as p",
    "site_rate_matches_expected": "every site matching a declared PATTERN=RATE (--expect) has that rate in training",
    "site_rng_advances_between_calls": "(NNX) a site drops a different set of elements in two training passes, "
                                       "where a repeat by chance has probability at most 1e-9",
}
_RECORDED = {
    "keras": "every dropout-family Keras layer (Dropout, SpatialDropout1D/2D/3D, GaussianDropout, AlphaDropout, "
             "GaussianNoise, MultiHeadAttention's inner Dropout, and the dropout / recurrent_dropout masks of LSTM / "
             "GRU / SimpleRNN cells) was recorded through a wrapper of its call: the training flag it was passed and "
             "whether its output differs from its input. A site never called in training is NOT EXERCISED.",
    "nnx": "every nnx.Dropout (and subclass) in the module graph was recorded through a wrapper of its __call__: the "
           "effective deterministic flag, the rate, and whether its output differs from its input; train / eval by "
           "model.train() / model.eval(), randomness from the model's own RngStreams. A site never called in training "
           "is NOT EXERCISED.",
}


def _counts(report: Any) -> Dict[str, int]:
    out: Dict[str, int] = {"PASS": 0, "FAIL": 0, "INCONCLUSIVE": 0, "ERROR": 0, "NOT EXERCISED": 0}
    for row in report.scan.sites:
        out[row.verdict or "NOT EXERCISED"] += 1
    return out


def _counts_text(report: Any) -> str:
    return ", ".join(f"{v} {k}" for k, v in _counts(report).items() if v)


def summary_lines(report: Any) -> List[str]:
    """The console summary: verdict and site counts, cause lines, seed and Holm family."""
    scan = report.scan
    s = report.run.settings
    lines = [f"{report.verdict:<12} scan of {scan.model} on {scan.inputs}: {len(scan.sites)} dropout site(s) "
             f"({_counts_text(report)})"]
    lines += [f"  cause: {c}" for c in scan.causes]
    idle = [row.label for row in scan.sites if row.verdict == "NOT EXERCISED"]
    if idle:
        lines.append(f"  {len(idle)} site(s) NOT EXERCISED (not called in training on this input, nothing verified "
                     f"there): " + ", ".join(idle[:4]) + (f" and {len(idle) - 4} more" if len(idle) > 4 else ""))
    incon = sum(1 for r in report.results if r.verdict == "INCONCLUSIVE")
    if incon:
        lines.append(f"  {incon} in-situ result(s) INCONCLUSIVE (budget spent before certifying or rejecting; "
                     "see the report)")
    lines.append(f"{'OK' if report.ok else 'NOT OK'}: seed {s.seed}, family-wise false-alarm rate {s.alpha:g} over "
                 f"{report.run.m_statistical} statistical results, {report.run.seconds:.1f} s")
    if not report.ok:
        lines.append(f"reproduce: {report.reproduce}")
    return lines


def _p(v: Optional[float]) -> str:
    return "—" if v is None else f"{v:g}"


def site_table(report: Any) -> str:
    lines = ["| site | kind | configured p | observed p (train) | observed p (eval) | in situ | verdict |",
             "|---|---|---|---|---|---|---|"]
    for row in report.scan.sites:
        conf = _p(row.configured) + (f" (`{row.configured_from}`)" if row.configured_from and row.configured is not None
                                     else "")
        verdict = _ICON.get(row.verdict, row.verdict) if row.verdict else "not called"
        lines.append(f"| `{row.label}` | {row.kind} | {conf} | {row.train} | {row.eval} | "
                     f"{row.in_situ.replace('|', '/')} | {verdict} |")
    return "\n".join(lines)


def schedule_table(report: Any) -> str:
    lines = ["| blocks | n | rates in depth order | verdict |", "|---|---|---|---|"]
    for s in report.scan.schedules:
        rates = ", ".join(f"{r:.4g}" + (" (identity)" if ident else "") for r, ident in zip(s.rates, s.identity))
        lines.append(f"| `{s.pattern}` | {len(s.rates)} | {rates} | {_ICON[s.verdict]} |")
    return "\n".join(lines)


def _messages(target: Any) -> List[str]:
    out = []
    for r in target.results:
        if r.check.split("[", 1)[0] in _SCAN_CHECKS or r.verdict != "PASS":
            out.append(f"- `{r.check}` {r.verdict}: " + r.message.replace("\n", " "))
    return out


def scan_markdown(report: Any, picture: Optional[str] = None) -> str:
    """The whole scan as one Markdown document (``picture``: the PNG's file name beside it, linked
    under the site table)."""
    scan, run = report.scan, report.run
    model = run.targets[0]
    head = [f"# dropverify scan: `{scan.model}`", "",
            f"Verdict: **{report.verdict}** — {len(scan.sites)} dropout site(s): {_counts_text(report)}.", "",
            f"Example input: {scan.inputs}. The model ran four times on it: train, eval twice (different seeds), "
            "train again; " + _RECORDED.get(getattr(scan, "framework", "torch"),
                                            "every dropout-family module and every functional dropout call "
            "(F.dropout and its family, torch.dropout, F.scaled_dot_product_attention's dropout_p, "
            "F.multi_head_attention_forward) was recorded with the module that made it; nn.LSTM / GRU / RNN "
            "with dropout > 0 are sites too. A site never called in training is NOT EXERCISED."), "",
            run_line(run),
            "In situ, each site runs " + (", ".join(f"`{c}`" for c in scan.checks) if scan.checks else
                                          "every applicable check") +
            " (those that apply to its contract), at the shape, dtype and p it saw; the scan's own checks are exact.",
            ""]
    if report.reproduce and not report.reproduce.startswith("dropverify.scan("):
        head += [f"Command: `{report.reproduce}`", ""]
    head += ["## Causes", ""]
    head += [f"- {c}" for c in scan.causes] or ["- none: no check failed"]
    head += ["", "## Sites", "", site_table(report), "",
             "Observed p is the effective rate: p where the call dropped, `0 (p=.., off)` where p was passed with "
             "dropout off. " + ("Configured p is read before the model runs from the module's own rate, or for a "
             "functional call from the first attribute found on the calling module (else its parent) among "
             "p, dropout_p, attn_drop, drop_rate, dropout ... (`dropverify.modelscan.discovery`)."
                                if getattr(scan, "framework", "torch") == "torch" else
                                "Configured p is read before the model runs from the first of rate, dropout_rate, "
                                "drop_rate, dropout on the layer that owns the site, else from the site's own rate "
                                "(`dropverify.modelscan.layer_sites`)."), ""]
    if picture:
        head += [f"![configured vs observed rate per site{', and the depth schedules' if scan.schedules else ''}]"
                 f"({picture})", "",
                 "Per site: the configured rate (circle), the rate received in training (cross) and the drop rate "
                 "measured in situ with its confidence interval (bar, coloured by the site's verdict; a site verified "
                 "by an identical one shows that one's)" + ("; right: each stochastic-depth schedule against depth."
                                                           if scan.schedules else "."), ""]
    if scan.schedules:
        head += ["## Stochastic-depth schedules", "", schedule_table(report), "",
                 "Accepted: rates that rise linearly with the block's place in depth order, p_k = p_0 + k (p_last - "
                 "p_0) / (n - 1), within 1e-6 + 1e-6 p, never decreasing (timm / torchvision linspace(0, rate, depth); "
                 "a constant rate is the degenerate case). An nn.Identity where a block has no DropPath counts as "
                 "rate 0.", ""]
    head += ["## Model checks", "", summary_table(model), ""]
    head += [f"- `{r.check}` {r.verdict}: {r.message}" for r in model.results]
    head += ["", "## Site details"]
    quiet = [t for t in run.targets[1:] if t.verdict == "PASS" and not any(r.statistical for r in t.results)
             and all(r.check in _SCAN_CHECKS for r in t.results)]
    if quiet:
        head += ["", f"{len(quiet)} site(s) passed the scan's exact checks and were not sampled in situ (p = 0 in "
                     "training, or verified by an identical site); their messages are in the JSON: "
                 + ", ".join(f"`{t.spec_name}`" for t in quiet) + "."]
    for t in run.targets[1:]:
        if t.spec_name in {q.spec_name for q in quiet}:
            continue
        head += ["", f"### `{t.spec_name}` — {t.verdict}", "", t.description]
        if t.root_causes:
            head += [""] + [root_cause_line(c) for c in t.root_causes]
        head += ["", summary_table(t), ""]
        head += _messages(t)
        if t.conventions:
            head += [""] + [f"- Convention: {c}" for c in t.conventions]
    never = [row for row in scan.sites if not row.calls]
    if never:
        head += ["", "Not called during the example forward (nothing recorded): "
                 + ", ".join(f"`{row.label}` ({row.kind})" for row in never) + "."]
    head += ["", "## The scan's checks", ""]
    head += [f"- `{k}`: {v}." for k, v in _SCAN_CHECKS.items()]
    head += ["- In-situ edge cases (p = 0, p = 1, invalid p, other dtypes, non-finite inputs, an empty batch) are "
             "not applicable: the scan verifies each site as the model configures it; `dropverify run` covers the "
             "layer's edge cases.", ""]
    from ..report.markdown import provenance_lines
    return "\n".join(head + [READING_GUIDE, *provenance_lines(run), ""])


def scan_dict(report: Any, command: Optional[str] = None) -> Dict[str, Any]:
    """The JSON document (deterministic: no clock values)."""
    run = report.run
    doc = {"schema_version": jsonout.SCHEMA_VERSION, "kind": "scan", "verdict": report.verdict,
           "run": jsonout.run_header(run, command), **report.scan.to_dict(),
           "targets": [jsonout.target_dict(run, t, command) for t in run.targets]}
    return jsonout.fixed_precision(json.loads(json.dumps(doc, default=str)))  # 6 significant digits


def write_scan(report: Any, md_path: Path, command: Optional[str] = None) -> List[Path]:
    """``md_path``, its JSON twin, its picture ``<stem>.png`` and ``<stem>.timings.json`` (atomic writes)."""
    md_path = Path(md_path)
    doc = scan_dict(report, command)
    doc.update(ok=report.ok, seed=report.seed, reproduce=report.reproduce)
    written = [write_atomic(md_path.with_suffix(".json"), json.dumps(doc, indent=1, sort_keys=True,
                                                                     allow_nan=False) + "\n")]
    from .plots import scan_png
    png = scan_png(report)
    if png is not None:
        written.append(write_atomic(md_path.with_suffix(".png"), png))
    written.append(write_atomic(md_path, scan_markdown(report, md_path.with_suffix(".png").name if png else None)))
    written.append(write_atomic(md_path.with_name(md_path.stem + ".timings.json"),
                                jsonout.timings_json(report.run, command)))
    return written


__all__ = ["scan_dict", "scan_markdown", "site_table", "summary_lines", "write_scan"]
