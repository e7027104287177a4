"""The gradient checks run on every layout the values check does, with the input and the
upstream gradient handed to forward AND backward in that layout: a backward that reads the
saved mask in another memory order FAILs only the rows of the layouts it scrambles."""
from __future__ import annotations

import dataclasses
from typing import Dict

import numpy as np
import pytest

from dropverify.checknames import producing_check, result_names
from dropverify.checks import INCONCLUSIVE, PASS, Settings, spec_for_result
from dropverify.checks.gradients import FINITE_DIFF, FORWARD_MASK, takes_layout
from dropverify.mutants import all_mutants, mutant_spec, reference_spec_for
from dropverify.runner import verify
from dropverify.targets import numpy_spec
from dropverify.targets.numpy_ref import NumpyTarget
from dropverify.variants.dropout import Dropout

GRAD = [FORWARD_MASK, FINITE_DIFF]
SHAPE = (8, 6, 4, 5)  # small, 4-D (channels_last exists), no two axes alike


def _verdicts(spec, checks=GRAD) -> Dict[str, str]:
    run = verify([spec], Settings(seed=5), checks=checks)
    return {r.check: r.verdict.value for r in run.targets[0].results}


def _mutant(name: str):
    m = next(m for m in all_mutants() if m.name == name)
    return mutant_spec(m), reference_spec_for(m)


def _shaped(spec):
    return dataclasses.replace(spec, shape=SHAPE)


def test_result_names_carry_the_layout_and_map_back():
    for check in GRAD:
        names = result_names(check)
        assert f"{check}[transposed]" in names and f"{check}[channels_last]" in names
        for name in names:
            assert spec_for_result(name).name == check and producing_check(name) == check


def test_numpy_mutant_fails_only_the_transposed_rows_and_the_reference_passes_all():
    mutant, reference = (_shaped(s) for s in _mutant("dropout_backward_mask_memory_order"))
    got = _verdicts(mutant)
    assert got == {f"{c}[{lay}]": ("FAIL" if lay == "transposed" else "PASS")
                   for c in GRAD for lay in ("contiguous", "transposed", "strided")}, got
    assert set(_verdicts(reference).values()) == {"PASS"}


def test_torch_mutant_fails_non_contiguous_rows_and_nn_dropout_passes_all():
    pytest.importorskip("torch")
    mutant, reference = (_shaped(s) for s in _mutant("torch_backward_mask_storage_order"))
    got = _verdicts(mutant, GRAD + ["multiplier_values_exact"])
    for c in GRAD:
        assert got[f"{c}[contiguous]"] == "PASS"
        assert got[f"{c}[transposed]"] == "FAIL" and got[f"{c}[channels_last]"] == "FAIL"
    assert {got[f"multiplier_values_exact[{lay}]"] for lay in ("contiguous", "transposed", "channels_last")} == {"PASS"}
    ref = _verdicts(reference)
    assert len(ref) == 6 and set(ref.values()) == {"PASS"}, ref


def test_torch_backward_receives_the_layout():
    """The leaf input the module sees and the grad_out autograd hands its backward are
    non-contiguous views on [transposed] / [channels_last]."""
    torch = pytest.importorskip("torch")
    from dropverify.targets.torch_nn import TorchTarget
    seen = []

    class Spy(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            seen.append(("x", x.is_contiguous(), x.is_contiguous(memory_format=torch.channels_last)))
            return x.clone()

        @staticmethod
        def backward(ctx, g):
            seen.append(("g", g.is_contiguous(), g.is_contiguous(memory_format=torch.channels_last)))
            return g

    class Module(torch.nn.Module):
        def forward(self, x):
            return Spy.apply(x)

    tgt = TorchTarget(Module(), layouts=("contiguous", "transposed", "channels_last"))
    x = np.arange(np.prod(SHAPE), dtype=np.float64).reshape(SHAPE)
    for layout, want in (("contiguous", (True, False)), ("transposed", (False, False)),
                         ("channels_last", (False, True))):
        seen.clear()
        y, (dx,) = tgt.forward_backward((x,), x * 2, layout=layout)
        assert seen == [("x", *want), ("g", *want)], (layout, seen)
        np.testing.assert_array_equal(dx, x * 2)


def test_numpy_backward_receives_the_layout():
    class Recording(Dropout):
        def _forward(self, x):
            self.x_flags = (x.flags.c_contiguous, x.flags.f_contiguous)
            return super()._forward(x)

        def _backward(self, g):
            self.g_flags = (g.flags.c_contiguous, g.flags.f_contiguous)
            return super()._backward(g)

    tgt = NumpyTarget(Recording(p=0.5))
    x = np.ones(SHAPE)
    for layout, want in (("contiguous", (True, False)), ("transposed", (False, True)), ("strided", (False, False))):
        tgt.forward_backward((x,), x, layout=layout)
        assert tgt.layer.x_flags == want and tgt.layer.g_flags == want, layout


def test_a_target_without_layout_in_backward_is_inconclusive_off_contiguous():
    class Old(NumpyTarget):
        def forward_backward(self, inputs, grad_out):  # the protocol before layouts reached backward
            return super().forward_backward(inputs, grad_out)

    spec = numpy_spec("old", "dropout", lambda prm: Dropout(**prm), {"p": 0.5}, shape=SHAPE)
    spec = dataclasses.replace(spec, build=lambda prm: Old(Dropout(**prm)))
    assert not takes_layout(Old(Dropout(p=0.5))) and takes_layout(NumpyTarget(Dropout(p=0.5)))
    run = verify([spec], Settings(seed=5), checks=[FORWARD_MASK])
    got = {r.check: r for r in run.targets[0].results}
    assert got[f"{FORWARD_MASK}[contiguous]"].verdict == PASS
    for lay in ("transposed", "strided"):
        r = got[f"{FORWARD_MASK}[{lay}]"]
        assert r.verdict == INCONCLUSIVE and "takes no layout" in r.message
