"""Where a report comes from, in words that are the same on every machine: the tool version and
the harness fingerprint. Light to import (the CLI's ``--version`` reads it before anything else).

The harness fingerprint is a short hash of the source files that determine results: every
``.py`` file of the ``dropverify`` package except the front ends and the renderers listed in
:data:`NOT_RESULTS` (command lines, report writers, reproduction text, the pytest plugin). The
``benchmarks/`` scripts are not hashed (other scripts come and go there; the two that write
committed reports, ``long_horizon`` and ``run``, only drive the package). Every
committed report carries it on one line (``Harness fingerprint: 0123abcd4567ef89``, JSON
``harness``); ``tests/test_report_fingerprint.py`` fails when a committed report's fingerprint
is not the current harness's, so a change to the checks, the statistics, the variants, the
targets or the runner that is not followed by ``make reports`` is caught. A change to a
renderer alone does not change the fingerprint (the results it renders are the same).
"""
from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from pathlib import Path
from typing import Iterable, List, Optional

PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parent

NOT_RESULTS = ("cli.py", "cliargs.py", "provenance.py", "pytest_plugin.py", "testing.py", "_session.py",
               "reproduce.py", "report/*", "modelscan/cli.py", "modelscan/report.py", "sweep/report.py")
"""Package files (relative to ``dropverify/``, ``*`` a folder's files) left out of the fingerprint:
they parse command lines or render results, and never change a verdict or a number."""

FINGERPRINT_LINE = re.compile(r"Harness fingerprint: `?([0-9a-f]{16})`?")
"""How a Markdown report states the fingerprint it was made with."""


def tool_version() -> str:
    """The installed dropverify version (``dropverify.__version__`` when not installed)."""
    try:
        from importlib.metadata import version
        return version("dropverify")
    except Exception:  # noqa: BLE001 - running from a bare source tree
        from . import __version__
        return __version__


def _excluded(rel: str) -> bool:
    return any(rel == pat or (pat.endswith("/*") and rel.startswith(pat[:-1])) for pat in NOT_RESULTS)


def harness_files(root: Optional[Path] = None) -> List[Path]:
    """The files the fingerprint hashes, sorted: the package's result-determining ``.py`` files."""
    root = Path(root) if root is not None else ROOT
    package = root / "dropverify"
    files = [p for p in package.rglob("*.py") if not _excluded(p.relative_to(package).as_posix())]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def fingerprint_of(files: Iterable[Path], root: Path) -> str:
    """16 hex digits of SHA-256 over each file's path (relative to ``root``) and bytes, line ends
    normalised to ``\\n`` (a checkout on Windows hashes the same)."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes().replace(b"\r\n", b"\n") + b"\0")
    return digest.hexdigest()[:16]


@lru_cache(maxsize=1)
def harness_fingerprint() -> str:
    """The fingerprint of the harness this process runs (see the module docstring)."""
    return fingerprint_of(harness_files(), ROOT)


def report_fingerprint(text: str) -> Optional[str]:
    """The fingerprint a report's text states (Markdown line or JSON ``"harness"``); None if none."""
    found = FINGERPRINT_LINE.search(text) or re.search(r'"harness": "([0-9a-f]{16})"', text)
    return found[1] if found else None


def fingerprint_line() -> str:
    """The Markdown line every committed report carries."""
    return f"Harness fingerprint: `{harness_fingerprint()}` (`make reports` regenerates every report; see " \
           "docs/usage.md#reproducible-reports)."


__all__ = ["FINGERPRINT_LINE", "NOT_RESULTS", "fingerprint_line", "fingerprint_of", "harness_files",
           "harness_fingerprint", "report_fingerprint", "tool_version"]
