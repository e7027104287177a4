"""The project configuration: ``[tool.dropverify]`` in a ``pyproject.toml`` (or the top level
of a ``dropverify.toml``) lists a project's layers, and ``dropverify verify`` in that
repository verifies them all in one run (one family-wise false-alarm rate).

Example (``examples/project/pyproject.toml`` is a runnable one)::

    [tool.dropverify]
    seed = 20261126            # run settings (all optional): seed, alpha, power, max_calls,
    max_calls = 2000           # fault_fraction, out, strict, margins
    out = "dropverify-reports"
    margins = { mean = 0.02 }

    [[tool.dropverify.layers]]
    target = "mylayers:make_dropout"     # MODULE:FACTORY (imported from this folder) or a built-in name
    variant = "dropout"                  # required for factories
    params = { p = 0.1 }
    shapes = [[64, 32], [16, 8, 4]]      # or shape = [64, 32]; one configuration per shape
    dtype = "float32"                    # float16, bfloat16, float32, float64 (default)
    layout = "contiguous"
    waive = { masks_never_repeat_by_hash = "why this check does not apply to us" }

Every mistake is an :class:`~dropverify.errors.InvalidArgument` whose one line names the
file and the key.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from .errors import InvalidArgument
from .targets._base import TargetSpec

CONFIG_FILES = ("dropverify.toml", "pyproject.toml")
SETTING_KEYS = {"seed": int, "alpha": float, "power": float, "max_calls": int, "fault_fraction": float}
TOP_KEYS = set(SETTING_KEYS) | {"out", "strict", "margins", "layers", "checks"}
LAYER_KEYS = {"target", "variant", "params", "shape", "shapes", "dtype", "dtypes", "layout", "layouts", "device",
              "margins", "waive", "sweep", "name"}
DTYPES = ("float16", "bfloat16", "float32", "float64")


def _load_toml(path: Path) -> Dict[str, Any]:
    try:
        import tomllib  # type: ignore[import-not-found]
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgument(f"{path} is not valid TOML: {exc}") from None


@dataclass(frozen=True)
class MarginSpec(TargetSpec):
    """A target spec with its own equivalence margins (short names: rate, position, mean ...),
    which the runner applies to this target's checks on top of the run's."""

    margins: Mapping[str, float] = field(default_factory=dict)


def with_margins(spec: TargetSpec, margins: Mapping[str, float]) -> TargetSpec:
    """``spec`` carrying ``margins`` (unchanged when there are none)."""
    if not margins:
        return spec
    fields = {f.name: getattr(spec, f.name) for f in dataclasses.fields(TargetSpec)}
    return MarginSpec(**fields, margins=dict(margins))


@dataclass(frozen=True)
class LayerConfig:
    """One ``[[tool.dropverify.layers]]`` entry: a target and the configurations to verify it in."""

    target: str
    variant: Optional[str] = None
    params: Mapping[str, Any] = field(default_factory=dict)
    shapes: Tuple[Optional[Tuple[int, ...]], ...] = (None,)
    dtypes: Tuple[str, ...] = ("float64",)
    layouts: Tuple[str, ...] = ("contiguous",)
    device: str = "cpu"
    margins: Mapping[str, float] = field(default_factory=dict)
    waive: Mapping[str, str] = field(default_factory=dict)
    sweep: bool = False
    name: Optional[str] = None

    def configurations(self) -> List[Tuple[Optional[Tuple[int, ...]], str, str]]:
        """(shape, dtype, layout) of every configuration this entry asks for, in file order."""
        return [(s, d, lay) for s in self.shapes for d in self.dtypes for lay in self.layouts]


@dataclass(frozen=True)
class ProjectConfig:
    """A validated ``[tool.dropverify]`` table; ``root`` is the folder holding the file."""

    path: Path
    layers: Tuple[LayerConfig, ...]
    settings: Mapping[str, Any] = field(default_factory=dict)
    margins: Mapping[str, float] = field(default_factory=dict)
    checks: Optional[Tuple[str, ...]] = None
    out: Optional[str] = None
    strict: bool = False

    @property
    def root(self) -> Path:
        return self.path.parent

    def out_dir(self) -> Optional[Path]:
        """The report folder, relative to the config file's folder."""
        return None if self.out is None else (self.root / self.out)


