"""Every shell command of the documentation is run by a test.

The commands are the lines of the ```bash, ```console and ```sh blocks of README.md, CONTRIBUTING.md and
docs/*.md (in a ``console`` block, the lines that start with ``$ ``; the lines after one, up to the next, are its
pasted output). A command's expected exit status is written after it as a comment, ``# exit 1: FAIL``; without
one it is 0. Each command runs in a fresh "checkout" (a temporary folder with copies of pyproject.toml, README.md,
Makefile, dropverify/ and examples/, plus every file the docs define in a ```python block that starts with
``# NAME.py``), through ``bash -c``, with the directory of ``sys.executable`` first on PATH and this repository
on PYTHONPATH, so that ``dropverify`` is the installed console script running this working tree's package.
Pasted output lines must appear in order in stderr followed by stdout (progress goes to stderr, results to stdout);
run times (``3.7 s``, ``in 25.92s``) match any time, and a line starting with ``...`` stands for lines left out.

Commands that cannot run inside a test are checked in a weaker but real way:

* ``make TARGET`` (the test suite itself, a full reference run, installs into .venv): ``make -n TARGET`` must
  succeed in the checkout and print the command the target runs (``dropverify verify --reference`` ...).
* ``pip install ARGS``: run offline as ``python -m pip install --no-index --no-deps --no-build-isolation
  --dry-run ARGS`` in the checkout: the project (with the extras named) must build its metadata and resolve to
  ``Would install dropverify-...``. Nothing is installed and no registry is contacted.
* ``pytest ...`` in the README's "From pytest" section: tests/test_readme.py runs it with pytester and checks
  its pasted output (in docs/usage.md); here it must be that command.

The GitHub Actions workflow of the README is parsed with PyYAML and its ``run:`` steps are executed the same way
(in the step's ``working-directory``); the files its upload step names must exist afterwards.

Commands that import JAX, TensorFlow or Keras on another backend are marked ``frameworks`` (make
test-frameworks); those that take more than about 30 s on a shared 2-core machine are marked ``slow``.
"""
from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent

FRAMEWORKS = re.compile(r"KERAS_BACKEND=(jax|tensorflow)|keras\[|\b(mytflayers|mynnx|mylinen|myeqx|myjaxfn):")
SLOW = ("timm:DropBlock2d", "zeroed_and_not_restored", "keras:SpatialDropout2D", "keras[jax]:Dropout", "--sweep", "timm_vit", "keras_models.py:mobilenet",
        "nnx_models.py:transformer_block")
MAKE_RUNS = {  # what `make -n TARGET` must print: the command the target runs
    "verify": "dropverify verify --reference",
    "verify-thirdparty": "dropverify verify-thirdparty",
    "sweeps": "--sweep",
    "test": "-m pytest",
    "test-slow": '-m "slow and not frameworks and not nightly"',
    "test-nightly": '-m "nightly and not frameworks"',
    "test-frameworks": "-m frameworks",
    "quality": "-m dropverify.quality",
    "bench": "-m benchmarks.run",
    "scan": "dropverify scan examples/scan/scan_models.py:timm_vit",
    "scan-corpus": "dropverify scan examples/scan/corpus.py:",
    "reports": "--out reports/repro",
}


@dataclass(frozen=True)
class Command:
    doc: str
    line: int
    text: str
    exit: int
    output: Tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _commands() -> List[Command]:
    found = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for block in re.finditer(r"^```(bash|console|sh)\n(.*?)^```", text, flags=re.S | re.M):
            first = text.count("\n", 0, block.start(2)) + 1
            lines = block.group(2).splitlines()
            if block.group(1) == "console":
                starts = [i for i, line in enumerate(lines) if line.startswith("$ ")]
                for k, i in enumerate(starts):
                    end = starts[k + 1] if k + 1 < len(starts) else len(lines)
                    cmd = lines[i][2:]
                    found.append(Command(_rel(path), first + i, cmd, _exit(cmd), tuple(lines[i + 1:end])))
            else:
                i = 0
                while i < len(lines):
                    start, cmd = i, lines[i]
                    while cmd.endswith("\\"):
                        i += 1
                        cmd = cmd[:-1] + lines[i]
                    i += 1
                    if cmd.strip() and not cmd.lstrip().startswith("#"):
                        found.append(Command(_rel(path), first + start, cmd.strip(), _exit(cmd)))
    return found


