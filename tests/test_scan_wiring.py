"""``dropverify.scan``'s wiring checks (issue 23 item 4 a, c, d, f, g, h): bugs between layers. Each with a
small broken model of our own that FAILs naming the site and the cause, and its correct counterpart (PASS)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.checkpoint import checkpoint  # noqa: E402

import dropverify  # noqa: E402
from dropverify import Settings  # noqa: E402
from dropverify.modelscan import wiring  # noqa: E402

EXACT = ["multiplier_values_exact"]


def scan(model, x, **kw):
    return dropverify.scan(model, x, settings=Settings(max_calls=200), checks=EXACT, **kw)


def result(report, check):
    (r,) = [r for r in report.results if r.target == "(model)" and r.check == check]
    return r


def fails(report):
    return {r.check for r in report.results if r.target == "(model)" and r.verdict in ("FAIL", "ERROR")}


def x_(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------ (a) shared masks


class CachedDropout(nn.Module):
    """Broken: draws one mask and keeps it (a class-level cache shared by every instance, reused on every call)."""

    cache: dict = {}

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training:
            return x
        mask = CachedDropout.cache.get(x.shape)
        if mask is None:
            mask = CachedDropout.cache[x.shape] = (torch.rand_like(x) >= self.p).to(x.dtype) / (1 - self.p)
        return x * mask


class TwoSites(nn.Module):
    def __init__(self, drop: type) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(32, 32), nn.Linear(32, 32), nn.Linear(32, 4)
        self.drop1, self.drop2 = drop(0.3), drop(0.3)

    def forward(self, x):
        return self.fc3(self.drop2(self.fc2(self.drop1(self.fc1(x)))))


def test_two_sites_sharing_one_cached_mask_fail_naming_both():
    CachedDropout.cache.clear()
    r = scan(TwoSites(CachedDropout), x_(16, 32))
    res = result(r, wiring.SHARED)
    assert res.verdict == "FAIL", res.message
    assert res.message.startswith("drop1 (first forward) and drop2 (first forward) draw the same mask in one "
                                  "training forward"), res.message
    assert "in two training forwards (a cached mask)" in res.message or "more pair" in res.message
    assert any(c.startswith("drop1 (first forward) and drop2") for c in r.scan.causes)
    ok = scan(TwoSites(nn.Dropout), x_(16, 32))
    good = result(ok, wiring.SHARED)
    assert good.verdict == "PASS" and good.details["informative_pairs"] == 6, good.message
    assert fails(ok) == set(), ok.summary()


def test_a_mask_shared_along_time_is_one_unit_not_a_false_alarm():
    class LockedDropout(nn.Module):  # a correct LockedDropout: one mask per sequence, shared over time (axis 1)
        def __init__(self, p):
            super().__init__()
            self.p = p

        def forward(self, x):
            if not self.training:
                return x
            m = (torch.rand(x.shape[0], 1, x.shape[2]) >= self.p).to(x.dtype) / (1 - self.p)
            return x * m

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.fc = LockedDropout(0.4), LockedDropout(0.4), nn.Linear(8, 8)

        def forward(self, x):
            return self.b(self.fc(self.a(x)))

    r = scan(M(), x_(4, 50, 8))
    assert result(r, wiring.SHARED).verdict == "PASS", result(r, wiring.SHARED).message


# ------------------------------------------------------------------------------ (c) DropPath placement


class DropPath(nn.Module):
    def __init__(self, drop_prob):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x):
        if not self.training or self.drop_prob == 0:
            return x
        keep = 1 - self.drop_prob
        return x * x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep) / keep


class Block(nn.Module):
    def __init__(self, rate, wrap_sum=False):
        super().__init__()
        self.fc, self.drop_path, self.wrap_sum = nn.Linear(16, 16), DropPath(rate), wrap_sum

    def forward(self, x):
        if self.wrap_sum:  # broken: drops the whole residual sum, skip path included
            return self.drop_path(x + self.fc(x))
        return x + self.drop_path(self.fc(x))


class Stack(nn.Module):
    def __init__(self, rates, wrap_sum=False):
        super().__init__()
        self.blocks = nn.ModuleList(Block(r, wrap_sum) for r in rates)

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return x


def test_drop_path_around_the_residual_sum_fails_naming_the_block():
    r = scan(Stack([0.1, 0.2, 0.3], wrap_sum=True), x_(8, 16))
    res = result(r, wiring.PLACEMENT)
    assert res.verdict == "FAIL"
    assert res.message.startswith("blocks.0: for ") and "that blocks.0.drop_path dropped" in res.message
    assert "is all zero" in res.message and "drop_path(x + f(x))" in res.message, res.message
    ok = scan(Stack([0.1, 0.2, 0.3]), x_(8, 16))
    good = result(ok, wiring.PLACEMENT)
    assert good.verdict == "PASS" and good.details["samples_checked"] > 0, good.message
    assert fails(ok) == set(), ok.summary()


# ------------------------------------------------------------------------------ (d) LayerDrop


class LayerDropNet(nn.Module):
    def __init__(self, layerdrop=0.2, keep_instead=False, in_eval=False):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(8, 8) for _ in range(6))
        self.layerdrop, self.keep_instead, self.in_eval = layerdrop, keep_instead, in_eval
        self.drop = nn.Dropout(0.1)

    def forward(self, x):
        for layer in self.layers:
            u = float(torch.rand(()))
            skip = u >= self.layerdrop if self.keep_instead else u < self.layerdrop
            if (self.training or self.in_eval) and skip:
                continue
            x = layer(x)
        return self.drop(x)


def test_layerdrop_keeping_layers_with_probability_p_fails_with_the_observed_rate():
    r = scan(LayerDropNet(keep_instead=True), x_(4, 8))
    res = result(r, wiring.LAYERDROP)
    assert res.verdict == "FAIL"
    assert res.message.startswith("6 layer(s) layers.0 .. layers.5 skipped in ") and \
        "but (model).layerdrop = 0.2" in res.message and "KEPT with probability 0.2" in res.message, res.message
    assert res.details["passes"] == wiring.LAYERDROP_PASSES
    ok = scan(LayerDropNet(), x_(4, 8))
    good = result(ok, wiring.LAYERDROP)
    assert good.verdict == "PASS" and "as (model).layerdrop = 0.2" in good.message, good.message
    assert fails(ok) == set(), ok.summary()
    in_eval = result(scan(LayerDropNet(in_eval=True), x_(4, 8)), wiring.LAYERDROP)
    assert in_eval.verdict == "FAIL" and "skipped in eval" in in_eval.message, in_eval.message


# ------------------------------------------------------------------------------ (f) backward masks


class Ckpt(nn.Module):
    """A checkpointed block with dropout (an nn.Dropout, or F.dropout called by the block itself)."""

    def __init__(self, preserve, reentrant=False, functional=False):
        super().__init__()
        self.block = nn.Sequential(nn.Linear(16, 16), nn.Dropout(0.3))
        self.pre, self.fc, self.head = nn.Linear(16, 16), nn.Linear(16, 16), nn.Linear(16, 2)
        self.preserve, self.reentrant, self.functional = preserve, reentrant, functional

    def inner(self, x):
        return F.dropout(self.fc(x), 0.3, self.training) if self.functional else self.block(x)

    def forward(self, x):
        x = self.pre(x)  # the checkpoint's input requires a gradient (use_reentrant=True needs it)
        h = checkpoint(self.inner, x, use_reentrant=self.reentrant, preserve_rng_state=self.preserve) \
            if self.training else self.inner(x)
        return self.head(h)


@pytest.mark.filterwarnings("ignore:None of the inputs have requires_grad")  # the scan's no_grad passes
@pytest.mark.parametrize("reentrant, functional, label", [(False, False, "block.1"), (True, False, "block.1"),
                                                          (False, True, "(model)")])
def test_checkpoint_without_preserved_rng_recomputes_another_mask(reentrant, functional, label):
    r = scan(Ckpt(False, reentrant, functional), x_(8, 16))
    res = result(r, wiring.BACKWARD)
    assert res.verdict == "FAIL"
    how = "the backward pass sends a gradient through" if functional else \
        "run again in the backward pass (activation checkpointing)"
    assert res.message.startswith(f"{label}: {how}") and "preserve_rng_state=True" in res.message, res.message
    ok = scan(Ckpt(True, reentrant, functional), x_(8, 16))
    good = result(ok, wiring.BACKWARD)
    # F.dropout outside a module: its recomputation is not seen (no TorchFunctionMode in autograd's threads); the
    # gradient its dropout node passes is
    assert good.verdict == "PASS" and good.details["recomputed"] == (0 if functional else 1), good.message
    assert good.details["gradients_checked"] >= (1 if functional or not reentrant else 0)
    assert fails(ok) == set(), ok.summary()


# ------------------------------------------------------------------------------ (g) schedule across stages


class Stages(nn.Module):
    """PVT / SegFormer-like: stages block1, block2, block3 of DropPath blocks; ``restart``: the broken cursor that
    restarts at each stage (each stage its own linspace)."""

    def __init__(self, rule="timm", restart=False, rate=0.3, depths=(2, 3, 2)):
        super().__init__()
        total = sum(depths)
        if restart:
            per = [torch.linspace(0, rate, d).tolist() for d in depths]
        else:
            line = torch.linspace(0, rate, total).tolist() if rule == "timm" else \
                [rate * (k + 1) / total for k in range(total)]
            per, cur = [], 0
            for d in depths:
                per.append(line[cur:cur + d])
                cur += d
        for i, rates in enumerate(per):
            setattr(self, f"block{i + 1}", nn.ModuleList(Block(r) for r in rates))

    def forward(self, x):
        for i in range(3):
            for b in getattr(self, f"block{i + 1}"):
                x = b(x)
        return x


def test_depth_schedule_restarting_per_stage_fails_across_the_model():
    r = scan(Stages(restart=True), x_(8, 16))
    res = result(r, wiring.SCHEDULE_ORDER)
    assert res.verdict == "FAIL"
    assert res.message.startswith("drop-path rates in execution order fall from block1.1 0.3 to block2.0 0: the "
                                  "schedule restarts at block2.0 (a new stage)"), res.message
    # each stage alone is linear: the per-pattern schedules pass
    assert all(s.verdict == "PASS" for s in r.scan.schedules) and len(r.scan.schedules) == 3
    timm = result(scan(Stages(), x_(8, 16)), wiring.SCHEDULE_ORDER)
    assert timm.verdict == "PASS" and "from 0: rate x k / (L - 1) with rate 0.3" in timm.message, timm.message
    paper = result(scan(Stages(rule="paper"), x_(8, 16)), wiring.SCHEDULE_ORDER)
    assert paper.verdict == "PASS" and "from rate / L: rate x l / L with rate 0.3" in paper.message, paper.message


def test_depth_schedule_that_starts_elsewhere_fails():
    r = result(scan(Stack([0.12, 0.2, 0.28]), x_(8, 16)), wiring.SCHEDULE_ORDER)
    assert r.verdict == "FAIL" and "start at 0.12, which neither rule gives" in r.message, r.message


# ------------------------------------------------------------------------------ (h) channel dropout rank


class Conv(nn.Module):
    def __init__(self, unbatched):
        super().__init__()
        self.conv, self.drop, self.unbatched = nn.Conv2d(4, 8, 3, padding=1), nn.Dropout2d(0.3), unbatched

    def forward(self, x):  # x: (N, 4, H, W)
        h = self.conv(x)
        if self.unbatched:  # broken: each map handed to Dropout2d on its own, (C, H, W)
            return torch.stack([self.drop(m) for m in h])
        return self.drop(h)


def test_dropout2d_fed_an_unbatched_map_fails_naming_the_shared_axes():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = scan(Conv(unbatched=True), x_(2, 4, 6, 6))
    res = result(r, wiring.UNBATCHED)
    assert res.verdict == "FAIL"
    assert res.message.startswith("drop: nn.Dropout2d fed a 3-D input (8, 6, 6); torch reads it as (N, C, L): one "
                                  "draw per (axis 0, axis 1) row, shared along axis 2 only"), res.message
    assert "observed: each draw shared along axis 2 only" in res.message and "x.unsqueeze(0)" in res.message
    ok = scan(Conv(unbatched=False), x_(2, 4, 6, 6))
    assert result(ok, wiring.UNBATCHED).verdict == "PASS"
    assert fails(ok) == set(), ok.summary()


def test_drop_path_on_a_zero_initialised_branch_is_inconclusive_and_says_why():
    model = Stack([0.1, 0.2])
    for b in model.blocks:  # timm's zero_init_last: the branch computes exact zeros at initialisation
        nn.init.zeros_(b.fc.weight)
        nn.init.zeros_(b.fc.bias)
    r = result(scan(model, x_(8, 16)), wiring.PLACEMENT)
    assert r.verdict == "INCONCLUSIVE" and "reached the drop-path sites as exact zeros" in r.message, r.message
    assert r.details["zero_inputs"] == 2 * 2 * 8  # 2 blocks x 2 training forwards x 8 samples
