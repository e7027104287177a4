"""``dropverify.scan`` on sites a model-level audit must get right: in-place layers, timm DropBlock's
gamma_scale, a LockedDropout known only by its behaviour, RNN dropout, sites never exercised, a model
with no site, dropout modules .eval() cannot reach, declared MC dropout. Each with a small correct model
(no FAIL, no ERROR) and a broken one (FAIL where the bug lives)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import dropverify  # noqa: E402
from dropverify import InvalidArgument, Settings  # noqa: E402
from dropverify.modelscan import model_checks as mc  # noqa: E402
from dropverify.modelscan.api import NOT_EXERCISED  # noqa: E402

EXACT = ["multiplier_values_exact", "eval_mode_deterministic_and_exact"]


def scan(model, x, checks=EXACT, max_calls=200, **kw):
    return dropverify.scan(model, x, settings=Settings(max_calls=max_calls), checks=checks, **kw)


def bad(report):
    """{(target, check) of every FAIL / ERROR}."""
    return {(r.target, r.check.split("[")[0]) for r in report.results if r.verdict in ("FAIL", "ERROR")}


def x_(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------ in-place layers


class InplaceNoScale(nn.Dropout):
    """Broken: drops in place but forgets the 1 / (1 - p) scale."""

    def forward(self, x):
        if not self.training:
            return x
        return x.mul_((torch.rand_like(x) >= self.p).to(x.dtype))


def test_inplace_dropout_is_verified_on_a_non_leaf_clone():
    model = nn.Sequential(nn.Linear(16, 16), nn.Dropout(0.2, inplace=True))
    r = scan(model, x_(8, 16), checks=["gradient_uses_forward_mask", *EXACT])
    assert r.verdict == "PASS" and bad(r) == set(), r.summary()
    (t,) = [t for t in r.run.targets if t.spec_name == "1[Dropout]"]
    assert {x.check.split("[")[0] for x in t.results} >= {"gradient_uses_forward_mask", "multiplier_values_exact"}
    assert any("inplace=True" in c for c in t.conventions)
    broken = scan(nn.Sequential(nn.Linear(16, 16), InplaceNoScale(0.2, inplace=True)), x_(8, 16),
                  checks=["gradient_uses_forward_mask", *EXACT])
    assert bad(broken) == {("1[InplaceNoScale]", "multiplier_values_exact")}, broken.summary()


# ------------------------------------------------------------------------------ timm DropBlock gamma_scale


def _dropblock_net(block):
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), block)


def test_timm_dropblock_is_verified_at_its_own_gamma_scale():
    timm = pytest.importorskip("timm")
    from timm.layers import DropBlock2d

    class IgnoresGammaScale(DropBlock2d):
        """Broken: keeps gamma_scale=0.25 but drops at gamma_scale=1."""

        def forward(self, x):
            if not self.training:
                return x
            return timm.layers.drop.drop_block_2d(x, self.drop_prob, self.block_size, 1.0,
                                                  couple_channels=self.couple_channels)

    checks = ["gamma_matches_by_binomial"]
    x = x_(8, 2, 12, 12)
    good = scan(_dropblock_net(DropBlock2d(0.4, 3, gamma_scale=0.25)), x, checks=checks, max_calls=400)
    assert good.ok and bad(good) == set(), good.summary()
    (t,) = [t for t in good.run.targets if t.spec_name.startswith("1[")]
    assert t.params["p"] == pytest.approx(0.1) and any("gamma_scale=0.25" in c for c in t.conventions)
    assert [x.verdict for x in t.results if x.check == "gamma_matches_by_binomial"] == ["PASS"]
    broken = scan(_dropblock_net(IgnoresGammaScale(0.4, 3, gamma_scale=0.25)), x, checks=checks, max_calls=400)
    assert ("1[IgnoresGammaScale]", "gamma_matches_by_binomial") in bad(broken), broken.summary()
    noisy = scan(_dropblock_net(DropBlock2d(0.4, 3, with_noise=True)), x, checks=checks)
    (row,) = noisy.scan.sites
    assert row.in_situ == "not sampled: no contract covers timm DropBlock2d with with_noise=True"


# ------------------------------------------------------------------------------ a variant known by its behaviour


class LockedDropout(nn.Module):
    """AWD-LSTM's variational dropout on (T, N, H): one mask per sequence, shared over time."""

    def __init__(self, p=0.3, per_batch=False):
        super().__init__()
        self.p, self.per_batch = p, per_batch

    def forward(self, x):
        if not self.training or not self.p:
            return x
        shape = (1, 1, x.size(2)) if self.per_batch else (1, x.size(1), x.size(2))  # per_batch: the bug
        return x * x.new_empty(shape).bernoulli_(1 - self.p) / (1 - self.p)


