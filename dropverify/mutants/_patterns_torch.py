"""Call-pattern faults of ``nn.Module`` layers (issue 22): a private generator restored on every
eval -> train transition, a class-level mask cache shared by every instance, and ``x.mul_(mask)``
in a layer that says ``inplace=False``. Importing this module imports torch."""
from __future__ import annotations

from typing import ClassVar, Dict, Tuple

import torch
import torch.nn as nn

from ._core import Mutant


def _keep(x: torch.Tensor, p: float, generator: torch.Generator = None) -> torch.Tensor:
    return torch.rand(tuple(x.shape), generator=generator, dtype=torch.float32) >= p


def _scale(p: float) -> float:
    return 0.0 if p >= 1.0 else 1.0 / (1.0 - p)


class _P(nn.Module):
    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p={p!r}, but should be in [0, 1]")
        self.p = float(p)

    def _apply_mask(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        return torch.where(keep, x * _scale(self.p), torch.zeros((), dtype=x.dtype))


class RestoresGeneratorOnTrain(_P):
    """Own torch.Generator, seeded from the global one whenever torch.manual_seed has run since its
    last call (so a seed reproduces it); its train() restores the state of the generator's first
    use on every eval -> train transition, so every validation pass is followed by the same masks
    (the issue-22 layer)."""

    def __init__(self, p: float) -> None:
        super().__init__(p)
        self._gen = self._snapshot = self._global = None

    def train(self, mode: bool = True) -> "RestoresGeneratorOnTrain":
        if mode and not self.training and self._snapshot is not None:
            self._gen.set_state(self._snapshot)
        return super().train(mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self._gen is None or not torch.equal(torch.get_rng_state(), self._global):
            self._gen = torch.Generator().manual_seed(int(torch.randint(0, 2 ** 62, (1,))))
            self._snapshot, self._global = self._gen.get_state(), torch.get_rng_state()
        return self._apply_mask(x, _keep(x, self.p, self._gen))


class SharedClassMaskCache(_P):
    """Masks cached by shape in a CLASS attribute: an instance reuses the mask another instance
    drew last (once), else draws its own. Alone it is correct dropout; two instances called in turn
    (two layers of one model) draw the same masks."""

    _cache: ClassVar[Dict[tuple, list]] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        key = tuple(x.shape)
        entry = SharedClassMaskCache._cache.get(key)
        if entry is not None and entry[1] != id(self) and not entry[2]:
            entry[2] = True
            keep = entry[0]
        else:
            keep = _keep(x, self.p)
            SharedClassMaskCache._cache[key] = [keep, id(self), False]
        return self._apply_mask(x, keep)


class MulInPlaceUndeclared(_P):
    """``x.mul_(mask * scale)`` and returns x, while ``inplace=False``: the values are dropout's,
    but the caller's activations are overwritten (a residual branch reading x sees the dropped x)."""

    def __init__(self, p: float, inplace: bool = False) -> None:
        super().__init__(p)
        self.inplace = inplace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return x.mul_(_keep(x, self.p).to(x.dtype) * _scale(self.p))


def _factory(cls: type):
    def build(p: float) -> nn.Module:
        return cls(p)
    return build


def _dropout(p: float) -> nn.Module:
    return nn.Dropout(p)


_SOURCE = "issue 22 (a user's unseen broken torch layers)"


def _torch(name: str, cls: type, kills: Tuple[str, ...], bug_class: str, source: str) -> Mutant:
    return Mutant(name=name, variant="dropout", params={"p": 0.5}, bug_class=bug_class, source=source,
                  kills=kills, factory=_factory(cls), framework="torch", reference=_dropout,
                  notes=" ".join((cls.__doc__ or "").split()))


MUTANTS: Tuple[Mutant, ...] = (
    _torch("torch_restores_generator_on_train", RestoresGeneratorOnTrain, ("masks_fresh_after_eval_by_hash",),
           "same mask every call (RNG never advances)", _SOURCE + ": every validation pass replays the same masks"),
    _torch("torch_class_level_mask_cache", SharedClassMaskCache, ("instances_draw_independent_masks_by_hash",),
           "same mask on every device / replica / batch element", _SOURCE + ": layers of one model share masks"),
    _torch("torch_mul_in_place_undeclared", MulInPlaceUndeclared, ("input_unchanged_unless_inplace",),
           "obvious slip", _SOURCE + ": x.mul_(mask) with inplace=False"),
)
