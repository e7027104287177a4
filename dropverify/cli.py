"""The ``dropverify`` command line.

Exit codes: 0 every check PASS or INCONCLUSIVE; 1 any FAIL or ERROR; 2 usage error (one
line on stderr naming the problem, never a traceback).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from .errors import DropverifyError

THIRDPARTY = ("torch", "torchvision", "timm", "keras")


class UsageError(DropverifyError):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        raise UsageError(f"{self.prog}: {message}")


def _settings_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=20261126, help="master seed. Default: %(default)r")
    p.add_argument("--alpha", type=float, default=1e-3,
                   help="family-wise false-alarm rate of the whole run (Holm). Default: %(default)r")
    p.add_argument("--power", type=float, default=0.99,
                   help="power that defines each minimum detectable deviation. Default: %(default)r")
    p.add_argument("--max-calls", type=int, default=20000, help="calls per statistical check. Default: %(default)r")
    p.add_argument("--check", action="append", default=None, metavar="NAME",
                   help="run only this check (repeatable); see `dropverify list`")
    p.add_argument("--margin", action="append", default=[], metavar="NAME=VALUE",
                   help="equivalence margin a PASS certifies (repeatable): rate=0.05 (x min(p,1-p)), "
                        "position=0.25 (x min(q,1-q) per position), mean=0.01 (relative bias), variance=0.05, "
                        "dependence=0.2 (relative risk - 1), correlation=0.05, gamma=0.1 (relative)")
    p.add_argument("--fault-fraction", type=float, default=0.05,
                   help="a PASS sees enough independent calls that a fault striking this fraction of calls "
                        "appears in one of them (probability >= 1 - alpha). Default: %(default)r")
    p.add_argument("--quiet", action="store_true", help="no progress display")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dropverify", description="Certify dropout-family layers against their contracts.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    v = sub.add_parser("verify", help="verify the reference variants (or --target NAME built-in targets)")
    v.add_argument("--variant", action="append", default=None, help="only this reference variant (repeatable)")
    v.add_argument("--target", action="append", default=None,
                   help="built-in target instead, e.g. torch:Dropout2d (repeatable)")
    v.add_argument("--out", default="reports", help="report folder. Default: %(default)r")
    _settings_args(v)
    t = sub.add_parser("verify-thirdparty", help="verify every built-in PyTorch / torchvision / timm / Keras target")
    t.add_argument("--framework", action="append", choices=THIRDPARTY, default=None,
                   help="only this framework (repeatable)")
    t.add_argument("--out", default="reports/thirdparty", help="report folder. Default: %(default)r")
    _settings_args(t)
    r = sub.add_parser("run", help="verify your own layer: dropverify run MODULE:FACTORY --variant NAME")
    r.add_argument("factory", metavar="MODULE:FACTORY",
                   help="importable module (or path/to/file.py) and a callable taking the variant's parameters "
                        "as keyword arguments and returning a torch nn.Module, a Keras layer or a numpy layer")
    r.add_argument("--variant", required=True, help="the contract the layer claims, e.g. dropout, dropblock_2d")
    r.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a variant parameter, e.g. p=0.1 (repeatable)")
    r.add_argument("--shape", default=None, help="probe input shape, e.g. 64,32,8,8. Default: the contract's")
    r.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="torch device. Default: %(default)r")
    r.add_argument("--report", default=None, metavar="PATH.md", help="write a Markdown report (JSON beside it)")
    _settings_args(r)
    sub.add_parser("list", help="list variants, checks and targets")
    return parser


def _progress(quiet: bool):
    if quiet or not sys.stderr.isatty():
        return None

    def show(label: str, done: int, total: int) -> None:
        end = "\n" if label == "done" else ""
        sys.stderr.write(f"\r\x1b[2K[{done}/{total}] {label[:100]}{end}")
        sys.stderr.flush()

    return show


def _settings(args: argparse.Namespace):
    from .checks import Settings
    from .errors import InvalidArgument
    margins = {}
    for item in args.margin:
        name, sep, value = item.partition("=")
        if not sep:
            raise InvalidArgument(f"--margin {item!r}, but should be NAME=VALUE, e.g. rate=0.02")
        if name.strip() in margins:
            raise InvalidArgument(f"--margin {name.strip()} given twice")
        try:
            margins[name.strip()] = float(value)
        except ValueError:
            raise InvalidArgument(f"--margin {name}={value!r}, but should be a positive number") from None
    base = Settings(seed=args.seed, alpha=args.alpha, power=args.power, max_calls=args.max_calls,
                    fault_fraction=args.fault_fraction).validate()
    return base.with_margins(**margins) if margins else base


def _finish(run, out: Optional[str], title: str, quiet: bool) -> int:
    from .report import write_reports
    if out is not None:
        paths = write_reports(run, out, title)
        index = [p for p in paths if p.name == "index.md"]
        print(f"reports written to {out}/ ({len(paths)} files){'; see ' + str(index[0]) if index else ''}")
    for target in run.targets:
        counts = target.counts()
        print(f"{target.verdict:12s} {target.spec_name}  "
              + " ".join(f"{k}={v}" for k, v in counts.items() if v))
        for cause in target.root_causes:
            print(f"  cause: {cause.summary}  [{', '.join(cause.evidence)}]")
        explained = {c for cause in target.root_causes if cause.kind == "ERROR" for c in cause.evidence}
        explained |= {cause.evidence[0] for cause in target.root_causes
                      if cause.summary.startswith(f"{cause.evidence[0]}:")}
        for r in target.results:
            if r.check in explained:
                continue  # already said in full by its root-cause line
            if r.verdict == "FAIL" or (r.verdict == "INCONCLUSIVE" and not quiet):
                print(f"    {r.verdict}: {r.check}: {r.message}")
    print(f"{'OK' if run.ok else 'NOT OK'}: {len(run.targets)} target(s), "
          f"family-wise false-alarm rate {run.settings.alpha:g}, {run.seconds:.1f} s")
    return 0 if run.ok else 1


def cmd_verify(args: argparse.Namespace) -> int:
    from .runner import verify
    from .targets import get_target, reference_spec, reference_targets
    if args.target:
        specs = [s for name in args.target for s in get_target(name)]
    elif args.variant:
        specs = [reference_spec(v) for v in args.variant]
    else:
        specs = reference_targets()
    run = verify(specs, _settings(args), checks=args.check, progress=_progress(args.quiet))
    return _finish(run, args.out, "dropverify: reference variants" if not args.target else "dropverify", args.quiet)


def cmd_thirdparty(args: argparse.Namespace) -> int:
    from .runner import verify
    from .targets import get_target, target_names
    specs = []
    for fw in args.framework or THIRDPARTY:
        for name in target_names(fw):
            specs.extend(get_target(name))
    run = verify(specs, _settings(args), checks=args.check, progress=_progress(args.quiet))
    return _finish(run, args.out, "dropverify: third-party implementations", args.quiet)


def cmd_run(args: argparse.Namespace) -> int:
    from .report import write_target_report
    from .runner import verify
    from .targets.user import user_spec
    params = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--param {item!r}, but should be KEY=VALUE, e.g. p=0.1")
        params[key.strip()] = _literal(value.strip())
    shape = None
    if args.shape:
        try:
            shape = tuple(int(s) for s in args.shape.split(",") if s.strip())
        except ValueError:
            raise UsageError(f"--shape {args.shape!r}, but should be comma-separated integers, e.g. 64,32,8,8") from None
    spec = user_spec(args.factory, args.variant, params, shape=shape, device=args.device)
    run = verify([spec], _settings(args), checks=args.check, progress=_progress(args.quiet))
    if args.report:
        path = Path(args.report)
        if path.suffix != ".md":
            raise UsageError(f"--report {args.report!r}, but should end in .md (the JSON lands beside it)")
        write_target_report(run, run.targets[0], path)
        print(f"report written to {path} (+ {path.with_suffix('.json').name})")
    return _finish(run, None, "", args.quiet)


def _literal(text: str):
    import ast
    if text in ("true", "false"):
        return text == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def cmd_list(args: argparse.Namespace) -> int:
    from .checks import CHECKS
    from .contracts import all_contracts
    from .errors import TargetUnavailable
    from .targets import ADAPTERS, target_names
    print("variants:")
    for c in all_contracts():
        print(f"  {c.name:24s} {c.summary}")
    print("checks:")
    for c in CHECKS:
        print(f"  {c.name:48s} {c.property}")
    print("targets:")
    print("  numpy:<variant>          our reference implementations")
    for fw in ADAPTERS:
        try:
            names = target_names(fw)
            print("  " + "  ".join(names))
        except TargetUnavailable as exc:
            print(f"  {fw}: unavailable — {exc}")
    return 0


COMMANDS = {"verify": cmd_verify, "verify-thirdparty": cmd_thirdparty, "run": cmd_run, "list": cmd_list}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
        return COMMANDS[args.command](args)
    except DropverifyError as exc:
        print(f"dropverify: error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dropverify: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
