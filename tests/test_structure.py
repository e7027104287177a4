"""The package's layering, read statically from its source (ast, nothing is imported): no
import cycle between its main units, no private name imported across top-level modules,
one registry of framework adapters."""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple, Optional, Set, Tuple

PACKAGE = Path(__file__).resolve().parents[1] / "dropverify"

COLLAPSED = ("dropverify.variants", "dropverify.targets", "dropverify.mutants", "dropverify.checks",
             "dropverify.report", "dropverify.modelscan")
"""Packages that count as one unit (every module in them is the package)."""
UNITS = ("dropverify.contracts", "dropverify.variants", "dropverify.targets", "dropverify.mutants",
         "dropverify.checks", "dropverify.runner", "dropverify.isolation", "dropverify.sweep.driver",
         "dropverify.sweep.report", "dropverify.report", "dropverify.cli", "dropverify.api", "dropverify.diagnosis")
"""The units the layering promises no cycle between (a cycle through any other module counts too)."""
KNOWN_CYCLES: Set[frozenset] = set()
"""Cycles accepted for now (each with the reason), as frozensets of units: none."""

KNOWN_PRIVATE_IMPORTS = {
    # dropverify/checks/* is being edited elsewhere: contracts' dtype helper is to be made public with it
    ("dropverify.checks.moments", "dropverify.contracts", "_finfo"),
    # report/ is being edited elsewhere: its figure and icon helpers are to be made public there
    ("dropverify.modelscan.report", "dropverify.report.markdown", "_ICON"),
    ("dropverify.quality", "dropverify.report.plots", "_png"),
    ("dropverify.quality", "dropverify.report.plots", "_pyplot"),
}
"""(importer, module, private name) imports across top-level modules accepted for now."""


class Import(NamedTuple):
    importer: str
    module: str  # the dropverify module imported (or imported from)
    name: Optional[str]  # the name taken from ``module`` (None: the module itself)
    line: int


def modules() -> Dict[str, Path]:
    """Every module of the package by dotted name (a package's ``__init__`` is the package)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(node: ast.AST) -> Iterator[ast.AST]:
    """Every import statement at any depth (functions included), ``if TYPE_CHECKING:`` bodies aside."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for other in child.orelse:
                yield from _import_nodes(ast.Module(body=[other], type_ignores=[]))
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        yield from _import_nodes(child)


def imports(known: Dict[str, Path]) -> List[Import]:
    """Every import of a dropverify module by a dropverify module, relative imports resolved;
    ``from package import submodule`` imports the submodule (and the package, unless the
    package is the importer's own ancestor, which Python has run before the importer)."""
    out = []
    for name, path in known.items():
        is_package = path.name == "__init__.py"
        for node in _import_nodes(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                out += [Import(name, _owner(a.name, known), None, node.lineno)
                        for a in node.names if a.name.split(".")[0] == "dropverify"]
                continue
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != "dropverify":
                continue
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                if sub in known:
                    if not name.startswith(source + "."):
                        out.append(Import(name, source, alias.name, node.lineno))
                    out.append(Import(name, sub, None, node.lineno))
                else:
                    out.append(Import(name, _owner(source, known), alias.name, node.lineno))
    return out


def _owner(dotted: str, known: Dict[str, Path]) -> str:
    while dotted not in known and "." in dotted:
        dotted = dotted.rsplit(".", 1)[0]
    return dotted


def unit(module: str) -> str:
    """The unit a module counts as: its collapsed package, or itself."""
    for package in COLLAPSED:
        if module == package or module.startswith(package + "."):
            return package
    return module


def unit_graph() -> Tuple[Dict[str, Set[str]], Dict[Tuple[str, str], str]]:
    """Edges between units, and per edge one import that makes it (``file:line``)."""
    known = modules()
    graph: Dict[str, Set[str]] = defaultdict(set)
    where: Dict[Tuple[str, str], str] = {}
    for imp in imports(known):
        a, b = unit(imp.importer), unit(imp.module)
        if a != b:
            graph[a].add(b)
            where.setdefault((a, b), f"{known[imp.importer].relative_to(PACKAGE.parent)}:{imp.line}")
    for m in known:
        graph.setdefault(unit(m), set())
    return graph, where


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components with more than one unit (Tarjan), each sorted."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def cycle_path(graph: Dict[str, Set[str]], component: List[str], where: Dict[Tuple[str, str], str]) -> str:
    """One cycle through the component's first unit, each step with the import that makes it."""
    start, inside = component[0], set(component)
    previous: Dict[str, str] = {}
    frontier = [start]
    while frontier:  # breadth-first back to ``start``
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & inside):
                if w == start:
                    path = [start]
                    while v != start:
                        path.append(v)
                        v = previous[v]
                    path = [start] + path[:0:-1] + [start]
                    return " -> ".join(f"{a} ({where[a, b]})" for a, b in zip(path, path[1:])) + f" -> {start}"
                if w not in previous:
                    previous[w] = v
                    nxt.append(w)
        frontier = nxt
    return " <-> ".join(component)


