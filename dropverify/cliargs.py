"""What every ``dropverify`` subcommand shares (``run`` / ``verify`` / ``list`` in
:mod:`dropverify.cli`, ``scan`` in :mod:`dropverify.modelscan.cli`): the usage error, the
Settings its options make, ``--shape``, checking output paths before sampling, and writing the
outputs."""
from __future__ import annotations

import argparse
import math
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from .errors import DropverifyError, key_value_pairs

if TYPE_CHECKING:
    from .settings import Settings

PROFILE_FLAGS = ("--quick", "--thorough")
"""``--quick`` is ``--profile quick``, ``--thorough`` ``--profile thorough`` (:data:`dropverify.settings.PROFILES`)."""


class UsageError(DropverifyError):
    """A command-line mistake: one line on stderr, exit 2."""


def default_seed() -> int:
    """:data:`dropverify.DEFAULT_SEED`, imported on first use (the CLI starts light)."""
    from .settings import DEFAULT_SEED
    return DEFAULT_SEED


def profile_name(args: argparse.Namespace) -> Optional[str]:
    """The profile the options name (``--profile NAME``, ``--quick``, ``--thorough``), None where none
    does; UsageError where two name different ones."""
    named = [(f"--profile {args.profile}", args.profile)] if getattr(args, "profile", None) else []
    named += [(flag, flag[2:]) for flag in PROFILE_FLAGS if getattr(args, flag[2:], None)]
    if len({name for _, name in named}) > 1:
        raise UsageError(f"{named[0][0]} and {named[1][0]}: give one profile")
    return named[0][1] if named else None


def settings_from_args(args: argparse.Namespace, base: Optional[Mapping[str, Any]] = None,
                       margins: Optional[Mapping[str, float]] = None) -> Settings:
    """Settings of the default profile, then the config's values (``base``), then the profile the
    options name (``--profile`` / ``--quick`` / ``--thorough``), then every option given;
    UsageError (one line) for a value out of range."""
    from .settings import DEFAULT_PROFILE, PROFILES, Settings
    values: Dict[str, Any] = dict(PROFILES[DEFAULT_PROFILE].values())
    values.update(base or {})
    name = profile_name(args)
    if name is not None:
        values.update(PROFILES[name].values())
    for key in ("seed", "alpha", "power", "max_calls", "fault_fraction"):
        given = getattr(args, key, None)
        if given is not None:
            values[key] = given
    budget = getattr(args, "time_budget", None)
    if budget is not None:
        if not (budget >= 0 and math.isfinite(budget)):
            raise UsageError(f"--time-budget {budget:g}, but should be a number of seconds >= 0 (0: none)")
        values["time_budget_s"] = budget or None
    seed = values.get("seed", default_seed())
    if seed < 0:
        raise UsageError(f"--seed {seed}, but should be a non-negative integer")
    merged = dict(margins or {})
    given_margins: Dict[str, float] = {}
    for name, value in key_value_pairs(args.margin, "--margin", "NAME=VALUE", "rate=0.02"):
        try:
            given_margins[name] = float(value)
        except ValueError:
            raise UsageError(f"--margin {name}={value!r}, but should be a positive number") from None
    merged.update(given_margins)
    settings = Settings(**values).validate()
    return settings.with_margins(**merged) if merged else settings


OUTPUT_OPTIONS = ("--out", "--report", "--junit-xml", "--summary", "--jobs")
"""Options that say where outputs go, or how many processes share the run (``--jobs``: the same results):
left out of the command line a report states."""


def results_argv(argv: Sequence[str]) -> List[str]:
    """``argv`` without :data:`OUTPUT_OPTIONS` (``--out DIR`` and ``--out=DIR``, ``--jobs N``) and ``--quiet``."""
    out: List[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in OUTPUT_OPTIONS:
            skip = True
        elif arg != "--quiet" and not arg.startswith(tuple(f"{o}=" for o in OUTPUT_OPTIONS)):
            out.append(arg)
    return out


def parse_shape(text: Optional[str]) -> Optional[Tuple[int, ...]]:
    """``--shape 64,32,8,8`` -> (64, 32, 8, 8) (None stays None); UsageError for anything else."""
    if text is None:
        return None
    try:
        shape = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise UsageError(f"--shape {text!r}, but should be comma-separated integers, e.g. 64,32,8,8") from None
    if not shape or any(s < 1 for s in shape):
        raise UsageError(f"--shape {text!r}, but every size should be at least 1")
    return shape


def _nearest_existing(path: Path) -> Path:
    for folder in (path, *path.parents):
        if folder.exists():
            return folder
    return Path(".")


def check_writable(option: str, value: str, folder: bool) -> None:
    """Raise UsageError now (before sampling) if ``value`` cannot be written."""
    path = Path(value)
    if folder and path.exists() and not path.is_dir():
        raise UsageError(f"{option} {value!r}, but it is a file, not a folder")
    if not folder and path.is_dir():
        raise UsageError(f"{option} {value!r}, but it is a folder, not a file")
    if not folder and path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"{option} {value!r}, but the file is not writable")
    anchor = _nearest_existing(path if folder else path.parent)
    if not anchor.is_dir():
        raise UsageError(f"{option} {value!r}, but {str(anchor)!r} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".dropverify-write-test.", dir=anchor)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UsageError(f"{option} {value!r}, but {str(anchor)!r} is not writable ({exc.strerror or exc})") \
            from None


def jobs_from_args(jobs: Optional[int], split: bool) -> int:
    """``--jobs``, or its default where it is absent: 2 where the run splits each configuration
    between two processes (``split``) on a machine with 2 or more cores, else 1; a UsageError
    below 1."""
    if jobs is None:
        return 2 if split and (os.cpu_count() or 1) >= 2 else 1
    if jobs < 1:
        raise UsageError(f"--jobs {jobs}, but should be at least 1")
    return jobs


def write_jobs(jobs: Sequence[Tuple[str, Callable[[], Any]]]) -> List[str]:
    """Run each (what, write) job; print "<what> written", or collect a one-line problem."""
    problems: List[str] = []
    for what, job in jobs:
        try:
            job()
            print(f"{what} written")
        except OSError as exc:
            problems.append(f"writing {what} failed: {exc.strerror or exc}")
    return problems


__all__ = ["OUTPUT_OPTIONS", "PROFILE_FLAGS", "UsageError", "check_writable", "default_seed", "parse_shape",
           "jobs_from_args", "profile_name", "results_argv", "settings_from_args", "write_jobs"]