def find_config(start: Optional[Path] = None) -> Optional[Path]:
    """The nearest ``dropverify.toml``, or ``pyproject.toml`` with a ``[tool.dropverify]`` table,
    in ``start`` (default: the working directory) or a parent up to the repository root."""
    return locate_config(start)[0]


def locate_config(start: Optional[Path] = None) -> Tuple[Optional[Path], str]:
    """(:func:`find_config`'s answer, and where it is None, one line saying why: the nearest
    ``pyproject.toml`` has no ``[tool.dropverify]`` table, naming a misspelt table such as
    ``[tool.dropverfy]`` or a misspelt ``dropverify.toml`` file where there is one)."""
    here = Path(start or Path.cwd()).resolve()
    nearest: Optional[Path] = None
    near_misses: List[str] = []
    for folder in (here, *here.parents):
        if (folder / "dropverify.toml").is_file():
            return folder / "dropverify.toml", ""
        near_misses += [_display(folder / n) for n in _near_miss_files(folder)]
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            try:
                data = _load_toml(pyproject)
            except InvalidArgument:
                data = {"tool": {"dropverify": {}}}  # report the syntax error when it is loaded
            if "dropverify" in data.get("tool", {}):
                return pyproject, ""
            nearest = nearest or pyproject
            near_misses += [f"[{t}] in {_display(pyproject)}" for t in near_miss_tables(data)]
        if (folder / ".git").exists():
            break
    if nearest is not None:
        why = f"{_display(nearest)} has no [tool.dropverify] table"
    else:
        why = "no pyproject.toml with a [tool.dropverify] table (or dropverify.toml) here or above"
    if near_misses:
        why += f" (found {near_misses[0]}: a misspelling?)"
    return None, why


