"""The README's Python and pytest examples run as written: the ``pycon`` block of "From Python"
as a doctest, the test file of "From pytest" under pytester with the README's command, its
pasted output (in docs/usage.md, "From pytest") matched line by line (times and addresses aside)."""
from __future__ import annotations

import doctest
import re
import shlex
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

README = Path(__file__).resolve().parents[1] / "README.md"
USAGE = Path(__file__).resolve().parents[1] / "docs" / "usage.md"


def _section(heading: str, doc: Path = README) -> str:
    text = doc.read_text(encoding="utf-8")
    start = text.index(f"\n{heading}\n")
    end = re.search(r"\n#{2,3} ", text[start + len(heading) + 2:])
    return text[start: start + len(heading) + 2 + (end.start() if end else len(text))]


def _blocks(text: str, lang: str) -> list:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def _mylayers() -> str:
    [code] = [b for b in _blocks(README.read_text(encoding="utf-8"), "python") if b.startswith("# mylayers.py")]
    return code


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    (tmp_path / "mylayers.py").write_text(_mylayers())
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path


def test_python_example_is_a_passing_doctest(workdir):
    pytest.importorskip("torch")
    [block] = _blocks(_section("### From Python: `dropverify.verify()`"), "pycon")
    test = doctest.DocTestParser().get_doctest(block, {}, "README: From Python", str(README), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted >= 6 and result.failed == 0, "the README's pycon block no longer matches a real run"


def _pattern(line: str) -> str:
    """A pasted output line as an fnmatch pattern: literal, except run times and addresses."""
    escaped = "".join(f"[{c}]" if c in "[]*?" else c for c in line)
    escaped = re.sub(r"in \d+\.\d+s", "in *s", escaped)
    if line.startswith("FAILED ") and line.endswith("..."):
        # pytest cuts the short summary to the terminal width, except under CI (CI=1) where it prints it whole
        escaped = escaped[:-3] + "*"
    escaped = re.sub(r" =+$", " =*", re.sub(r"^=+ ", "*= ", escaped))  # rule widths follow the text's width
    return re.sub(r"0x[0-9a-f]+", "0x*", escaped)


def test_pytest_example_gives_the_pasted_output(pytester):
    pytest.importorskip("torch")
    section = _section("### From pytest: the `dropverify` fixture")
    [test_file] = [b for b in _blocks(section, "python") if b.startswith("# test_mylayers.py")]
    [command] = _blocks(section, "sh")
    [output] = _blocks(_section("## From pytest", USAGE), "text")
    pytester.makepyfile(mylayers=_mylayers(), test_mylayers=test_file)
    args = shlex.split(command.strip(), comments=True)
    assert args[0] == "pytest"
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args[1:])
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) > 10
    result.stdout.fnmatch_lines([_pattern(line) for line in lines])
    folders = sorted(p.name for p in (pytester.path / "dropverify-reports").iterdir())
    assert folders == ["test_mylayers.py_test_drops_too_much", "test_mylayers.py_test_torch_dropout",
                       "test_mylayers.py_test_with_the_helper"]
