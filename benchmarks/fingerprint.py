"""Fingerprint of a reference run: every verdict and number of the JSON reports in a folder.

``python -m benchmarks.fingerprint DIR`` prints one line per result (target, check, verdict,
estimate, interval, n, p-values, minimum detectable deviation, alpha) and a SHA-256 of them;
``--compare OTHER`` says which lines differ between two runs: verdicts first, then numbers.
A refactoring that promises "no behaviour change" shows an identical fingerprint.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Dict, List, Tuple

NUMBERS = ("estimate", "ci", "n", "p_value", "p_adjusted", "mdd", "alpha", "margin", "expected")


def _num(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.12g}"
    if isinstance(v, list):
        return "[" + ",".join(_num(x) for x in v) + "]"
    return str(v)


def fingerprint(folder: Path) -> Dict[Tuple[str, str], Tuple[str, str, str]]:
    """(target, check) -> (verdict, numbers, message) for every result in ``folder/*.json``, and
    (target, "<cause i>") -> (kind, evidence, summary) for its root causes."""
    rows: Dict[Tuple[str, str], Tuple[str, str, str]] = {}
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if "results" not in data:
            continue
        rows[(data["target"], "<target>")] = (data["verdict"], "", "")
        for i, cause in enumerate(data.get("root_causes") or ()):  # the diagnosis, in words
            rows[(data["target"], f"<cause {i}>")] = (cause.get("kind", "FAIL"), " ".join(cause.get("evidence", ())),
                                                      cause.get("summary", ""))
        for r in data["results"]:
            numbers = " ".join(f"{k}={_num(r.get(k))}" for k in NUMBERS)
            rows[(data["target"], r["check"])] = (r["verdict"], numbers, r.get("message", ""))
    return rows


def digest(rows: Dict[Tuple[str, str], Tuple[str, str, str]], messages: bool = True) -> str:
    h = hashlib.sha256()
    for key in sorted(rows):
        verdict, numbers, message = rows[key]
        h.update(f"{key} {verdict} {numbers} {message if messages else ''}\n".encode())
    return h.hexdigest()


def main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.fingerprint")
    ap.add_argument("folder", type=Path)
    ap.add_argument("--compare", type=Path, help="a second run's report folder")
    args = ap.parse_args(argv)
    a = fingerprint(args.folder)
    print(f"{args.folder}: {len(a)} results, verdicts+numbers {digest(a, messages=False)[:16]}, "
          f"with messages {digest(a)[:16]}")
    if args.compare is None:
        return 0
    b = fingerprint(args.compare)
    print(f"{args.compare}: {len(b)} results, verdicts+numbers {digest(b, messages=False)[:16]}, "
          f"with messages {digest(b)[:16]}")
    only = sorted(set(a) ^ set(b))
    verdicts = [k for k in sorted(set(a) & set(b)) if a[k][0] != b[k][0]]
    numbers = [k for k in sorted(set(a) & set(b)) if a[k][0] == b[k][0] and a[k][1] != b[k][1]]
    messages = [k for k in sorted(set(a) & set(b)) if a[k][:2] == b[k][:2] and a[k][2] != b[k][2]]
    print(f"results in one run only: {len(only)}; verdicts differ: {len(verdicts)}; numbers differ "
          f"(same verdict): {len(numbers)}; only the message text differs: {len(messages)}")
    for title, keys in (("only in one", only), ("verdict", verdicts), ("numbers", numbers), ("message", messages)):
        for k in keys:
            print(f"  {title}: {k[0]} {k[1]}: {a.get(k, ('-',))[0]} -> {b.get(k, ('-',))[0]}")
            if title == "message":
                print(f"    before: {a[k][2]}\n    after:  {b[k][2]}")
    return 1 if (only or verdicts or numbers or messages) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
