"""The torch adapter on the real library: verdicts of every built-in target at small budgets,
and deliberately broken nn.Modules caught through ``torch_spec``. No mocks."""
from __future__ import annotations

import dataclasses
import warnings
from typing import Dict

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from dropverify.checks import Settings  # noqa: E402
from dropverify.runner import verify  # noqa: E402
from dropverify.targets import get_target  # noqa: E402
from dropverify.targets.torch_nn import TARGETS, TorchTarget, to_tensor, torch_spec  # noqa: E402

SMALL = Settings(seed=20261126, max_calls=1500, max_units=400_000, fault_fraction=0.1)

# checks that must not PASS, per target; every other check must PASS
_ATTENTION = {"invalid_p_rejected": "FAIL"}  # p < 0 silently means "no dropout"
# (nonfinite_inputs_leave_others_untouched is declared not applicable: the softmax plumbing spreads NaN)
EXPECTED: Dict[str, Dict[str, str]] = {
    "torch:Dropout2d[unbatched]": {"mask_constant_along_shared_axes": "FAIL"},   # pytorch 69801
    "torch:MultiheadAttention": _ATTENTION,
    "torch:scaled_dot_product_attention[math]": {**_ATTENTION,
                                                 "eval_mode_deterministic_and_exact": "FAIL",  # pytorch 124464
                                                 # the same by design: the eval passes between training
                                                 # blocks still drop (F.scaled_dot_product_attention has
                                                 # no mode; dropout_p is applied whenever it is > 0)
                                                 "masks_fresh_after_eval_by_hash": "FAIL"},
}


# smaller probes than the targets' own, to keep this file fast (same plumbing, same contracts)
TEST_SHAPES = {"dropout": (16, 16, 8, 8), "alpha_dropout": (16, 16, 8, 8), "feature_alpha_dropout": (32, 32, 4, 4),
               "spatial_dropout_2d": (32, 32, 4, 4), "spatial_dropout_3d": (16, 32, 2, 4, 4),
               "attention_dropout": (4, 4, 16, 16)}


def _small(spec):
    shape = TEST_SHAPES.get(spec.variant)
    return dataclasses.replace(spec, shape=shape) if shape and "unbatched" not in spec.name else spec


def _verdicts(specs, checks=None) -> Dict[str, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Dropout2d's 3-D warning, SDPA kernel notices
        run = verify(specs, SMALL, checks=checks)
    return {r.check: r.verdict for t in run.targets for r in t.results}


@pytest.mark.parametrize("name", list(TARGETS))
def test_builtin_target_verdicts(name):
    for spec in get_target(name):
        got = _verdicts([_small(spec)])
        assert got, f"no checks ran on {spec.name}"
        want = EXPECTED.get(spec.name, {})
        wrong = {c: v for c, v in got.items() if v != want.get(c, "PASS")}
        assert not wrong, f"{spec.name}: unexpected verdicts {wrong}"
        missing = set(want) - set(got)
        assert not missing, f"{spec.name}: expected checks did not run: {missing}"


def test_attention_targets_check_gradients_and_layouts():
    wanted = ["gradient_uses_forward_mask", "gradient_matches_finite_differences", "multiplier_values_exact"]
    got = _verdicts([_small(s) for s in get_target("torch:scaled_dot_product_attention")], checks=wanted)
    for check in ("gradient_uses_forward_mask[contiguous]", "gradient_matches_finite_differences[contiguous]",
                  "multiplier_values_exact[transposed]", "multiplier_values_exact[channels_last]"):
        assert got[check] == "PASS"


def test_unbatched_dropout2d_conventions_name_the_issue():
    (spec,) = get_target("torch:Dropout2d[unbatched]")
    assert any("69801" in c for c in spec.conventions)
    (sdpa,) = get_target("torch:scaled_dot_product_attention")
    assert any("dropout_p=0 in eval" in c for c in sdpa.conventions)


# --------------------------------------------------------------------------- plumbing

@pytest.mark.parametrize("layout", ["contiguous", "transposed", "channels_last"])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_layouts_keep_values_and_dtype_and_copy(layout, dtype):
    x = np.random.default_rng(0).random((2, 3, 4, 5)).astype(dtype)
    t = to_tensor(x, layout)
    assert np.array_equal(t.numpy(), x) and t.numpy().dtype == x.dtype
    assert t.is_contiguous() == (layout == "contiguous")
    t.mul_(0)
    assert x.any()  # the probe is never shared with the tensor


def test_one_dim_transposed_is_a_strided_view():
    t = to_tensor(np.arange(5.0), "transposed")
    assert not t.is_contiguous() and t.tolist() == list(range(5))


def test_factory_gets_canonical_params_as_kwargs():
    seen = {}

    def factory(**kw):
        seen.update(kw)
        return nn.Dropout2d(kw["p"])

    spec = torch_spec("mine", "spatial_dropout_2d", factory, params={"p": 0.25})
    target = spec.build(spec.resolved_params())
    assert seen == {"p": 0.25, "channels_last": False}
    assert isinstance(target, TorchTarget) and target.layouts == ("contiguous", "transposed", "channels_last")


# --------------------------------------------------------------------------- broken modules

class ScaleByP(nn.Module):
    """Bug (apex PR 816 style): kept values scaled by p instead of 1/(1-p)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training:
            return x
        return x * (torch.rand_like(x) >= self.p) * self.p


class FixedMask(nn.Module):
    """Bug (flash-attention 314 style): one mask drawn at construction, reused every call."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        keep = torch.rand(x.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64) >= self.p
        return x * keep.to(x.dtype) / (1 - self.p) if self.p < 1 else x * 0


class _RedrawInBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, p):
        ctx.p, ctx.shape = p, x.shape
        return x * (torch.rand_like(x) >= p) / (1 - p)

    @staticmethod
    def backward(ctx, g):
        return g * (torch.rand(ctx.shape, dtype=g.dtype) >= ctx.p) / (1 - ctx.p), None