class AWD(nn.Module):
    def __init__(self, **kw):
        super().__init__()
        self.fc, self.lockdrop = nn.Linear(16, 16), LockedDropout(**kw)

    def forward(self, x):
        return self.lockdrop(self.fc(x))


def test_locked_dropout_is_identified_as_variational_by_its_behaviour():
    checks = ["mask_constant_along_shared_axes", "masks_never_repeat_by_hash", *EXACT]
    r = scan(AWD(), x_(6, 16, 8 * 2), checks=checks)
    assert bad(r) == set(), r.summary()
    (row,) = r.scan.sites
    assert row.variant == "variational_dropout" and "variational_dropout (by its behaviour)" in row.kind
    (t,) = r.run.targets[1:]
    assert t.variant == "variational_dropout" and t.params == {"p": 0.3, "batch_first": False}
    # one mask for the whole batch: no contract shares that, the name's plain dropout stands and FAILs
    broken = scan(AWD(per_batch=True), x_(6, 16, 16), checks=checks)
    assert ("lockdrop[LockedDropout]", "masks_never_repeat_by_hash") in bad(broken), broken.summary()
    assert broken.scan.sites[0].variant == "dropout"


# ------------------------------------------------------------------------------ RNN dropout


class LM(nn.Module):
    def __init__(self, layers=2, zero=False):
        super().__init__()
        self.rnn, self.zero = nn.LSTM(8, 12, num_layers=layers, dropout=0.3), zero
        self.head = nn.Linear(12, 4)

    def forward(self, x):
        if self.zero:  # broken: a wrapper that switches the LSTM's own dropout off
            self.rnn.dropout = 0.0
        return self.head(self.rnn(x)[0])


def test_rnn_dropout_is_a_site_verified_between_layers():
    r = scan(LM(), x_(5, 16, 8), checks=["drop_rate_matches_by_binomial", *EXACT], max_calls=400)
    (row,) = r.scan.sites
    assert (row.label, row.kind, row.configured, row.train, row.in_situ) == \
        ("rnn", "nn.LSTM (between-layer dropout)", 0.3, "0.3", "verified")
    assert r.ok and bad(r) == set(), r.summary()
    (t,) = r.run.targets[1:]
    assert t.shape == (5, 16, 12)
    assert {x.verdict for x in t.results if x.check.startswith("multiplier_values_exact")} == {"PASS"}
    with pytest.warns(UserWarning, match="num_layers greater than 1"):
        one = LM(layers=1)
    r1 = scan(one, x_(5, 16, 8))
    assert bad(r1) == {("rnn[LSTM]", mc.SITE_TRAINING)}
    assert r1.scan.causes == ("rnn: nn.LSTM(num_layers=1, dropout=0.3) never drops: torch applies an RNN's dropout "
                              "only between stacked layers, so with one layer it is a no-op (torch warns); use "
                              "num_layers >= 2, or an nn.Dropout on the output",)
    zeroed = scan(LM(zero=True), x_(5, 16, 8))
    assert bad(zeroed) == {("rnn[LSTM]", mc.SITE_TRAINING)}
    assert zeroed.scan.causes[0].startswith("rnn: nn.LSTM (between-layer dropout) received p=0 in training, but 0.3 is configured")