def test_graph_sees_imports_inside_functions_and_skips_type_checking(tmp_path):
    mod = tmp_path / "m.py"
    mod.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import A\nelse:\n"
                   "    from .b import B\n\ndef f():\n    from ..c import C\n    import dropverify.d\n")
    found = [node for node in _import_nodes(ast.parse(mod.read_text()))]
    assert [getattr(n, "module", None) or n.names[0].name for n in found] == ["typing", "b", "c", "dropverify.d"]


def test_graph_resolves_relative_imports():
    known = modules()
    edges = {(i.importer, i.module, i.name) for i in imports(known)}
    assert ("dropverify.variants.dropout", "dropverify.contracts", "register") in edges  # from ..contracts import
    assert ("dropverify.sweep.driver", "dropverify.sweep.execute", "SWEEP_MAX_CALLS") in edges  # from .execute
    assert ("dropverify.runner", "dropverify.checks.engine", None) in edges  # from .checks import engine


def test_no_import_cycle_between_units():
    graph, where = unit_graph()
    assert set(UNITS) <= set(graph), sorted(set(UNITS) - set(graph))
    found = [c for c in cycles(graph) if frozenset(c) not in KNOWN_CYCLES]
    assert not found, "import cycles:\n" + "\n".join(f"among {', '.join(c)}: {cycle_path(graph, c, where)}"
                                                     for c in found)


def test_cycle_report_names_the_path():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    where = {("a", "b"): "a.py:1", ("b", "c"): "b.py:2", ("c", "a"): "c.py:3"}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycle_path(graph, ["a", "b", "c"], where) == "a (a.py:1) -> b (b.py:2) -> c (c.py:3) -> a"