class BackwardRedraws(nn.Module):
    """Bug (pytorch 190717 style): backward draws a new mask instead of the forward's."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x):
        return _RedrawInBackward.apply(x, self.p) if self.training and 0 < self.p < 1 else nn.functional.dropout(
            x, self.p, self.training)


class MemoryOrder(nn.Module):
    """Bug (pytorch 47176 style): reads the input in memory order, so values land at the wrong
    logical positions on non-contiguous inputs (right on contiguous ones)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x):
        flat = x.as_strided((x.numel(),), (1,))
        return nn.functional.dropout(flat, self.p, self.training).view(x.shape)


class EvalDrops(nn.Dropout):
    """Bug (awd-lstm-lm 72 style): training hard-coded to True."""

    def forward(self, x):
        return nn.functional.dropout(x, self.p, True)


def _broken(cls, **kw):
    return torch_spec(f"broken:{cls.__name__}", "dropout", lambda p: cls(p), shape=(32, 16, 8, 8), **kw)


def test_scale_by_p_fails_values_and_mean():
    got = _verdicts([_broken(ScaleByP)], checks=["multiplier_values_exact", "expectation_matches_by_t_test",
                                                 "same_seed_reproduces"])
    assert got["multiplier_values_exact[contiguous]"] == "FAIL"
    assert got["expectation_matches_by_t_test"] == "FAIL"
    assert got["same_seed_reproduces"] == "PASS"


def test_fixed_mask_fails_freshness_and_seed_independence():
    got = _verdicts([_broken(FixedMask)], checks=["masks_fresh_across_calls_by_fisher",
                                                  "masks_independent_across_seeds_by_fisher",
                                                  "multiplier_values_exact", "drop_rate_matches_by_binomial"])
    assert got["masks_fresh_across_calls_by_fisher"] == "FAIL"
    assert got["masks_independent_across_seeds_by_fisher"] == "FAIL"
    assert got["multiplier_values_exact[contiguous]"] == "PASS"


def test_backward_redraw_fails_gradient_checks():
    got = _verdicts([_broken(BackwardRedraws)], checks=["gradient_uses_forward_mask",
                                                        "gradient_matches_finite_differences",
                                                        "multiplier_values_exact"])
    for layout in ("contiguous", "transposed", "channels_last"):
        assert got[f"gradient_uses_forward_mask[{layout}]"] == "FAIL"
        assert got[f"gradient_matches_finite_differences[{layout}]"] == "FAIL"
    assert got["multiplier_values_exact[contiguous]"] == "PASS"


def test_memory_order_bug_fails_only_on_non_contiguous_layouts():
    got = _verdicts([_broken(MemoryOrder)], checks=["multiplier_values_exact"])
    assert got == {"multiplier_values_exact[contiguous]": "PASS", "multiplier_values_exact[transposed]": "FAIL",
                   "multiplier_values_exact[channels_last]": "FAIL"}


def test_eval_drops_fails_eval_check():
    got = _verdicts([_broken(EvalDrops)], checks=["eval_mode_deterministic_and_exact", "p_zero_is_exact_identity"])
    assert got == {"eval_mode_deterministic_and_exact": "FAIL", "p_zero_is_exact_identity": "PASS"}


def test_missing_gradient_fails_rather_than_crashes():
    class Detached(nn.Dropout):
        def forward(self, x):
            return super().forward(x).detach()

    got = _verdicts([_broken(Detached)], checks=["gradient_uses_forward_mask"])
    assert got == {f"gradient_uses_forward_mask[{lay}]": "FAIL" for lay in ("contiguous", "transposed", "channels_last")}


def test_modules_with_weights_run_in_each_dtype_without_casting_the_original():
    (spec,) = get_target("torch:MultiheadAttention")
    target = spec.build(spec.resolved_params(p=0.0))
    x = (np.full((1, 4, 2, 16), 1 / 16),)
    for dt in (np.float16, np.float64, np.float32):
        y = target.forward(tuple(a.astype(dt) for a in x), training=False)
        assert y.dtype == dt and np.allclose(y, x[0], rtol=1e-2)
    assert target.module.in_proj_weight.dtype == torch.float32