def _exit(cmd: str) -> int:
    m = re.search(r"#\s*exit (\d+)", cmd)
    return int(m.group(1)) if m else 0


def _marks(cmd: str) -> list:
    cmd = " ".join(shlex.split(cmd, comments=True))
    marks = []
    if FRAMEWORKS.search(cmd):
        marks.append(pytest.mark.frameworks)
    if any(s in cmd for s in SLOW):
        marks.append(pytest.mark.slow)
    return marks


COMMANDS = _commands()


def _doc_files() -> dict:
    files = {}
    for path in DOCS:
        for code in re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S):
            m = re.match(r"# (\w+\.py)\n", code)
            if m:
                assert files.setdefault(m.group(1), code) == code, f"{m.group(1)} is defined twice, differently"
    return files


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A throwaway copy of the parts of the repository the commands touch, plus the docs' example files."""
    root = tmp_path / "checkout"
    root.mkdir()
    for name in ("pyproject.toml", "README.md", "Makefile"):
        shutil.copy(ROOT / name, root / name)
    ignore = shutil.ignore_patterns("__pycache__", "dropverify-reports", "*.xml")
    for name in ("dropverify", "examples"):
        shutil.copytree(ROOT / name, root / name, ignore=ignore)
    for name, code in _doc_files().items():
        (root / name).write_text(code)
    return root


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.pop("GITHUB_STEP_SUMMARY", None)
    return env


