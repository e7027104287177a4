"""``dropverify scan MODULE:FACTORY (--shape S [--dtype D] | --input MODULE:FN) [--report R.md]``: a torch,
Keras 3 or Flax NNX model (:mod:`.frameworks` reads which from the object).

Exit codes as ``run``: 0 no FAIL or ERROR (``--strict``: no INCONCLUSIVE either), 1 otherwise,
2 a usage error — one line on stderr, before any sampling: a bad MODULE:FACTORY, a factory
that raises or returns an object of no supported framework (or of one not installed), neither or both
of --shape / --input, a bad shape or
dtype, an input function that raises or returns no tensors, a model that raises on the
example input, an output path that cannot be written. Importing this module does not
import torch.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from ..cliargs import (UsageError, check_writable, jobs_from_args, parse_shape, profile_name, settings_from_args,
                       write_jobs)

if TYPE_CHECKING:
    from ..runner import Progress

def add_scan_parser(sub: Any, settings_args: Callable[[argparse.ArgumentParser], None]) -> None:
    """The ``scan`` subcommand (``settings_args`` adds --seed, --alpha, --check, --junit-xml ...)."""
    s = sub.add_parser("scan", help="audit every dropout site of a torch, Keras 3 or Flax NNX model: dropverify scan "
                                    "MODULE:FACTORY --shape S",
                       description="MODULE:FACTORY is a callable taking no arguments and returning a torch "
                                   "nn.Module, a Keras 3 model / layer or a Flax NNX module (or such an object); the "
                                   "framework is read from the object. The model runs on the example input in "
                                   "train, eval, eval, train; every dropout-family module and functional dropout "
                                   "call is recorded, checked at model level (exact) and verified in situ under "
                                   "one family-wise false-alarm rate.")
    s.add_argument("model", metavar="MODULE:FACTORY", help="a callable returning the nn.Module to scan")
    s.add_argument("--shape", default=None, help="example input shape, e.g. 8,3,32,32 (a seeded standard normal)")
    s.add_argument("--dtype", default=None, choices=("float16", "bfloat16", "float32", "float64"),
                   help="dtype of the --shape input; the model is cast to it. Default: float32")
    s.add_argument("--input", default=None, metavar="MODULE:FN",
                   help="a callable taking no arguments and returning the example input: a tensor, a tuple of "
                        "tensors (positional) or a dict (keyword); for Keras / NNX numpy or the framework's arrays")
    s.add_argument("--device", default=None, choices=("cpu", "cuda"), help="torch device (torch models only). Default: cpu")
    s.add_argument("--report", default=None, metavar="PATH.md", help="write the Markdown report (JSON beside it)")
    s.add_argument("--eval-active", action="append", default=None, metavar="PATTERN",
                   help="sites that drop in eval by design (MC dropout), an fnmatch pattern of the site's label or "
                        "path (repeatable): verified as dropout in eval at their training rate instead of failed")
    s.add_argument("--expect", action="append", default=None, metavar="PATTERN=RATE",
                   help="the rate sites matching PATTERN (fnmatch of a site's label or path) must have in training, "
                        "e.g. 'blocks.*.attn=0.1' (repeatable); a pattern matching no site is a usage error")
    s.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="N > 1: each site's checks that do not read its shared stream run in a forked process "
                        "meanwhile (torch and Keras-on-torch models; the same results as --jobs 1 unless a site draws from "
                        "global state its seed does not reset). Default: 2 on "
                        "a machine with 2 or more cores, else 1")
    settings_args(s)


def _usage(message: str) -> Exception:
    return UsageError(message)


def _load(ref: str, what: str) -> Any:
    from ..errors import InvalidArgument
    from ..targets.user import load_factory
    try:
        return load_factory(ref)
    except InvalidArgument as exc:
        raise _usage(f"{what} {ref!r}: {exc}") from None


def _call(fn: Any, ref: str) -> Any:
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - the user's callable raised: a usage error, one line
        text = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise _usage(f"{ref}() raised {type(exc).__name__}{': ' + text if text else ''}") from None


def build_model(ref: str) -> Any:
    """The model MODULE:FACTORY names (called without arguments unless it is a model object): a torch
    nn.Module, a Keras 3 model / layer or a Flax NNX module (:mod:`.frameworks`)."""
    from .frameworks import SUPPORTED, detect
    obj = _load(ref, "model")
    model = obj if detect(obj) is not None else _call(obj, ref)
    if detect(model) is None:
        raise _usage(f"model {ref!r} returned a {type(model).__module__}.{type(model).__name__}, but should return "
                     + ", ".join(SUPPORTED[:-1]) + f" or {SUPPORTED[-1]}")
    return model


def _check_input_args(args: argparse.Namespace) -> None:
    if args.shape is None and args.input is None:
        raise _usage("give the example input: --shape S (a seeded standard normal) or --input MODULE:FN")
    if args.shape is not None and args.input is not None:
        raise _usage("--shape and --input: give one")
    if args.input is not None and args.dtype is not None:
        raise _usage("--dtype applies to --shape (an --input function makes its own tensors)")


def build_arrays(args: argparse.Namespace, seed: int, framework: str) -> Any:
    """The example input of a Keras / NNX model: a seeded standard normal numpy array of --shape /
    --dtype (numpy's generator seeded with the scan's seed), or what --input returns (numpy arrays or the
    framework's own arrays; a tuple is positional, a dict keyword)."""
    import numpy as np
    _check_input_args(args)
    if args.input is not None:
        inputs = _call(_load(args.input, "--input"), args.input)
        arrays = inputs if isinstance(inputs, (tuple, list)) else list(inputs.values()) \
            if isinstance(inputs, dict) else [inputs]
        if not arrays or not all(hasattr(a, "shape") and hasattr(a, "dtype") for a in arrays):
            raise _usage(f"--input {args.input!r} returned a {type(inputs).__name__}, but should return an array "
                         f"(numpy or {'Keras backend' if framework == 'keras' else 'jax'}), a tuple of arrays or a "
                         "dict of arrays")
        return inputs
    # numpy's generator, so that a Keras / NNX scan needs no torch and its input is the same wherever it runs
    x = np.random.default_rng(seed).standard_normal(parse_shape(args.shape))
    if args.dtype == "bfloat16":
        import ml_dtypes
        return x.astype(ml_dtypes.bfloat16)
    return x.astype(np.dtype(args.dtype or "float32"))


def build_inputs(args: argparse.Namespace, seed: int) -> Any:
    """The example input: a seeded standard normal of --shape / --dtype, or what --input returns."""
    import torch
    _check_input_args(args)
    if args.input is not None:
        inputs = _call(_load(args.input, "--input"), args.input)
        tensors = inputs if isinstance(inputs, (tuple, list)) else list(inputs.values()) \
            if isinstance(inputs, dict) else [inputs]
        if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
            raise _usage(f"--input {args.input!r} returned a {type(inputs).__name__}, but should return a tensor, "
                         "a tuple of tensors or a dict of tensors")
        return inputs
    shape = parse_shape(args.shape)
    dtype = getattr(torch, args.dtype or "float32")
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)


