"""The ``dropverify`` command line.

Exit codes: 0 every check PASS or INCONCLUSIVE (``--strict``: every check PASS); 1 any FAIL
or ERROR (``--strict``: or INCONCLUSIVE), or an internal error; 2 usage error (or a report that
could not be written after the run, whose verdicts are still printed). Every usage
error is one line on stderr (``dropverify: error: ...``) printed before any sampling; no
traceback reaches the user (``DROPVERIFY_DEBUG=1`` shows one for an internal error).

Every command builds a list of target specs first, validates every argument and output
path, then makes ONE run through :mod:`dropverify.pipeline` (the path ``dropverify.verify()``
takes: names from tables, resolution, capabilities, the runner): several targets share one
family-wise false-alarm rate. This module parses arguments and prints; it decides nothing else.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from .cliargs import UsageError, jobs_from_args, profile_name, write_jobs
from .cliargs import check_writable as _check_writable, default_seed as _default_seed, parse_shape as _parse_shape
from .cliargs import results_argv
from .cliargs import settings_from_args as _settings
from .errors import DropverifyError
from .results import failure_row
from .targets import THIRDPARTY

if TYPE_CHECKING:  # the runner loads the checks: imported when a command runs
    from .runner import Progress

DTYPE_CHOICES = ("float16", "bfloat16", "float32", "float64")
DEFAULT_OUT = "reports"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, no "dropverify run:" prefix doubled
        raise UsageError(message + _choice_hint(message))


def _choice_hint(message: str) -> str:
    """``; did you mean 'float32'?`` for argparse's "invalid choice: 'X' (choose from ...)"."""
    import re
    from .errors import did_you_mean
    found = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    return did_you_mean(found[1], re.findall(r"'([^']*)'", found[2])) if found else ""


def _version() -> str:
    """The installed version, read without importing the package's modules (the CLI starts light)."""
    from .provenance import tool_version
    return tool_version()


# ----------------------------------------------------------------------------- arguments
def _jobs_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="N > 1: the built-in targets of the run shared between N spawned processes; a run of one "
                        "configuration runs its checks that do not read the shared stream in a forked process "
                        "meanwhile (and here once its shared stream ends). The same results as --jobs 1 (identical "
                        "without a time budget, unless the layer draws from global state its seed does not reset). Default: 2 for a run of one "
                        "configuration on a machine with 2 or more cores, else 1")


def _settings_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=None, help=f"master seed (>= 0). Default: {_default_seed()}")
    p.add_argument("--alpha", type=float, default=None,
                   help="family-wise false-alarm rate of the whole run (Holm). Default: 0.001")
    p.add_argument("--power", type=float, default=None,
                   help="power that defines each minimum detectable deviation. Default: 0.99")
    p.add_argument("--max-calls", type=int, default=None,
                   help="most calls of the target per statistical check and per configuration's shared stream "
                        "(a reproducible bound on a run). Default: 20000")
    p.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                   help="wall-clock budget of each configuration, planned across its checks (each gets its "
                        "first look, then a share); a check whose share ends evaluates what it drew (the report "
                        "says so; results then depend on the machine's speed); no call starts after it. 0: none. "
                        "Default: the profile's (none: --max-calls bounds a run)")
    from .settings import PROFILES  # light: no numpy
    p.add_argument("--profile", default=None, choices=tuple(PROFILES),
                   help="budget preset, the same as dropverify.verify(profile=...) and pytest's "
                        "--dropverify-profile: " + "; ".join(pr.describe() for pr in PROFILES.values())
                        + ". Options given beside it override it. Default: default")
    p.add_argument("--quick", action="store_true", default=None, help="--profile quick")
    p.add_argument("--thorough", action="store_true", default=None, help="--profile thorough")
    p.add_argument("--check", action="append", default=None, metavar="NAME",
                   help="run only this check (repeatable); a per-axis / per-layout result name such as "
                        "multiplier_values_exact[transposed] runs the check that reports it (all its "
                        "axes / layouts); see `dropverify list`")
    p.add_argument("--margin", action="append", default=[], metavar="NAME=VALUE",
                   help="equivalence margin a PASS certifies (repeatable): rate=0.05 (x min(p,1-p)), "
                        "position=0.25 (x min(q,1-q) per position), mean=0.01 (relative bias), variance=0.05, "
                        "dependence=0.2 (relative risk - 1), correlation=0.05, gamma=0.1 (relative)")
    p.add_argument("--fault-fraction", type=float, default=None,
                   help="a PASS sees enough independent calls that a fault striking this fraction of calls "
                        "appears in one of them (probability >= 1 - alpha). Default: 0.05")
    p.add_argument("--strict", action="store_true", default=None,
                   help="INCONCLUSIVE fails too (exit 1): for CI gates")
    p.add_argument("--junit-xml", default=None, metavar="PATH",
                   help="also write JUnit XML (one test case per target x check x configuration)")
    p.add_argument("--summary", default=None, metavar="PATH",
                   help="append a Markdown job summary; $GITHUB_STEP_SUMMARY is used when set")
    p.add_argument("--quiet", action="store_true", help="no progress display")


