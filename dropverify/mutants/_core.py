"""The :class:`Mutant` record shared by every mutant module (kept apart from the package's
``__init__`` so family modules can import it without a cycle)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Tuple

# The rows of /work/shared/research/bug-classes.md (first column, verbatim), plus the
# catch-all for slips with no public case behind them.
BUG_CLASSES: Tuple[str, ...] = (
    "mask shared along the wrong axis",
    "values scrambled on unusual layouts",
    "DropBlock gamma or geometry wrong",
    "same mask every call (RNG never advances)",
    "same mask on every device / replica / batch element",
    "backward uses a different mask or scale than forward",
    "gradient missing",
    "still dropping in eval mode",
    "edge probabilities",
    "non-finite inputs",
    "dropout silently has no effect",
    "obvious slip",
)


@dataclass(frozen=True)
class Mutant:
    """One deliberately broken implementation and what the harness must say about it.

    name : short id; its target is called ``mutant:<name>``.
    variant : canonical variant whose contract the mutant claims to honour.
    params : canonical parameters it is verified at (contract defaults fill the rest).
    bug_class : a row of bug-classes.md (see :data:`BUG_CLASSES`) or "obvious slip".
    source : the public case it models (e.g. "apex PR 816").
    kills : check-name prefixes; every result whose name starts with one of them must FAIL
        (and at least one such result must exist), e.g. ``"multiplier_values_exact"`` covers
        every layout, ``"multiplier_values_exact[transposed]"`` only that one.
    factory : numpy mutants: ``factory(params_dict) -> layer`` (the ``numpy_spec`` convention);
        torch mutants: ``factory(**params) -> nn.Module`` (the ``torch_spec`` convention).
    framework : "numpy" or "torch".
    shape : probe shape when the bug needs one other than the contract default (e.g. a
        non-square DropBlock map); the reference is run on the same shape.
    reference : optional factory (same convention as ``factory``) of a CORRECT
        implementation in the same framework; the numpy reference of ``variant`` is used
        when it is None. It proves that a kill comes from the slip, not from the adapter.
    notes : what the slip is, in one or two sentences.
    known_gap : empty, or why the harness (as of this corpus) does NOT make every ``kills``
        check FAIL: a documented blind spot, reported rather than hidden. The meta-tests
        mark such a kill as an expected failure (strict: it flips to an error once fixed).
    """

    name: str
    variant: str
    params: Mapping[str, Any]
    bug_class: str
    source: str
    kills: Tuple[str, ...]
    factory: Callable[..., Any]
    framework: str = "numpy"
    shape: Optional[Tuple[int, ...]] = None
    reference: Optional[Callable[..., Any]] = None
    notes: str = ""
    known_gap: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def target_name(self) -> str:
        return f"mutant:{self.name}"


def mutant(name: str, variant: str, cls_or_factory: Callable[..., Any], *, kills: Tuple[str, ...],
           bug_class: str, source: str, params: Optional[Mapping[str, Any]] = None,
           shape: Optional[Tuple[int, ...]] = None, notes: str = "", known_gap: str = "") -> Mutant:
    """A numpy mutant whose layer is ``cls_or_factory(**params)`` (a layer class or any
    callable taking the canonical parameters as keywords)."""
    doc = notes or (getattr(cls_or_factory, "__doc__", None) or "").strip().split("\n\n")[0]
    return Mutant(name=name, variant=variant, params=dict(params or {}), bug_class=bug_class, source=source,
                  kills=tuple(kills), factory=lambda prm, _f=cls_or_factory: _f(**dict(prm)),
                  framework="numpy", shape=shape, notes=" ".join(doc.split()), known_gap=known_gap)
