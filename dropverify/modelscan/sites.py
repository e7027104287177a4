"""The records every scan shares, whatever the framework: a dropout site (:class:`Site`), each call it
received while the model ran (:class:`Call`) and how a dropout-family class maps to a contract
(:class:`ModuleKind`). Importing this module imports no framework (torch, Keras, jax).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple


@dataclass(frozen=True)
class ModuleKind:
    """How a dropout-family class maps to a contract: ``variant`` (None: chosen from the
    input rank by ``variant_for``), the attribute holding p, and the contract parameters read
    from the module."""

    name: str                      # shown in reports: "nn.Dropout", "timm DropPath"
    variant: Optional[str]
    p_attr: str
    params: Callable[[Any, int], Dict[str, Any]] = lambda m, rank: {}
    variant_for: Optional[Callable[[int], Optional[str]]] = None
    library: bool = True           # a library class: identical instances behave identically
    guessed: bool = False          # classified from the class name only
    observe: bool = False          # the variant is confirmed from the module's behaviour (:mod:`.behaviour`)
    rnn: bool = False              # nn.LSTM / GRU / RNN: the dropout between stacked layers


ROOT = "(model)"
"""How the root module's path (``""``) is shown."""


def shown(path: str) -> str:
    return path or ROOT


@dataclass
class Call:
    """One call of a site while the model ran."""

    phase: str                      # "train", "eval" or "train_after_eval"
    p: float
    applied: bool                   # dropout actually applied: p > 0 and the op was in training mode
    flag: Optional[bool]            # the functional training argument (None: none, e.g. SDPA)
    flag_given: bool                # the training argument reached the op by position or name (F.* functions
                                    # pass every argument on by name under a TorchFunctionMode: always True)
    module_training: bool           # the calling module's .training
    shapes: Tuple[Tuple[int, ...], ...]
    dtype: str
    device: str
    extra: Dict[str, Any] = field(default_factory=dict)
    eval_off: Optional[Tuple[int, int]] = None  # module site in eval: (elements off the eval output, total)
    seq: int = 0                    # order of the call among every recorded call


@dataclass
class Site:
    """A dropout-family module, or a functional dropout call site, and its recorded calls."""

    path: str                       # module path: the module itself, or the module that made the call
    kind: str                       # "nn.Dropout", "F.scaled_dot_product_attention", ...
    op: str                         # "module" or the functional op's name
    ordinal: int = 0                # functional: which call of this op within one forward of the module
    module_kind: Optional[ModuleKind] = None
    snapshot: Optional[Any] = None  # module site: a copy taken before the model ran
    configured: Optional[float] = None
    configured_from: Optional[str] = None  # "blocks.3.attn.attn_drop.p"
    looked_for: Tuple[str, ...] = ()
    calls: List[Call] = field(default_factory=list)
    fop: Optional[Any] = None  # a discovery.FunctionalOp  # functional site: the op intercepted
    alternatives: Tuple[Tuple[float, str], ...] = ()  # functional site: other rate attributes of the same module
    identified: Optional[str] = None  # module site: the variant its observed behaviour shows, and how (in situ)
    identified_words: str = ""
    outside: Optional[str] = None     # functional site: made by a dropout module the model does not register

    @property
    def label(self) -> str:
        """The site as cause lines name it (``blocks.3.attn``; a second call of the same op in
        one forward of the module: ``blocks.3.attn#2``)."""
        return shown(self.path) + (f"#{self.ordinal + 1}" if self.ordinal else "")

    @property
    def name(self) -> str:
        """A unique name: ``blocks.3.attn[scaled_dot_product_attention]``."""
        op = self.kind.split(" (", 1)[0].split(".")[-1].split(" ")[-1] if self.op == "module" else self.op
        return f"{self.label}[{op}]"

    def phase(self, phase: str) -> List[Call]:
        return [c for c in self.calls if c.phase == phase]

    @property
    def is_module(self) -> bool:
        return self.op == "module"


__all__ = ["Call", "ModuleKind", "ROOT", "Site", "shown"]