def _display(path: Path) -> str:
    """``path`` relative to the working directory where it lies below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def near_miss_tables(data: Mapping[str, Any]) -> List[str]:
    """Table names in a parsed pyproject.toml that look like a misspelt ``[tool.dropverify]``
    (``tool.dropverfy``, ``tools.dropverify``, a top-level ``dropverify``, ``tool.drop-verify``)."""
    import difflib
    names = []
    for key, value in data.items():
        if isinstance(value, dict):
            names.append(str(key))
            names += [f"{key}.{sub}" for sub, v in value.items() if isinstance(v, dict)]
    names = [n for n in names if n != "tool.dropverify" and not n.startswith("tool.dropverify.")]
    squash = [n.lower().replace("-", "").replace("_", "") for n in names]
    close = set(difflib.get_close_matches("tool.dropverify", squash, n=3, cutoff=0.8))
    return [n for n, q in zip(names, squash) if q in close or "dropverify" in q.split(".")[-1]]


def _near_miss_files(folder: Path) -> List[str]:
    """Files in ``folder`` named like a misspelt ``dropverify.toml``."""
    import difflib
    try:
        names = [p.name for p in folder.iterdir() if p.is_file() and p.name != "pyproject.toml"]
    except OSError:
        return []
    return difflib.get_close_matches("dropverify.toml", names, n=1, cutoff=0.8)


def load_config(path: Path) -> ProjectConfig:
    """Read and validate ``path`` (a pyproject.toml with [tool.dropverify], or a dropverify.toml)."""
    path = Path(path)
    data = _load_toml(path)
    if path.name == "pyproject.toml" or "tool" in data:
        table = data.get("tool", {}).get("dropverify")
        where = "[tool.dropverify]"
        if table is None:
            near = near_miss_tables(data)
            raise InvalidArgument(f"{path} has no [tool.dropverify] table"
                                  + (f" (found [{near[0]}]: a misspelling?)" if near else ""))
    else:
        table, where = data, ""
    return parse_config(table, path, where)


def _err(path: Path, key: str, problem: str) -> InvalidArgument:
    return InvalidArgument(f"{path.name}: {key} {problem}")


def _shape(value: Any, path: Path, key: str) -> Tuple[int, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, int) and not isinstance(v, bool)
                                                           for v in value):
        raise _err(path, key, f"= {value!r}, but should be a list of positive integers, e.g. [64, 32]")
    if any(v <= 0 for v in value):
        raise _err(path, key, f"= {value!r}, but every size should be at least 1")
    return tuple(value)


def _str_list(value: Any, path: Path, key: str, choices: Optional[Sequence[str]] = None) -> Tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) for v in items):
        raise _err(path, key, f"= {value!r}, but should be a string or a list of strings")
    for v in items:
        if choices is not None and v not in choices:
            raise _err(path, key, f"= {v!r}, but should be one of {', '.join(choices)}")
    return tuple(items)


def _margins(value: Any, path: Path, key: str) -> Dict[str, float]:
    from .settings import MARGIN_FIELDS
    if not isinstance(value, dict):
        raise _err(path, key, f"= {value!r}, but should be a table, e.g. {{ rate = 0.05 }}")
    out = {}
    for name, v in value.items():
        if name not in MARGIN_FIELDS:
            raise _err(path, f"{key}.{name}", f"is not a margin; known: {', '.join(MARGIN_FIELDS)}")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise _err(path, f"{key}.{name}", f"= {v!r}, but should be a positive number")
        out[name] = float(v)
    return out


def _layer(entry: Any, path: Path, key: str) -> LayerConfig:
    from .checknames import producing_check
    if not isinstance(entry, dict):
        raise _err(path, key, "should be a table ([[tool.dropverify.layers]])")
    unknown = sorted(set(entry) - LAYER_KEYS)
    if unknown:
        raise _err(path, f"{key}.{unknown[0]}", f"is not a layer key; known: {', '.join(sorted(LAYER_KEYS))}")
    target = entry.get("target")
    if not isinstance(target, str) or ":" not in target:
        raise _err(path, f"{key}.target", f"= {target!r}, but should be MODULE:FACTORY or a built-in name such as "
                                          "'torch:Dropout2d'")
    variant = entry.get("variant")
    if variant is not None and not isinstance(variant, str):
        raise _err(path, f"{key}.variant", f"= {variant!r}, but should be a variant name, e.g. 'dropout'")
    params = entry.get("params", {})
    if not isinstance(params, dict):
        raise _err(path, f"{key}.params", f"= {params!r}, but should be a table, e.g. {{ p = 0.1 }}")
    if "shape" in entry and "shapes" in entry:
        raise _err(path, key, "has both shape and shapes; give one")
    shapes: Tuple[Optional[Tuple[int, ...]], ...] = (None,)
    if "shape" in entry:
        shapes = (_shape(entry["shape"], path, f"{key}.shape"),)
    elif "shapes" in entry:
        raw = entry["shapes"]
        if not isinstance(raw, list) or not raw:
            raise _err(path, f"{key}.shapes", f"= {raw!r}, but should be a list of shapes, e.g. [[64, 32]]")
        shapes = tuple(_shape(s, path, f"{key}.shapes[{i}]") for i, s in enumerate(raw))
    for one, many in (("dtype", "dtypes"), ("layout", "layouts")):
        if one in entry and many in entry:
            raise _err(path, key, f"has both {one} and {many}; give one")
    dtypes = _str_list(entry.get("dtype", entry.get("dtypes", "float64")), path, f"{key}.dtype", DTYPES)
    layouts = _str_list(entry.get("layout", entry.get("layouts", "contiguous")), path, f"{key}.layout")
    device = entry.get("device", "cpu")
    if device not in ("cpu", "cuda"):
        raise _err(path, f"{key}.device", f"= {device!r}, but should be 'cpu' or 'cuda'")
    waive = entry.get("waive", {})
    if not isinstance(waive, dict):
        raise _err(path, f"{key}.waive", "should be a table: check name = \"reason\"")
    for check, reason in waive.items():
        try:
            producing_check(check)
        except InvalidArgument:
            raise _err(path, f"{key}.waive.{check}", "is not a check name (see `dropverify list`)") from None
        if not isinstance(reason, str) or not reason.strip():
            raise _err(path, f"{key}.waive.{check}", "needs a reason: a non-empty string saying why")
    sweep = entry.get("sweep", False)
    if not isinstance(sweep, bool):
        raise _err(path, f"{key}.sweep", f"= {sweep!r}, but should be true or false")
    name = entry.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise _err(path, f"{key}.name", f"= {name!r}, but should be a non-empty string")
    return LayerConfig(target=target, variant=variant, params=dict(params), shapes=shapes, dtypes=dtypes,
                       layouts=layouts, device=device, margins=_margins(entry.get("margins", {}), path,
                                                                          f"{key}.margins"),
                       waive={k: v.strip() for k, v in waive.items()}, sweep=sweep, name=name)


def parse_config(table: Mapping[str, Any], path: Path, where: str = "[tool.dropverify]") -> ProjectConfig:
    """Validate the ``[tool.dropverify]`` table read from ``path``."""
    from .checknames import producing_check
    prefix = f"{where}." if where else ""
    unknown = sorted(set(table) - TOP_KEYS)
    if unknown:
        raise _err(path, f"{prefix}{unknown[0]}", f"is not a dropverify key; known: {', '.join(sorted(TOP_KEYS))}")
    settings: Dict[str, Any] = {}
    for key, kind in SETTING_KEYS.items():
        if key in table:
            v = table[key]
            ok = isinstance(v, int) if kind is int else isinstance(v, (int, float))
            if isinstance(v, bool) or not ok:
                raise _err(path, f"{prefix}{key}", f"= {v!r}, but should be {'an integer' if kind is int else 'a number'}")
            settings[key] = kind(v)
    out = table.get("out")
    if out is not None and (not isinstance(out, str) or not out.strip()):
        raise _err(path, f"{prefix}out", f"= {out!r}, but should be a folder name")
    strict = table.get("strict", False)
    if not isinstance(strict, bool):
        raise _err(path, f"{prefix}strict", f"= {strict!r}, but should be true or false")
    checks = table.get("checks")
    if checks is not None:
        checks = _str_list(checks, path, f"{prefix}checks")
        for c in checks:
            try:
                producing_check(c)
            except InvalidArgument:
                raise _err(path, f"{prefix}checks", f"names {c!r}, which is not a check (see `dropverify list`)") \
                    from None
    layers = table.get("layers")
    if not isinstance(layers, list) or not layers:
        raise _err(path, f"{prefix}layers", "is missing: list your layers as [[tool.dropverify.layers]] tables "
                                            "with at least target = \"MODULE:FACTORY\"")
    parsed = tuple(_layer(e, path, f"{prefix}layers[{i}]") for i, e in enumerate(layers))
    return ProjectConfig(path=path, layers=parsed, settings=settings,
                         margins=_margins(table.get("margins", {}), path, f"{prefix}margins"),
                         checks=checks, out=out, strict=strict)


@contextlib.contextmanager
def project_imports(root: Path) -> Iterator[None]:
    """Inside: the working directory is ``root`` and ``root`` is first on ``sys.path``, so
    ``MODULE:FACTORY`` and ``path/to/file.py:FACTORY`` resolve as written in the config.
    ``root`` stays on ``sys.path`` afterwards: factories may import lazily when called."""
    old_cwd = Path.cwd()
    root_s = str(Path(root).resolve())
    if root_s not in sys.path:
        sys.path.insert(0, root_s)
    os.chdir(root_s)
    try:
        yield
    finally:
        os.chdir(old_cwd)


__all__ = ["CONFIG_FILES", "LayerConfig", "MarginSpec", "with_margins", "ProjectConfig", "find_config", "load_config",
           "locate_config", "near_miss_tables", "parse_config",
           "project_imports"]