# ------------------------------------------------------------------------------ every site accounted for


def test_sites_not_exercised_in_training_are_never_a_pass():
    class Idle(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused, self.eval_only = nn.Dropout(0.1), nn.Dropout(0.2), nn.Dropout(0.3)

        def forward(self, x):
            return self.used(x) if self.training else self.eval_only(x)

    r = scan(Idle(), x_(8, 16))
    verdicts = {row.label: row.verdict for row in r.scan.sites}
    assert verdicts == {"used": "PASS", "unused": NOT_EXERCISED, "eval_only": NOT_EXERCISED}
    lines = r.summary().splitlines()
    assert "(1 PASS, 2 NOT EXERCISED)" in lines[0]
    assert any(line.startswith("  2 site(s) NOT EXERCISED (not called in training") for line in lines)
    assert "| `unused` | nn.Dropout | 0.2 (`unused.p`) | not called | not called |" in r.to_markdown()
    jsonschema = pytest.importorskip("jsonschema")
    import json
    from dropverify.report import schema_path
    doc = r.to_dict()
    assert [s["verdict"] for s in doc["sites"]] == ["PASS", NOT_EXERCISED, NOT_EXERCISED]
    jsonschema.Draft202012Validator(json.loads(schema_path().read_text())).validate(doc)


def test_a_model_without_dropout_sites_is_an_invalid_argument():
    with pytest.raises(InvalidArgument, match=r"^no dropout site found in torch.nn.modules.rnn.LSTM: searched the "
                                              r"module tree for torch.nn Dropout"):
        dropverify.scan(nn.LSTM(8, 8, num_layers=2), x_(3, 2, 8))


# ------------------------------------------------------------------------------ causes that fit the fault


class Held(nn.Module):
    def __init__(self, how):
        super().__init__()
        self.fc, self.how = nn.Linear(16, 16), how
        drops = [nn.Dropout(0.2)]
        self.drops = nn.ModuleList(drops) if how == "modulelist" else drops

    def forward(self, x):
        drop = nn.Dropout(0.2) if self.how == "forward" else self.drops[0]
        return drop(self.fc(x))


@pytest.mark.parametrize("how, cause", [
    ("list", "(model): nn.Dropout(p=0.2) kept in a plain Python list (model).drops is not a registered submodule, "
             "so model.eval() does not reach it and it stays in training mode: use nn.ModuleList (or nn.ModuleDict); "
             "it drops in eval (2 of 2 eval calls)"),
    ("forward", "(model): nn.Dropout(p=0.2) built inside forward() is a new module on every call, in training mode "
                "whatever the model's mode: build it in __init__ (or call F.dropout(x, p, training=self.training)); "
                "it drops in eval (2 of 2 eval calls)"),
])
def test_a_dropout_eval_cannot_reach_is_named_with_the_fix_that_fits(how, cause):
    r = scan(Held(how), x_(8, 16))
    assert (f"(model)[dropout]", mc.SITE_EVAL) in bad(r)
    assert cause in r.scan.causes, r.scan.causes
    assert not any("pass training=self.training" in c for c in r.scan.causes)
    fixed = scan(Held("modulelist"), x_(8, 16))
    assert fixed.ok and bad(fixed) == set() and [s.label for s in fixed.scan.sites] == ["drops.0"]


# ------------------------------------------------------------------------------ declared MC dropout


class MC(nn.Module):
    def __init__(self, on_in_eval=True):
        super().__init__()
        self.fc, self.p, self.on = nn.Linear(16, 16), 0.25, on_in_eval

    def forward(self, x):
        return F.dropout(self.fc(x), self.p, training=self.training or self.on)


def test_declared_eval_active_sites_are_verified_as_dropout_in_eval():
    checks = ["drop_rate_matches_by_binomial", *EXACT]
    undeclared = scan(MC(), x_(8, 16), checks=checks)
    assert {("(model)", mc.EVAL_DETERMINISTIC), ("(model)[dropout]", mc.SITE_EVAL)} <= bad(undeclared)
    r = scan(MC(), x_(8, 16), checks=checks, eval_active=["(model)"], max_calls=2000)
    assert r.ok and bad(r) == set(), r.summary()
    (t,) = r.run.targets[1:]
    verdicts = {x.check: x.verdict for x in t.results}
    assert verdicts[mc.SITE_EVAL] == "PASS" and verdicts["drop_rate_matches_by_binomial"] == "PASS"
    assert "eval_mode_deterministic_and_exact" not in verdicts or verdicts["eval_mode_deterministic_and_exact"] \
        != "FAIL"
    # declared, but it does not drop in eval: the declaration is checked, not trusted
    off = scan(MC(on_in_eval=False), x_(8, 16), eval_active=["(model)"])
    assert ("(model)[dropout]", mc.SITE_EVAL) in bad(off)
    assert "(model): declared eval-active (MC dropout), but does not drop in 2 of 2 eval call(s)" in off.scan.causes
    with pytest.raises(InvalidArgument, match="eval_active="):
        dropverify.scan(MC(), x_(8, 16), eval_active=[3])


# ------------------------------------------------------------------------------ dropouts in series


class Series(nn.Module):
    def __init__(self, how):
        super().__init__()
        self.how, self.fc = how, nn.Linear(16, 16)
        self.drop1, self.drop2 = nn.Dropout(0.3), nn.Dropout(0.3, inplace=how == "inplace")
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        y = self.drop1(self.fc(x))
        if self.how == "series":
            return self.drop2(y)
        if self.how == "twice":
            return self.drop1(y)
        if self.how == "functional":
            return F.dropout(y, 0.3, self.training)
        return self.drop2(self.act(y))  # an in-place ReLU between: not in series


@pytest.mark.parametrize("how, words", [
    ("series", "drop2 is applied to the output of drop1 with nothing between: p 0.3 then 0.3 is one dropout at "
               "effective p = 1 - (1 - 0.3)(1 - 0.3) = 0.51"),
    ("twice", "drop1 is applied twice to the same tensor: p 0.3 then 0.3 is one dropout at effective p"),
    ("functional", "(model) is applied to the output of drop1 with nothing between"),
])
def test_two_dropouts_in_series_are_named_with_the_effective_rate(how, words):
    r = scan(Series(how), x_(8, 16), checks=["multiplier_values_exact"])
    assert bad(r) == {("(model)", mc.SERIES)}, r.summary()
    assert any(c.startswith(words) for c in r.scan.causes), r.scan.causes


def test_dropouts_with_an_op_between_or_of_other_kinds_are_not_in_series():
    r = scan(Series("inplace"), x_(8, 16), checks=["multiplier_values_exact"])
    assert r.ok and bad(r) == set(), r.summary()
    timm = pytest.importorskip("timm")
    vit = timm.create_model("vit_tiny_patch16_224", img_size=32, num_classes=10, drop_rate=0.1, drop_path_rate=0.1,
                            depth=2)  # Mlp's dropout feeds DropPath unchanged (through nn.Identity): other kinds
    r = scan(vit, x_(2, 3, 32, 32), checks=["multiplier_values_exact"])
    (res,) = [x for x in r.results if x.check == mc.SERIES]
    assert res.verdict == "PASS", res.message


def test_rnn_dropout_left_in_training_mode_in_eval_is_named():
    class KeepsTraining(LM):
        def forward(self, x):
            self.rnn.train()  # broken: the LSTM drops between layers in eval too
            return super().forward(x)

    r = scan(KeepsTraining(), x_(5, 16, 8))
    assert ("rnn[LSTM]", mc.SITE_EVAL) in bad(r) and ("(model)", mc.EVAL_DETERMINISTIC) in bad(r)
    assert "rnn: nn.LSTM(dropout=0.3) is in training mode while the model is in eval: it drops between its layers " \
           "(2 of 2 eval calls)" in r.scan.causes, r.scan.causes
    ok = [x for x in scan(LM(), x_(5, 16, 8)).results if x.check == mc.SITE_EVAL]
    assert [x.message for x in ok] == ["rnn: inactive in 2 eval call(s) (in eval mode: torch drops between an RNN's "
                                       "layers in training only)"]


def test_a_declared_mc_dropout_module_is_replayed_in_eval_mode():
    class MCDropout(nn.Dropout):
        def forward(self, x):
            return F.dropout(x, self.p, True)  # on in eval by design

    model = nn.Sequential(nn.Linear(16, 16), MCDropout(0.25))
    checks = ["drop_rate_matches_by_binomial", *EXACT]
    assert ("1[MCDropout]", "eval_mode_deterministic_and_exact") in bad(scan(model, x_(8, 16), checks=checks))
    r = scan(model, x_(8, 16), checks=checks, eval_active=["1"], max_calls=2000)
    assert r.ok and bad(r) == set(), r.summary()
    (t,) = r.run.targets[1:]
    assert any(c.startswith("Declared eval-active (MC dropout): every call runs the module in eval mode")
               for c in t.conventions)
    assert {x.check: x.verdict for x in t.results}["drop_rate_matches_by_binomial"] == "PASS"


def test_rnn_layer_replay_ties_the_models_own_lstm_to_f_dropout(monkeypatch):
    r = scan(LM(layers=3), x_(5, 4, 8))
    (res,) = [x for x in r.results if x.check == mc.RNN_REPLAY]
    assert res.verdict == "PASS" and res.details["max_abs_diff"] == 0.0, res.message
    # the comparison is real: replayed with another rate between the layers, it FAILs
    from dropverify.modelscan import model_checks
    dropout = F.dropout
    monkeypatch.setattr(model_checks.F, "dropout", lambda h, p, training: dropout(h, p / 2, training))
    r = scan(LM(layers=3), x_(5, 4, 8))
    (res,) = [x for x in r.results if x.check == mc.RNN_REPLAY]
    assert res.verdict == "FAIL" and "it does not drop between its layers as F.dropout at its p does" in res.message


# ------------------------------------------------------------------------------ the library models of issue 23


def test_library_models_that_used_to_fail_or_error():
    timm = pytest.importorskip("timm")
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    resnet = timm.create_model("resnet18", drop_block_rate=0.1, num_classes=10)
    r = scan(resnet, x_(8, 3, 64, 64), checks=["gamma_matches_by_binomial"], max_calls=1000)
    assert bad(r) == set(), r.summary()
    (layer3,) = [t for t in r.run.targets if t.spec_name == "layer3.0.drop_block[DropBlock2d]"]
    assert layer3.params["p"] == pytest.approx(0.025)  # drop_prob 0.1 x gamma_scale 0.25
    assert [x.verdict for x in layer3.results if x.check == "gamma_matches_by_binomial"] == ["PASS"]
    effnet = torchvision.models.efficientnet_b0(num_classes=10)  # its classifier is Dropout(0.2, inplace=True)
    r = scan(effnet, x_(2, 3, 32, 32), checks=["gradient_uses_forward_mask"])
    assert bad(r) == set(), r.summary()
    (head,) = [t for t in r.run.targets if t.spec_name == "classifier.0[Dropout]"]
    grads = {x.check: x.verdict for x in head.results if x.check.startswith("gradient_uses_forward_mask[")}
    assert grads and set(grads.values()) == {"PASS"}, grads  # every layout the values check runs on