def _to(inputs: Any, device: str) -> Any:
    import torch
    move = lambda t: t.to(device) if isinstance(t, torch.Tensor) else t  # noqa: E731
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(move(t) for t in inputs)
    if isinstance(inputs, dict):
        return {k: move(v) for k, v in inputs.items()}
    return move(inputs)


def _progress(quiet: bool) -> Optional[Progress]:
    if quiet:
        return None
    start = time.perf_counter()
    state = {"target": None}

    def log(label: str, done: int, total: int) -> None:
        if label == "done":
            sys.stderr.write(f"dropverify: in situ: {total}/{total} checks done in "
                             f"{time.perf_counter() - start:.1f} s\n")
            return
        if label.startswith("done ") and ": " in label:  # a shared-stream check finished: "done <s>: <target>: <check>"
            label = label.split(": ", 1)[1]
        target = label.rsplit(": ", 1)[0]
        if target != state["target"]:
            state["target"] = target
            sys.stderr.write(f"dropverify: in situ: {target} (checks {done}/{total} done, "
                             f"{time.perf_counter() - start:.1f} s)\n")
        sys.stderr.flush()
    return log


def cmd_scan(args: argparse.Namespace, command: str) -> int:
    """``dropverify scan``: validate everything, scan, write the outputs, print the summary."""
    import os
    from ..report import write_junit, write_summary
    from .frameworks import detect, scanner
    from .api import SCAN_MAX_CALLS, scan
    from .plan import choose_checks
    from .report import summary_lines, write_scan

    settings = settings_from_args(args)
    if args.max_calls is None and profile_name(args) is None:  # a profile's calls are kept
        settings = dataclasses.replace(settings, max_calls=SCAN_MAX_CALLS).validate()
    # InvalidArgument (exit 2) for an unknown name; --quick alone: the quick battery (insitu.QUICK_CHECKS)
    checks = choose_checks(args.check) if args.check else choose_checks("quick") if getattr(args, "quick", None) \
        else None
    from .configs import parse_expect
    expect = parse_expect(args.expect)  # InvalidArgument (exit 2) for a bad PATTERN=RATE
    device = args.device or "cpu"
    junit = args.junit_xml
    summary = args.summary or os.environ.get("GITHUB_STEP_SUMMARY") or None
    if args.report is not None:
        if not args.report.endswith(".md"):
            raise _usage(f"--report {args.report!r}, but should end in .md (the JSON lands beside it)")
        check_writable("--report", args.report, folder=False)
    if junit is not None:
        check_writable("--junit-xml", junit, folder=False)
    if summary is not None:
        check_writable("--summary" if args.summary else "$GITHUB_STEP_SUMMARY", summary, folder=False)
    _check_input_args(args)
    jobs = jobs_from_args(args.jobs, split=True)  # each site split between two processes
    if args.input is None:
        parse_shape(args.shape)
    model = build_model(args.model)
    framework = detect(model)
    if framework == "torch":
        import torch
        if device == "cuda" and not torch.cuda.is_available():
            raise _usage("--device cuda, but torch sees no CUDA device")
        inputs = build_inputs(args, settings.seed)
        if args.dtype is not None:
            model = model.to(getattr(torch, args.dtype))
        model, inputs = model.to(device), _to(inputs, device)
    else:
        if args.device is not None:
            raise _usage(f"--device applies to torch models; a {'Keras' if framework == 'keras' else 'Flax NNX'} "
                         "model runs where its framework places it")
        scanner(framework)  # a missing framework package: one line, exit 2
        inputs = build_arrays(args, settings.seed, framework)
    quiet = bool(args.quiet)
    report = scan(model, inputs, settings=settings, checks=checks if checks is not None else "all",
                  progress=_progress(quiet), reproduce=command, eval_active=args.eval_active,
                  expect=expect, jobs=jobs)
    problems = []
    jobs = []
    if args.report is not None:
        jobs.append((f"report {args.report}", lambda: write_scan(report, Path(args.report), command)))
    if junit is not None:
        jobs.append((f"JUnit XML {junit}", lambda: write_junit(report.run, junit, bool(args.strict), command)))
    if summary is not None:
        jobs.append((f"job summary {summary}", lambda: write_summary(report.run, summary, bool(args.strict), command)))
    problems += write_jobs(jobs)
    for line in summary_lines(report):
        print(line)
    inconclusive = any(r.verdict == "INCONCLUSIVE" for r in report.results)
    ok = report.ok and not (args.strict and inconclusive)
    if report.ok and not ok:
        print("NOT OK (--strict: INCONCLUSIVE fails)")
    for line in problems:
        print(f"dropverify: error: {line}", file=sys.stderr)
    return 2 if problems else (0 if ok else 1)


__all__ = ["add_scan_parser", "build_inputs", "build_model", "cmd_scan"]