def _run(cmd: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", cmd], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)


def _pattern(line: str) -> str:
    """A pasted output line as an fnmatch pattern: literal, except run times."""
    escaped = "".join(f"[{c}]" if c in "[]*?" else c for c in line.rstrip())
    escaped = re.sub(r"\b\d+\.\d+ s\b", "* s", escaped)
    return re.sub(r"in \d+\.\d+s\b", "in *s", escaped)


def _assert_output(pasted: Tuple[str, ...], got: str, where: str) -> None:
    lines = [line.rstrip() for line in got.splitlines()]
    pos = 0
    for want in pasted:
        if not want.strip() or want.strip().startswith("..."):
            continue
        pattern = _pattern(want)
        while pos < len(lines) and not fnmatch.fnmatchcase(lines[pos], pattern):
            pos += 1
        assert pos < len(lines), f"{where}: pasted line not in the output (in order):\n{want}\n--- output:\n{got}"
        pos += 1


def _execute(cmd: str, expected: int, cwd: Path, where: str, checkout: Path,
             output: Tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    words = shlex.split(cmd, comments=True)
    if words[:1] == ["make"]:
        [target] = words[1:]
        done = _run(f"make -n {target}", checkout)
        assert done.returncode == 0, f"{where}: make -n {target}: {done.stderr}"
        assert MAKE_RUNS[target] in done.stdout, f"{where}: make -n {target} does not run {MAKE_RUNS[target]!r}"
        return done
    if words[:2] == ["pip", "install"]:
        args = " ".join(shlex.quote(w) for w in words[2:])
        done = _run(f"{shlex.quote(sys.executable)} -m pip install --no-index --no-deps --no-build-isolation "
                    f"--dry-run {args}", cwd)
        assert done.returncode == 0 and "Would install dropverify-" in done.stdout, \
            f"{where}: {cmd}\n{done.stdout}\n{done.stderr}"
        return done
    done = _run(cmd, cwd)
    assert done.returncode == expected, (f"{where}: `{cmd}` exited {done.returncode}, the docs say {expected}\n"
                                         f"--- stdout:\n{done.stdout[-4000:]}\n--- stderr:\n{done.stderr[-4000:]}")
    if output:
        _assert_output(output, done.stderr + done.stdout, where)
    return done


def _readme_pytest_command() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### From pytest"):]
    [command] = re.findall(r"```sh\n(.*?)```", section[:section.index("\n### ", 5)], flags=re.S)
    return command.strip()


@pytest.mark.parametrize("command", [pytest.param(c, id=c.id, marks=_marks(c.text)) for c in COMMANDS])
def test_documented_command_runs(command: Command, checkout: Path) -> None:
    if command.text.startswith("pytest "):
        # tests/test_readme.py::test_pytest_example_gives_the_pasted_output runs it and checks its output
        assert command.text == _readme_pytest_command() and command.exit == 1, command.id
        return
    _execute(command.text, command.exit, checkout, command.id, checkout, command.output)


def test_every_kind_of_command_is_found() -> None:
    texts = [c.text for c in COMMANDS]
    assert any(t.startswith("dropverify run mylayers:make") for t in texts)
    assert any(t.startswith("pip install") for t in texts)
    assert {t.split()[1] for t in texts if t.startswith("make ")} == set(MAKE_RUNS)
    assert all(c.exit in (0, 1, 2) for c in COMMANDS)


def _workflow() -> dict:
    yaml = pytest.importorskip("yaml")
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    [block] = [b for b in re.findall(r"```yaml\n(.*?)```", text, flags=re.S) if b.startswith("# .github/workflows/")]
    return yaml.safe_load(block)


def test_github_actions_job_installs_and_runs(checkout: Path) -> None:
    """The README's workflow: every `run:` step executed as the docs' commands are (pip offline, dry run),
    in its working directory; the reports it uploads exist afterwards."""
    workflow = _workflow()
    [job] = workflow["jobs"].values()
    steps = job["steps"]
    uses = [s["uses"].split("@")[0] for s in steps if "uses" in s]
    assert uses == ["actions/checkout", "actions/setup-python", "actions/upload-artifact"]
    runs = [s for s in steps if "run" in s]
    assert runs[0]["run"].split("#")[0].split() == ["pip", "install", "."], "the job must install dropverify"
    for step in runs:
        cwd = checkout / step.get("working-directory", ".")
        _execute(step["run"], 0, cwd, f"workflow step {step['run']!r}", checkout)
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    for path in upload["with"]["path"].split():
        assert (checkout / path).exists(), path


_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set:
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    return {_slug(m) for m in re.findall(r"^#+ (.*)$", text, flags=re.M)}


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_every_relative_link_resolves_inside_the_repository(doc: Path) -> None:
    text = re.sub(r"^```.*?^```", "", doc.read_text(encoding="utf-8"), flags=re.S | re.M)
    for target in _LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (doc.parent / path).resolve() if path else doc
        assert not path.startswith("/"), f"{_rel(doc)}: absolute link {target}"
        assert dest == ROOT or ROOT in dest.parents, f"{_rel(doc)}: {target} points outside the repository"
        assert dest.exists(), f"{_rel(doc)}: {target} does not exist"
        if anchor and dest.suffix == ".md":
            assert anchor in _anchors(dest), f"{_rel(doc)}: no heading #{anchor} in {_rel(dest)}"


def test_readme_is_short_and_starts_with_the_users_page() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    headings = re.findall(r"^## (.*)$", text, flags=re.M)
    assert headings[:2] == ["Install", "Verify your layer"]


def test_readme_quotes_a_real_report_row() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    intro = text[:text.index("\n## ")]
    [report] = re.findall(r"\]\((reports/[\w.]+\.md)\)", intro)
    rows = [line for line in intro.splitlines() if line.startswith("| `")]
    assert rows and all(row in (ROOT / report).read_text(encoding="utf-8").splitlines() for row in rows)


def test_checks_page_has_one_row_per_registry_check() -> None:
    from dropverify.checks import CHECKS
    text = (ROOT / "docs" / "checks.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([\w\[\]]+)` \|", text, flags=re.M)
    assert rows == [c.name for c in CHECKS]


def test_contributing_layout_names_every_module() -> None:
    text = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    layout = text[text.index("## Layout"):text.index("## Add a variant")]
    package = ROOT / "dropverify"
    for entry in sorted(package.iterdir()):
        if entry.name.startswith("__pycache__") or entry.name in ("__init__.py",):
            continue
        name = entry.name + ("/" if entry.is_dir() else "")
        assert name in layout, f"the layout in CONTRIBUTING.md does not mention dropverify/{name}"
    for folder in ("checks", "targets", "variants", "mutants", "report", "sweep", "modelscan"):
        assert f"dropverify/{folder}/" in layout