def test_a_fresh_sweep_worker_resolves_mutant_names():
    """``mutant:NAME`` is resolved above the targets (dropverify.naming); a sweep worker that has
    imported only the sweep still gets there."""
    import subprocess
    import sys
    code = ("import sys\n"
            "from dropverify.checks import Settings\n"
            "from dropverify.sweep.execute import Task, run_task\n"
            "from dropverify.sweep.space import Config\n"
            "assert 'dropverify.mutants' not in sys.modules\n"
            "row = run_task(Task('mutant:sweep_float16_no_rescale', None, Config(p=0.1, dtype='float16', "
            "shape=(8, 4, 4)), Settings(seed=3, max_calls=50), ['multiplier_values_exact']))\n"
            "print(row['verdict'], row.get('error'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["FAIL", "None"]


def _top(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_no_private_name_imported_across_top_level_modules():
    """A name with a leading underscore (a function, class or constant) stays in its top-level
    module or package. Private modules (``checks._core``, ``targets._base``, ``_session``) are
    shared across the package by design and not counted."""
    known = modules()
    found = set()
    for imp in imports(known):
        if imp.name is None or f"{imp.module}.{imp.name}" in known:
            continue
        if _private(imp.name) and _top(imp.importer) != _top(imp.module):
            found.add((imp.importer, imp.module, imp.name))
    assert found <= KNOWN_PRIVATE_IMPORTS, sorted(found - KNOWN_PRIVATE_IMPORTS)
    assert KNOWN_PRIVATE_IMPORTS <= found, ("no longer imported: drop from KNOWN_PRIVATE_IMPORTS",
                                            sorted(KNOWN_PRIVATE_IMPORTS - found))


def test_runner_and_isolation_share_only_public_names():
    for imp in imports(modules()):
        pair = {_top(imp.importer), _top(imp.module)}
        if pair == {"dropverify.runner", "dropverify.isolation"}:
            assert imp.name is None or not _private(imp.name), imp
    assert not any(_top(i.module) == "dropverify.runner" for i in imports(modules())
                   if i.importer == "dropverify.isolation"), "isolation imports the runner"


# --------------------------------------------------------------------------- the framework registry

def _defines_targets(path: Path) -> bool:
    """True when the module assigns ``TARGETS`` at module level (an adapter's built-in targets)."""
    for node in ast.parse(path.read_text()).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) \
            else []
        if any(isinstance(t, ast.Name) and t.id == "TARGETS" for t in targets):
            return True
    return False


def test_registry_covers_every_module_that_defines_targets():
    from dropverify.targets import FRAMEWORKS
    known = modules()
    defining = {m for m, path in known.items() if m.startswith("dropverify.targets.") and _defines_targets(path)}
    registered = {f.module for f in FRAMEWORKS}
    assert defining, "no adapter module found"
    assert defining <= registered, f"adapters missing from dropverify.targets.FRAMEWORKS: {sorted(defining - registered)}"
    for f in FRAMEWORKS:
        assert f.module in known, f
        assert f.name == "numpy" or _defines_targets(known[f.module]), f"{f.module} defines no TARGETS"
    assert len({f.name for f in FRAMEWORKS}) == len(FRAMEWORKS)


def test_registry_extras_exist_and_install_the_packages():
    import re
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    from dropverify.targets import FRAMEWORKS
    extras = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for f in FRAMEWORKS:
        if f.extra is None:
            continue
        names = f.extra.split(",")
        assert set(names) <= set(extras), (f.name, names)
        installed = {re.split(r"[\[<>=!~; ]", req, 1)[0] for n in names for req in extras[n]}
        for package in f.packages:
            if package != "jaxlib":  # comes with jax
                assert any(dist.startswith(package) for dist in installed), (f.name, package, sorted(installed))


def test_every_framework_list_is_the_registry(capsys, monkeypatch):
    import dropverify.cli as cli
    import dropverify.runner as runner
    import dropverify.targets as targets
    from dropverify.targets.resolve import is_builtin
    names = tuple(f.name for f in targets.FRAMEWORKS)
    thirdparty = names[1:]
    assert names[0] == "numpy" and targets.THIRDPARTY == thirdparty == tuple(targets.ADAPTERS)
    assert all(is_builtin(f"{n}:Layer") for n in names) and not is_builtin("mutant:x")
    assert runner.FRAMEWORK_PACKAGES == targets.framework_packages(thirdparty)
    parser = cli.build_parser()
    choices = next(a.choices for sub in parser._subparsers._group_actions  # noqa: SLF001 - argparse has no API
                   for name, p in sub.choices.items() if name == "verify-thirdparty"
                   for a in p._actions if "--framework" in a.option_strings)
    assert tuple(choices) == thirdparty
    # ``dropverify list``: numpy, then one line per framework, in registry order (adapters not imported here)
    monkeypatch.setattr(targets, "target_names", lambda fw: (f"{fw}:Layer",))
    assert cli.main(["list"]) == 0
    lines = capsys.readouterr().out.split("targets (", 1)[1].splitlines()[1:len(names) + 1]
    assert [line.split()[0].split(":")[0] for line in lines] == list(names)


# --------------------------------------------------------------------------- private modules (issue 25)

def _package(module: str) -> str:
    """The package a module belongs to (``dropverify.checks._stream`` -> ``dropverify.checks``)."""
    return module.rsplit(".", 1)[0]


def _private_module(module: str) -> bool:
    return any(_private(part) for part in module.split(".")[1:])


KNOWN_PRIVATE_MODULE_IMPORTS = {
    # targets/_base.py holds the Target protocol and TargetSpec; the targets package re-exports only
    # some of its names (numpy_dtype, InputWatch, same_values, ... not yet): to be made public there
    ("dropverify.api", "dropverify.targets._base"), ("dropverify.checks._core", "dropverify.targets._base"),
    ("dropverify.checks._stream", "dropverify.targets._base"), ("dropverify.checks.gradients", "dropverify.targets._base"),
    ("dropverify.checks.values", "dropverify.targets._base"), ("dropverify.config", "dropverify.targets._base"),
    ("dropverify.isolation", "dropverify.targets._base"), ("dropverify.modelscan.insitu", "dropverify.targets._base"),
    ("dropverify.naming", "dropverify.targets._base"), ("dropverify.runner", "dropverify.targets._base"),
    ("dropverify.sweep.driver", "dropverify.targets._base"),
    # the report writers' atomic file helper, shared by the three report front ends
    ("dropverify.modelscan.report", "dropverify.report._io"), ("dropverify.sweep.report", "dropverify.report._io"),
    # the check words the diagnosis quotes
    ("dropverify.diagnosis", "dropverify.checks._words"),
    # DropBlock's theory map, read by the check that fits it and by a mutant built on it
    ("dropverify.checks._dropblock_fit", "dropverify.variants._dropblock_theory"),
    ("dropverify.mutants._dropblock", "dropverify.variants._dropblock_theory"),
}
"""(importer, private module of another package) imports accepted for now, each with its reason."""


def private_module_imports() -> Set[Tuple[str, str]]:
    """(importer, private module of another package) for every such import in the package: a
    private module (a dotted part with a leading underscore) may be imported only from inside
    the package that holds it (``dropverify._session``: anywhere in ``dropverify``)."""
    found = set()
    for imp in imports(modules()):
        if not _private_module(imp.module):
            continue
        parts = imp.module.split(".")
        home = ".".join(parts[:next(i for i, part in enumerate(parts) if i and _private(part))])
        if imp.importer != home and not imp.importer.startswith(home + "."):
            found.add((imp.importer, imp.module))
    return found


def test_no_module_imports_a_private_module_of_another_package():
    found = private_module_imports()
    assert found <= KNOWN_PRIVATE_MODULE_IMPORTS, sorted(found - KNOWN_PRIVATE_MODULE_IMPORTS)
    assert KNOWN_PRIVATE_MODULE_IMPORTS <= found, ("no longer imported: drop from KNOWN_PRIVATE_MODULE_IMPORTS",
                                                   sorted(KNOWN_PRIVATE_MODULE_IMPORTS - found))


def test_the_runner_reaches_the_checks_only_through_public_modules():
    """The runner calls the checks' engine through ``dropverify.checks.engine`` (issue 25): no
    module outside the checks package imports one of its private modules but the two listed."""
    bad = sorted((a, b) for a, b in private_module_imports() if b.startswith("dropverify.checks._")
                 and (a, b) not in KNOWN_PRIVATE_MODULE_IMPORTS)
    assert not bad, bad
    assert not any(b.startswith("dropverify.checks._") for a, b in private_module_imports() if a == "dropverify.runner")