def _config_args(p: argparse.ArgumentParser, factory_help: str, many: bool = False) -> None:
    p.add_argument("--variant", default=None, action="append" if many else "store", help=factory_help)
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a variant parameter by its canonical name, e.g. p=0.1, block_size=7 (repeatable; "
                        "each key once); `dropverify list --params` shows them")
    p.add_argument("--shape", default=None, help="probe input shape, e.g. 64,32,8,8. Default: the contract's")
    p.add_argument("--dtype", default=None, choices=DTYPE_CHOICES,
                   help="dtype the statistical checks run in. Default: float64")
    p.add_argument("--layout", default=None,
                   help="memory layout of the probe inputs (contiguous, transposed, strided, channels_last "
                        "where the target supports it). Default: contiguous")
    p.add_argument("--device", default=None, choices=("cpu", "cuda"), help="torch device. Default: cpu")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand (usage errors raise :class:`UsageError`)."""
    parser = _Parser(prog="dropverify", description="Certify dropout-family layers against their contracts.")
    parser.add_argument("--version", action="version", version=f"dropverify {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    v = sub.add_parser("verify", help="verify the layers of this project's [tool.dropverify] config, "
                                      "built-in targets (--target), or the reference variants (--reference)",
                       description="Without --target / --variant / --reference: the layers listed in "
                                   "[tool.dropverify] of the nearest pyproject.toml (or dropverify.toml); none "
                                   "there is a usage error.")
    v.add_argument("--target", action="append", default=None, metavar="NAME",
                   help="a built-in target (torch:Dropout2d, timm:DropBlock2d, numpy:dropout) or "
                        "user:MODULE:FACTORY (repeatable)")
    v.add_argument("--config", default=None, metavar="PATH",
                   help="a pyproject.toml with [tool.dropverify] or a dropverify.toml")
    v.add_argument("--reference", action="store_true",
                   help="verify every reference variant (numpy:<variant>; --variant picks some), whatever the "
                        "project config says")
    v.add_argument("--out", default=None, help=f"report folder. Default: the config's `out`, else {DEFAULT_OUT!r}")
    _config_args(v, "without --target: only this reference variant (repeatable: --variant a --variant b); "
                    "with --target: the variant user factories claim", many=True)
    _jobs_arg(v)
    _settings_args(v)
    t = sub.add_parser("verify-thirdparty", help="verify every built-in PyTorch / torchvision / timm / Keras target")
    t.add_argument("--framework", action="append", choices=THIRDPARTY, default=None,
                   help="only this framework (repeatable)")
    t.add_argument("--out", default="reports/thirdparty", help="report folder. Default: %(default)r")
    _jobs_arg(t)
    _settings_args(t)
    r = sub.add_parser("run", help="verify layers: dropverify run TARGET [TARGET ...] [--variant NAME] [--param K=V]",
                       description="TARGET is a built-in name (numpy:dropout, torch:Dropout2d, timm:DropBlock2d; "
                                   "see `dropverify list`) or MODULE:FACTORY (or path/to/file.py:FACTORY): a callable "
                                   "taking the variant's parameters as keyword arguments and returning a torch "
                                   "nn.Module, a Keras layer or a numpy layer. All targets share one family-wise "
                                   "false-alarm rate; --param/--shape/--dtype/--layout/--device apply to each.")
    r.add_argument("targets", nargs="+", metavar="TARGET", help="built-in name or MODULE:FACTORY")
    _config_args(r, "the contract a factory claims, e.g. dropout, dropblock_2d (required for factories; "
                    "built-ins know theirs)")
    r.add_argument("--input", default=None, metavar="MODULE:FN",
                   help="your own probe: a callable taking no arguments and returning the layer's input (numpy "
                        "array or torch tensor, a tuple for several); it fixes --shape and --dtype, and the "
                        "call-pattern checks call the layer on exactly these values")
    r.add_argument("--report", default=None, metavar="PATH.md",
                   help="write a Markdown report of one target (JSON beside it)")
    r.add_argument("--out", default=None, metavar="DIR", help="write reports of every target into DIR")
    r.add_argument("--sweep", action="store_true",
                   help="explore the configuration space (p, dtype, layout, shape, the variant's parameters, a "
                        "large tensor); --param/--dtype/--layout/--shape fix their axes")
    r.add_argument("--workers", type=int, default=None,
                   help="--sweep: worker processes (default: 2 where the machine has 2 cores or more)")
    _jobs_arg(r)
    r.add_argument("--scheduler", default=None, metavar="ADDR",
                   help="--sweep on Dask: 'local' (embedded LocalCluster) or tcp://HOST:PORT")
    r.add_argument("--strength", type=int, default=1, choices=(1, 2),
                   help="--sweep covering design: 1 every axis value, 2 every pair of values. Default: %(default)r")
    r.add_argument("--search", type=int, default=4,
                   help="--sweep: configurations hypothesis may try after a clean covering phase. Default: %(default)r")
    _settings_args(r)
    from .modelscan.cli import add_scan_parser
    add_scan_parser(sub, _settings_args)
    lst = sub.add_parser("list", help="list variants, checks and targets")
    lst.add_argument("--params", action="store_true",
                     help="per variant: parameters, ranges, defaults, conventions and probe shape")
    return parser


# ----------------------------------------------------------------------------- validation
def _checks(args: argparse.Namespace, config_checks: Optional[Sequence[str]] = None) -> Optional[List[str]]:
    from .checknames import producing_checks
    from .settings import PROFILES
    name = profile_name(args)
    names = args.check or config_checks or (PROFILES[name].checks if name else None)
    return producing_checks(names) if names else None


def _resolve(target: str, variant: Optional[str], params: Mapping[str, Any], shape: Optional[Tuple[int, ...]],
             dtype: str, layout: str, device: str, variant_for_builtins: bool = True) -> list:
    """Specs of one target configuration (:func:`dropverify.pipeline.resolve_configuration`)."""
    from .pipeline import resolve_configuration
    return resolve_configuration(target, variant, params, shape, dtype, layout, device, variant_for_builtins,
                                 flags=True)


def _name_configurations(specs: list) -> list:
    """Give every spec a unique name: dtype / layout other than the defaults are appended
    (``numpy:dropout[float32]``), and same-named specs are told apart by shape and params
    (names only: the run checks each spec's dtype and layout, :mod:`dropverify.pipeline`)."""
    out = []
    for s in specs:
        tags = [t for t, default in ((s.dtype, "float64"), (s.layout, "contiguous")) if t != default]
        out.append(dataclasses.replace(s, name=s.name + (f"[{','.join(tags)}]" if tags else "")))
    groups: Dict[str, List[int]] = defaultdict(list)
    for i, s in enumerate(out):
        groups[s.name].append(i)
    for name, idx in groups.items():
        if len(idx) < 2:
            continue
        shapes = [out[i].probe_shape() for i in idx]
        params = [out[i].resolved_params() for i in idx]
        differ = [k for k in params[0] if len({repr(p.get(k)) for p in params}) > 1]
        for i, shp, prm in zip(idx, shapes, params):
            tags = (["x".join(map(str, shp))] if len(set(shapes)) > 1 else []) + [f"{k}={prm[k]!r}" for k in differ]
            if tags:
                out[i] = dataclasses.replace(out[i], name=f"{name}[{','.join(tags)}]")
    seen: Dict[str, int] = {}
    for s in out:
        if s.name in seen:
            raise UsageError(f"{s.name} is listed twice with the same configuration")
        seen[s.name] = 1
    return out


def _command_line(argv: Sequence[str]) -> str:
    """The command line a report states: ``argv`` less where outputs go and ``--quiet`` (they
    change no result; the same run into another folder writes the same bytes)."""
    return shlex.join(["dropverify", *results_argv(argv)])


# ----------------------------------------------------------------------------- running


def _progress(quiet: bool) -> Optional[Progress]:
    """TTY: one updating status line. Otherwise (CI logs) one line per check as it finishes,
    with its own time and the run's, so a long run is never silent for minutes::

        dropverify: [ 3/25] torch:Dropout: drop_rate_matches_by_binomial 4.2 s (total 12.8 s)

    The runner calls ``progress(label, done, total)`` as each check starts (``done`` checks
    finished so far) and ``("done", total, total)`` at the end; a check has finished when the
    next call comes, so its time is the gap between the two calls. Checks that read the shared
    stream run together: the runner reports each as it finishes, with a label
    ``"done <seconds>: <target>: <check>"``. Labels after the checks (targets run in a worker
    process) are printed as they start."""
    if quiet:
        return None
    start = time.perf_counter()
    if sys.stderr.isatty():
        def show(label: str, done: int, total: int) -> None:
            end = "\n" if label == "done" else ""
            sys.stderr.write(f"\r\x1b[2K[{done}/{total}] {label[:100]}{end}")
            sys.stderr.flush()
        return show
    state: Dict[str, Any] = {"running": None, "since": start, "checks_done": False}

    def log(label: str, done: int, total: int) -> None:
        now = time.perf_counter()
        running, state["running"] = state["running"], None
        finished = label.startswith("done ") and ": " in label
        if running is not None and not state["checks_done"]:
            width = len(str(total))
            number = done - 1 if finished else done  # a finished shared check is counted in ``done``
            sys.stderr.write(f"dropverify: [{min(number, total):>{width}}/{total}] {running} "
                             f"{now - state['since']:.1f} s (total {now - start:.1f} s)\n")
        if finished and not state["checks_done"]:
            secs, _, what = label[5:].partition(": ")
            width = len(str(total))
            sys.stderr.write(f"dropverify: [{min(done, total):>{width}}/{total}] {what} {float(secs):.1f} s "
                             f"(total {now - start:.1f} s)\n")
            state["since"] = now
        elif label == "done" and not state["checks_done"]:
            state["checks_done"] = True
            sys.stderr.write(f"dropverify: {total}/{total} checks done in {now - start:.1f} s\n")
        elif state["checks_done"]:
            sys.stderr.write(f"dropverify: {label} (started at {now - start:.1f} s)\n")
        else:
            state["running"], state["since"] = label, now
        sys.stderr.flush()
    return log


@dataclasses.dataclass
class Plan:
    """Everything a run needs, validated before any sampling."""

    specs: list
    settings: Any
    checks: Optional[List[str]]
    out: Optional[str] = None
    report: Optional[str] = None
    title: str = "dropverify"
    strict: bool = False
    junit: Optional[str] = None
    summary: Optional[str] = None
    waive_results: List[Dict[str, str]] = dataclasses.field(default_factory=list)
    note: Optional[str] = None  # one line on stderr once everything is validated


def _outputs(args: argparse.Namespace, plan: Plan) -> Plan:
    """Fill the output options into ``plan`` and check every path is writable."""
    plan.junit = args.junit_xml
    plan.summary = args.summary or os.environ.get("GITHUB_STEP_SUMMARY") or None
    plan.strict = bool(args.strict) or plan.strict
    if plan.report is not None:
        if not plan.report.endswith(".md"):
            raise UsageError(f"--report {plan.report!r}, but should end in .md (the JSON lands beside it)")
        if len(plan.specs) != 1:
            raise UsageError(f"--report takes one target configuration, but {len(plan.specs)} were given "
                             f"({', '.join(s.name for s in plan.specs[:3])}{' ...' if len(plan.specs) > 3 else ''}); "
                             "use --out DIR")
        _check_writable("--report", plan.report, folder=False)
    if plan.out is not None:
        _check_writable("--out", plan.out, folder=True)
    if plan.junit is not None:
        _check_writable("--junit-xml", plan.junit, folder=False)
    if plan.summary is not None:
        _check_writable("--summary" if args.summary else "$GITHUB_STEP_SUMMARY", plan.summary, folder=False)
    return plan


def _waive(run, waivers: List[Dict[str, str]]):
    """Move results named in ``waivers`` (one dict per target, result name -> "waived in FILE:
    reason") out of the verdicts, into not_applicable with the reason and the verdict they had."""
    if not any(waivers):
        return run
    targets = []
    for t, waive in zip(run.targets, waivers):
        if not waive:
            targets.append(t)
            continue
        kept = tuple(r for r in t.results if r.check not in waive)
        gone = [(r.check, f"{waive[r.check]} (it was {r.verdict})") for r in t.results if r.check in waive]
        causes = tuple(c for c in t.root_causes if set(c.evidence) - set(waive))
        targets.append(dataclasses.replace(t, results=kept, root_causes=causes,
                                           not_applicable=tuple(sorted((*t.not_applicable, *gone)))))
    return dataclasses.replace(run, targets=tuple(targets))


def _execute(plan: Plan, args: argparse.Namespace, command: str) -> int:
    """The one run (:func:`dropverify.pipeline.run_configurations`: capabilities, then the output
    paths are checked, then the runner), then reports, CI outputs and the console summary."""
    from .pipeline import run_configurations
    quiet = bool(getattr(args, "quiet", False))

    def ready(specs: Sequence[Any]) -> None:  # everything validated: nothing sampled yet
        _outputs(args, plan)
        if plan.note and not quiet:
            print(f"dropverify: {plan.note}", file=sys.stderr)
    # one configuration: its second process forks from this one and starts at once
    jobs = jobs_from_args(getattr(args, "jobs", None), split=len(plan.specs) == 1)
    run = run_configurations(plan.specs, plan.settings, plan.checks, _progress(quiet), flags=True, ready=ready,
                             workers=jobs)
    run = _waive(run, plan.waive_results)
    problems = _write_outputs(run, plan, command)
    code = _finish(run, quiet, plan.strict)
    if problems:
        for line in problems:
            print(f"dropverify: error: {line}", file=sys.stderr)
        return 2
    return code


def _write_outputs(run, plan: Plan, command: str) -> List[str]:
    from .report import write_junit, write_reports, write_single_report, write_summary
    jobs: List[Tuple[str, Callable[[], Any]]] = []
    if plan.report is not None:
        jobs.append((f"report {plan.report}", lambda: write_single_report(run, plan.report, command=command)))
    if plan.out is not None:
        folder = str(plan.out).rstrip("/") or "/"  # "reports/" is written "reports/", not "reports//"
        jobs.append((f"reports in {folder}/", lambda: write_reports(run, plan.out, plan.title, command=command)))
    if plan.junit is not None:
        jobs.append((f"JUnit XML {plan.junit}", lambda: write_junit(run, plan.junit, plan.strict, command)))
    if plan.summary is not None:
        jobs.append((f"job summary {plan.summary}", lambda: write_summary(run, plan.summary, plan.strict, command)))
    return write_jobs(jobs)


def _finish(run, quiet: bool, strict: bool) -> int:
    for target in run.targets:
        counts = target.counts()
        print(f"{target.verdict:12s} {target.spec_name}  "
              + " ".join(f"{k}={v}" for k, v in counts.items() if v))
        for cause in target.root_causes:
            print(f"  cause: {cause.summary}  [{', '.join(cause.evidence)}]")
        explained = {c for cause in target.root_causes if cause.kind == "ERROR" for c in cause.evidence}
        explained |= {cause.evidence[0] for cause in target.root_causes if cause.restated == cause.evidence[0]}
        for r in target.results:
            if r.check in explained:
                continue  # already said in full by its root-cause line
            if r.verdict in ("FAIL", "ERROR") or (r.verdict == "INCONCLUSIVE" and (strict or not quiet)):
                print(f"    {failure_row(r)}")
    inconclusive = any(r.verdict == "INCONCLUSIVE" for t in run.targets for r in t.results)
    ok = run.ok and not (strict and inconclusive)
    why = " (--strict: INCONCLUSIVE fails)" if run.ok and not ok else ""
    print(f"{'OK' if ok else 'NOT OK'}{why}: {len(run.targets)} target(s), "
          f"family-wise false-alarm rate {run.settings.alpha:g}, {run.seconds:.1f} s")
    return 0 if ok else 1


# ----------------------------------------------------------------------------- commands
def _target_specs(args: argparse.Namespace, targets: Sequence[str], variant: Optional[str],
                  variant_for_builtins: bool = True) -> list:
    from .pipeline import precheck_target
    from .targets.resolve import parse_params
    params = parse_params(args.param)
    shape = _parse_shape(args.shape)
    for target in targets:  # names, variants, parameters, layout: from tables, before any import
        precheck_target(target, variant, params, shape, variant_for_builtins, args.layout, flags=True)
    _checks(args), _settings(args)  # then these (the check registry loads scipy), still before any framework
    specs = []
    for target in targets:
        specs.extend(_resolve(target, variant, params, shape, args.dtype or "float64", args.layout or "contiguous",
                              args.device or "cpu", variant_for_builtins))
    return _name_configurations(specs)


def cmd_run(args: argparse.Namespace, command: str) -> int:
    """``dropverify run TARGET [TARGET ...]``: one family over every target given."""
    if args.report is not None and args.out is not None:
        raise UsageError("--report and --out: give one (--report for one target, --out for a folder)")
    from .probeinput import attach, from_args
    arrays = from_args(args)  # --input: its shape and dtype become the configuration's
    if args.sweep:
        return _cmd_sweep(args, command)
    for flag in ("workers", "scheduler"):
        if getattr(args, flag) is not None:
            raise UsageError(f"--{flag} applies to --sweep")
    specs = _target_specs(args, args.targets, args.variant)
    specs = attach(specs, arrays, args.input) if arrays is not None else specs
    plan = Plan(specs, _settings(args), _checks(args), out=args.out, report=args.report)
    return _execute(plan, args, command)


def _cmd_sweep(args: argparse.Namespace, command: str) -> int:
    """``run TARGET --sweep``: one target's configuration space under one family-wise rate."""
    import os
    from .sweep import run_sweep, write_sweep
    from .targets.resolve import parse_params
    if len(args.targets) != 1:
        raise UsageError("--sweep takes one TARGET")
    if args.out is not None:
        raise UsageError("--sweep writes one report: use --report PATH.md")
    workers = args.workers if args.workers is not None else min(2, os.cpu_count() or 1)
    if workers < 1:
        raise UsageError(f"--workers {workers}, but should be at least 1")
    if args.search < 0:
        raise UsageError(f"--search {args.search}, but should be 0 or more")
    for flag, value in (("--junit-xml", args.junit_xml), ("--summary", args.summary)):
        if value is not None:
            raise UsageError(f"{flag} applies to runs without --sweep (a sweep writes its own --report)")
    if args.report is not None:
        if not args.report.endswith(".md"):
            raise UsageError(f"--report {args.report!r}, but should end in .md (the JSON and figure land beside it)")
        _check_writable("--report", args.report, folder=False)
    fixed: dict = dict(parse_params(args.param))
    for name in ("dtype", "layout", "device"):
        if getattr(args, name):
            fixed[name] = getattr(args, name)
    if args.shape:
        fixed["shape"] = _parse_shape(args.shape)
    target = args.targets[0]
    from .targets.resolve import check_capabilities
    check_capabilities(_target_specs(args, [target], args.variant), flags=True)  # validated before sampling
    quiet = bool(getattr(args, "quiet", False))
    say = None if quiet else (lambda text: print(f"dropverify: sweep: {text}", file=sys.stderr, flush=True))
    result = run_sweep(target, args.variant, _settings(args), fixed=fixed, workers=workers,
                       scheduler=args.scheduler, strength=args.strength, search=args.search, progress=say)
    if args.report:
        paths = write_sweep(result, Path(args.report))
        print(f"report written to {args.report} (+ {', '.join(p.name for p in paths if str(p) != args.report)})")
    for m in result.minimal:
        from .sweep import reproduce_command
        state = "confirmed" if m["confirmed"] else "not confirmed with a fresh seed"
        print(f"minimal failing configuration ({state}): {m['config'].label()}")
        for cause in m["row"].get("causes", [])[:3]:
            print(f"  cause: {cause}")
        print(f"  reproduce: {reproduce_command(result, m['row'])}")
    counts: dict = {}
    for r in result.rows:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    print(f"{result.verdict:12s} {target}: {len(result.rows)} configuration runs "
          + " ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    ok = result.ok and not (args.strict and result.verdict == "INCONCLUSIVE")
    print(f"{'OK' if ok else 'NOT OK'}: sweep of {target}, family-wise false-alarm rate {result.settings.alpha:g}, "
          f"{result.executor}, {result.seconds:.1f} s")
    return 0 if ok else 1


def _relative(path: Path) -> str:
    """``path`` relative to the working directory where it lies below it (shorter messages)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _config_plan(args: argparse.Namespace, path: Path) -> Plan:
    from .config import load_config, project_imports, with_margins
    given = [o for o, v in (("--param", args.param), ("--shape", args.shape), ("--variant", args.variant),
                             ("--dtype", args.dtype), ("--layout", args.layout), ("--device", args.device)) if v]
    if given:
        raise UsageError(f"{given[0]} applies to --target; the config lists each layer's own")
    cfg = load_config(path)
    if any(layer.sweep for layer in cfg.layers):
        name = next(layer.target for layer in cfg.layers if layer.sweep)
        raise UsageError(f"{path.name}: {name} has sweep = true, but `dropverify verify` does not sweep yet; "
                         f"run `dropverify run {name} --sweep` or set sweep = false")
    specs, waivers = [], []
    from .checknames import check_names
    registry = set(check_names())
    with project_imports(cfg.root):
        for layer in cfg.layers:
            for shape, dtype, layout in layer.configurations():
                made = _resolve(layer.target, layer.variant, layer.params, shape, dtype, layout, layer.device)
                whole = {c: f"waived in {path.name}: {why}" for c, why in layer.waive.items() if c in registry}
                partial = {c: f"waived in {path.name}: {why}" for c, why in layer.waive.items() if c not in registry}
                for spec in made:
                    if layer.name:
                        spec = dataclasses.replace(spec, name=layer.name)
                    spec = dataclasses.replace(spec, not_applicable={**dict(spec.not_applicable), **whole})
                    specs.append(with_margins(spec, layer.margins))
                    waivers.append(partial)
    named = _name_configurations(specs)
    out = args.out if args.out is not None else (_relative(cfg.out_dir()) if cfg.out else DEFAULT_OUT)
    settings = _settings(args, cfg.settings, cfg.margins)
    plan = Plan(named, settings, _checks(args, cfg.checks), out=out, strict=cfg.strict,
                title=f"dropverify: {cfg.root.resolve().name} ({path.name})", waive_results=waivers)
    plan.note = f"{len(cfg.layers)} layer(s), {len(named)} configuration(s) from {_relative(path)}"
    return plan


def cmd_verify(args: argparse.Namespace, command: str) -> int:
    """``dropverify verify``: --target names, --reference (or --variant) the reference variants,
    else the project config; no config found is a usage error naming what was found instead."""
    from .config import locate_config
    if args.target:
        if args.config or args.reference:
            raise UsageError(f"--target and {'--config' if args.config else '--reference'}: give one")
        if args.variant and len(args.variant) > 1:
            raise UsageError("--variant with --target names the variant user factories claim: give it once")
        specs = _target_specs(args, args.target, args.variant[0] if args.variant else None,
                              variant_for_builtins=False)
        plan = Plan(specs, _settings(args), _checks(args), out=args.out or DEFAULT_OUT)
    elif args.config or not (args.variant or args.reference):
        if args.config and args.reference:
            raise UsageError("--config and --reference: give one")
        config = Path(args.config) if args.config else None
        if config is None:
            config, why = locate_config()
            if config is None:
                raise UsageError(f"{why}: list your layers under [tool.dropverify], or pass --reference to "
                                 "verify the reference variants")
        elif not config.is_file():
            raise UsageError(f"--config {args.config!r}, but no such file")
        plan = _config_plan(args, config)
    else:
        from .variants import variant_names
        targets = [f"numpy:{v}" for v in (args.variant or variant_names())]
        specs = _target_specs(args, targets, None)
        plan = Plan(specs, _settings(args), _checks(args), out=args.out or DEFAULT_OUT,
                    title="dropverify: reference variants")
    return _execute(plan, args, command)


def cmd_thirdparty(args: argparse.Namespace, command: str) -> int:
    from .targets import get_target, target_names
    specs = []
    for fw in args.framework or THIRDPARTY:
        for name in target_names(fw):
            specs.extend(get_target(name))
    plan = Plan(specs, _settings(args), _checks(args), out=args.out, title="dropverify: third-party implementations")
    return _execute(plan, args, command)


def cmd_list(args: argparse.Namespace, command: str) -> int:
    from .checknames import result_names
    from .checks import CHECKS
    from .variants import all_contracts
    import importlib.util
    from .targets import ADAPTERS, BY_NAME, target_names
    print("variants:")
    for c in all_contracts():
        print(f"  {c.name:24s} {c.summary}")
        if args.params:
            for p in c.params:
                doc = f"  {p.doc}" if p.doc else ""
                print(f"      {p.name:16s} default {p.default!r:10s} {p.range_text()}{doc}")
            print(f"      probe shape {tuple(c.default_shape)}; layout {c.layout}; ranks "
                  f"{', '.join(map(str, c.ranks))}; mask {c.structure}")
    print("checks (--check NAME; results named as listed after '->'):")
    for c in CHECKS:
        shown = [n for n in result_names(c.name) if n != c.name]
        print(f"  {c.name:48s} {c.property}" + (f"  -> {', '.join(shown)}" if shown else ""))
    print("targets (dropverify run TARGET; MODULE:FACTORY for your own):")
    print("  numpy:<variant>          our reference implementations")
    for fw in ADAPTERS:  # names from the catalogue: listing imports no framework
        missing = [p for p in BY_NAME[fw].packages if importlib.util.find_spec(p) is None]
        print("  " + "  ".join(target_names(fw)) + (f"  (unavailable: {', '.join(missing)} not installed; "
                                                     f"`pip install -e \".[{ADAPTERS[fw][1]}]\"`)" if missing else ""))
    if not args.params:
        print("(`dropverify list --params` shows each variant's parameters, ranges, defaults and probe shape)")
    return 0


def cmd_scan(args: argparse.Namespace, command: str) -> int:
    """``dropverify scan MODULE:FACTORY``: see :mod:`dropverify.modelscan.cli`."""
    from .modelscan.cli import cmd_scan as scan
    return scan(args, command)


COMMANDS = {"verify": cmd_verify, "verify-thirdparty": cmd_thirdparty, "run": cmd_run, "list": cmd_list,
            "scan": cmd_scan}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit code (see the module docstring)."""
    argv = list(argv) if argv is not None else sys.argv[1:]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter, when an adapter loads it
    # One intra-op thread per framework unless the user chose: the probes are small, and on a loaded
    # 2-core machine torch's thread pool made each call 3-5x slower (reports/issue22/budget.md).
    # Results are the same either way; only the time a --time-budget buys changes.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    parser = build_parser()
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help / --version
            return int(exc.code or 0)
        return COMMANDS[args.command](args, _command_line(argv))
    except DropverifyError as exc:
        print(f"dropverify: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dropverify: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - no traceback reaches a user
        if os.environ.get("DROPVERIFY_DEBUG"):
            raise
        print(f"dropverify: internal error: {type(exc).__name__}: {_one_line(exc)} "
              "(set DROPVERIFY_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
