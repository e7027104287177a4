"""``dropverify.scan``: discovery, the model-level checks on small models carrying each public
bug (and correct ones), a real timm ViT, the in-situ family, the report and its JSON."""
from __future__ import annotations

import functools
import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import dropverify  # noqa: E402
from dropverify import InvalidArgument, Settings  # noqa: E402
from dropverify.modelscan import model_checks as mc  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "scan" / "scan_models.py"


def _models():
    spec = importlib.util.spec_from_file_location("scan_models", EXAMPLES)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("scan_models", module)
    spec.loader.exec_module(module)
    return module


sm = _models()
# exact in-situ checks only and a small budget: seconds per scan; the statistical path has its own test
FAST = dict(settings=Settings(max_calls=200), checks=["multiplier_values_exact", "eval_mode_deterministic_and_exact"])
SCAN_CHECKS = (mc.EVAL_DETERMINISTIC, mc.SITE_TRAINING, mc.SITE_EVAL, mc.SITE_ROUND_TRIP)


@functools.lru_cache(maxsize=None)
def scanned(name: str):
    return dropverify.scan(getattr(sm, name)(), sm.example_input(), **FAST)


def failing(report):
    """{(target, check) of every FAIL / ERROR}."""
    return {(r.target, r.check.split("[")[0]) for r in report.results if r.verdict in ("FAIL", "ERROR")}


def site(report, label, kind=None):
    rows = [s for s in report.scan.sites if s.label == label and (kind is None or kind in s.kind)]
    assert len(rows) == 1, (label, [s.label for s in report.scan.sites])
    return rows[0]


# ------------------------------------------------------------------------------ correct models


def test_correct_model_passes_every_check():
    r = scanned("correct")
    assert r.verdict == "PASS" and r.ok and r.scan.causes == ()
    checks = {r_.check.split("[")[0] for r_ in r.results}
    assert set(SCAN_CHECKS) | {mc.SCHEDULE} <= checks
    attn = site(r, "blocks.2.attn")
    assert (attn.kind, attn.configured, attn.configured_from, attn.train, attn.eval) == \
        ("F.scaled_dot_product_attention", 0.1, "blocks.2.attn.attn_drop", "0.1", "0")
    mlp = site(r, "blocks.2.mlp")
    assert (mlp.kind, mlp.configured, mlp.train, mlp.eval) == ("F.dropout", 0.1, "0.1", "0 (p=0.1, off)")
    dp = site(r, "blocks.3.drop_path")
    assert "DropPath" in dp.kind and "by its name" in dp.kind and dp.train == "0.3"
    head = site(r, "head_drop")
    assert head.kind == "nn.Dropout" and head.in_situ == "verified"
    (schedule,) = r.scan.schedules
    assert schedule.pattern == "blocks.{i}.drop_path" and schedule.verdict == "PASS"
    assert schedule.identity == (True, False, False, False)
    assert schedule.rates == pytest.approx((0.0, 0.1, 0.2, 0.3))


# ------------------------------------------------------------------------------ one model per bug

BUGS = [
    ("sdpa_dropout_in_eval",
     {("(model)", mc.EVAL_DETERMINISTIC), *{(f"blocks.{i}.attn[scaled_dot_product_attention]", mc.SITE_EVAL)
                                           for i in range(4)},
      ("blocks.0.attn[scaled_dot_product_attention]", "eval_mode_deterministic_and_exact")},
     "blocks.0.attn: dropout_p=0.1 passed to scaled_dot_product_attention in eval"),
    ("dropout_without_training_flag",
     {("(model)", mc.EVAL_DETERMINISTIC), *{(f"blocks.{i}.mlp[dropout]", mc.SITE_EVAL) for i in range(4)},
      ("blocks.0.mlp[dropout]", "eval_mode_deterministic_and_exact")},
     "blocks.0.mlp: F.dropout(p=0.1) called with training=True (F.dropout's default; pass training=self.training) "
     "in eval"),
    ("zeroed_and_not_restored",
     {(f"blocks.{i}.attn[scaled_dot_product_attention]", mc.SITE_ROUND_TRIP) for i in range(4)},
     "blocks.0.attn: dropout_p=0.1 in training before an eval pass, 0 after it (train -> eval -> train): "
     "the rate is not restored"),
    ("rate_not_plumbed",
     {(f"blocks.{i}.attn[scaled_dot_product_attention]", mc.SITE_TRAINING) for i in range(4)},
     "blocks.0.attn: F.scaled_dot_product_attention received dropout_p=0 in training, but 0.1 is configured "
     "(blocks.0.attn.attn_drop): the configured rate is not plumbed into the call"),
    ("droppath_without_scale",
     {(f"blocks.{i}.drop_path[DropPathNoScale]", "multiplier_values_exact") for i in (1, 2, 3)},
     "blocks.1.drop_path: multiplier_values_exact on contiguous, transposed: elements neither kept*scale nor "
     "dropped="),
    ("decreasing_depth_schedule", {("(model)", mc.SCHEDULE)},
     "blocks.{i}.drop_path: drop rates decrease with depth (blocks.0.drop_path 0.3 -> blocks.1.drop_path 0.2)"),
    ("nonlinear_depth_schedule", {("(model)", mc.SCHEDULE)},
     "blocks.{i}.drop_path: drop rates are not linear in depth: blocks.1.drop_path has 0.03333, the line from 0 "
     "to 0.3 gives 0.1 there"),
]


@pytest.mark.parametrize("name, expected, cause", BUGS, ids=[b[0] for b in BUGS])
def test_each_bug_fails_where_it_lives_with_a_cause_naming_the_site(name, expected, cause):
    r = scanned(name)
    assert r.verdict == "FAIL" and not r.ok
    assert failing(r) == expected
    assert any(c.startswith(cause) for c in r.scan.causes), r.scan.causes
    assert any(line.startswith(f"  cause: {cause}") for line in r.summary().splitlines())


def test_eval_determinism_names_the_sites_that_dropped():
    r = scanned("sdpa_dropout_in_eval")
    (res,) = [x for x in r.results if x.check == mc.EVAL_DETERMINISTIC]
    assert "dropout applied in eval at blocks.0.attn (scaled_dot_product_attention dropout_p=0.1)" in res.message
    assert "and 1 more site(s)" in res.message
    assert site(r, "blocks.1.attn").eval == "0.1"


def test_dropout_whose_default_is_training_false_never_drops():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.p = 0.2
            self.fc = nn.Linear(8, 8)

        def forward(self, x):
            return F.alpha_dropout(self.fc(x), self.p)  # training defaults to False

    r = dropverify.scan(M(), torch.randn(4, 8), **FAST)
    assert failing(r) == {("(model)[alpha_dropout]", mc.SITE_TRAINING)}
    assert r.scan.causes == ("(model): F.alpha_dropout(p=0.2) called with training=False (F.alpha_dropout's "
                             "default; pass training=self.training) in training: it never drops",)
    assert site(r, "(model)").in_situ.startswith("not sampled: inactive in training")


# ------------------------------------------------------------------------------ discovery


def test_positional_dropout_p_ordinals_and_module_sites_own_their_functional_calls():
    class TwoCalls(nn.Module):
        def __init__(self):
            super().__init__()
            self.dropout_p = 0.25
            self.drop = nn.Dropout(0.5)

        def forward(self, x):
            q = x.unsqueeze(1)
            p = self.dropout_p if self.training else 0.0
            a = F.scaled_dot_product_attention(q, q, q, None, p)          # dropout_p by position
            b = F.scaled_dot_product_attention(q, q, q, dropout_p=p / 5)  # a second call: ordinal 2
            return self.drop((a + b).squeeze(1))

    r = dropverify.scan(TwoCalls(), torch.randn(2, 6, 8), **FAST)
    first, second = site(r, "(model)"), site(r, "(model)#2")
    assert (first.train, first.configured, second.train) == ("0.25", 0.25, "0.05")
    assert failing(r) == {("(model)#2[scaled_dot_product_attention]", mc.SITE_TRAINING)}  # 0.05 != dropout_p
    drop = site(r, "drop")
    assert drop.kind == "nn.Dropout" and drop.train == "0.5"  # F.dropout inside nn.Dropout is the module's call
    assert len(r.scan.sites) == 3


def test_registered_class_and_multihead_attention():
    class Noise(nn.Module):
        def __init__(self, rate):
            super().__init__()
            self.rate, self.weight_free = rate, True

        def forward(self, x):
            if not self.training:
                return x
            keep = torch.rand_like(x) >= self.rate
            return x * keep / (1 - self.rate)

    model = nn.Sequential(nn.Linear(8, 8), Noise(0.3))
    with pytest.raises(InvalidArgument, match="no dropout site found"):  # not a dropout-family name, not registered
        dropverify.scan(model, torch.randn(4, 8), **FAST)
    dropverify.modelscan.register(Noise, "dropout", p="rate")
    try:
        r = dropverify.scan(model, torch.randn(4, 8), **FAST)
    finally:
        dropverify.modelscan.unregister(Noise)
    (row,) = r.scan.sites
    assert row.label == "1" and "registered" in row.kind and row.configured == 0.3 and row.verdict == "PASS"

    mha = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, dropout=0.1, batch_first=True), 1,
                                enable_nested_tensor=False)
    r = dropverify.scan(mha, torch.randn(4, 5, 16), **FAST)
    attn = site(r, "layers.0.self_attn")
    assert (attn.kind, attn.configured, attn.train) == ("F.multi_head_attention_forward", 0.1, "0.1")
    assert r.ok and r.verdict == "PASS"
    with pytest.raises(InvalidArgument, match="variant='nope'"):
        dropverify.modelscan.register(Noise, "nope")


def test_timm_vit_scan():
    sm_vit = sm.timm_vit()
    r = dropverify.scan(sm_vit, torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)), **FAST)
    assert r.ok and r.verdict == "PASS", r.summary()
    sdpa = [s for s in r.scan.sites if s.kind == "F.scaled_dot_product_attention"]
    assert len(sdpa) == 12
    assert all((s.configured, s.train, s.eval) == (0.1, "0.1", "0") for s in sdpa)
    assert sdpa[3].configured_from == "blocks.3.attn.attn_drop.p"
    assert sdpa[0].in_situ == "verified (stands for 11 identical site(s))"
    assert all(s.in_situ == "shared with blocks.0.attn[scaled_dot_product_attention]" for s in sdpa[1:])
    unused = [s for s in r.scan.sites if s.label.endswith("attn.attn_drop")]
    # fused attention: the rate goes to SDPA; the modules are never called, and never counted as PASS
    assert len(unused) == 12 and all(s.verdict == "NOT EXERCISED" and not s.calls for s in unused)
    paths = [s for s in r.scan.schedules if s.pattern == "blocks.{i}.drop_path1"]
    (sched,) = paths
    assert sched.verdict == "PASS" and len(sched.rates) == 12 and sched.identity[0]
    assert sched.rates[-1] == pytest.approx(0.1) and sched.rates[1] == pytest.approx(0.1 / 11)
    assert site(r, "head_drop").train == "0.1"
    # one run of the model: every in-situ target is in the run, the rest are the scan's own exact targets
    assert r.run.targets[0].spec_name == "(model)"


# ------------------------------------------------------------------------------ the scan's promises


def test_scan_leaves_the_model_and_the_rng_as_they_were():
    model = sm.zeroed_and_not_restored().eval()
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    dropverify.scan(model, sm.example_input(), **FAST)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert not model.training and all(b.attn.dropout_p == 0.1 for b in model.blocks)


def test_uncopyable_model_is_scanned_in_place_and_its_flags_restored():
    class NoCopy(nn.Module):
        def __init__(self):
            super().__init__()
            self.drop = nn.Dropout(0.2)

        def forward(self, x):
            return self.drop(x)

        def __deepcopy__(self, memo):
            raise TypeError("not copyable")

    model = NoCopy().eval()
    r = dropverify.scan(model, torch.randn(4, 8), **FAST)
    assert not model.training and not model.drop.training
    assert site(r, "drop").train == "0.2" and r.ok


def test_in_situ_statistics_are_one_holm_family():
    r = dropverify.scan(sm.correct(), sm.example_input(), settings=Settings(max_calls=200),
                        checks=["drop_rate_matches_by_binomial"])
    stats = [x for x in r.results if x.statistical]
    in_situ = [t for t in r.run.targets if any(x.statistical for x in t.results)]
    assert len(stats) == r.run.m_statistical == len(in_situ) >= 4
    assert all(x.p_adjusted is not None and x.alpha == pytest.approx(r.run.alpha_each) for x in stats)
    assert not any(x.verdict == "FAIL" for x in r.results)


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(InvalidArgument, match="model is a str, but should be a torch nn.Module"):
        dropverify.scan("model", torch.randn(2, 3))
    with pytest.raises(InvalidArgument, match="example_inputs is a str"):
        dropverify.scan(nn.Linear(3, 4), "x")
    with pytest.raises(InvalidArgument, match=r"the model raised RuntimeError on the example input "
                                              r"\(\(2, 5\) float32 on cpu\) in training"):
        dropverify.scan(nn.Linear(3, 4), torch.randn(2, 5))
    with pytest.raises(InvalidArgument, match="check='bogus'"):
        dropverify.scan(nn.Linear(3, 4), torch.randn(2, 3), checks=["bogus"])


def test_a_model_that_raises_in_eval_is_an_error_and_the_scan_goes_on():
    class EvalBreaks(nn.Module):
        def __init__(self):
            super().__init__()
            self.drop = nn.Dropout(0.2)

        def forward(self, x):
            if not self.training:
                raise RuntimeError("no eval path")
            return self.drop(x)

    r = dropverify.scan(EvalBreaks(), {"x": torch.randn(4, 8)}, **FAST)
    (res,) = [x for x in r.results if x.check == mc.EVAL_DETERMINISTIC]
    assert res.verdict == "ERROR" and res.message == "the model raised RuntimeError: no eval path in eval"
    assert site(r, "drop").train == "0.2" and not r.ok


# ------------------------------------------------------------------------------ report


def test_report_site_table_first_json_schema_and_deterministic_bytes(tmp_path):
    r = scanned("sdpa_dropout_in_eval")
    md = r.to_markdown()
    assert md.index("## Causes") < md.index("## Sites") < md.index("## Model checks") < md.index("## Site details")
    row = next(line for line in md.splitlines() if line.startswith("| `blocks.0.attn` |"))
    assert row == ("| `blocks.0.attn` | F.scaled_dot_product_attention | 0.1 (`blocks.0.attn.attn_drop`) | 0.1 | 0.1 | "
                   "verified (stands for 3 identical site(s)) | **FAIL** |")
    assert "- blocks.0.attn: dropout_p=0.1 passed to scaled_dot_product_attention in eval" in md
    # two fresh scans (the environment lists the frameworks imported so far: the same for both)
    first = dropverify.scan(sm.sdpa_dropout_in_eval(), sm.example_input(), **FAST).write(tmp_path / "a")
    again = dropverify.scan(sm.sdpa_dropout_in_eval(), sm.example_input(), **FAST).write(tmp_path / "b")
    for p, q in zip(first, again):
        if "timings" not in p.name:
            assert p.read_bytes() == q.read_bytes(), p.name
    doc = json.loads((tmp_path / "a" / "scan.json").read_text())
    assert doc["kind"] == "scan" and doc["verdict"] == "FAIL" and doc["ok"] is False
    assert [t["target"] for t in doc["targets"]][0] == "(model)"
    jsonschema = pytest.importorskip("jsonschema")
    from dropverify.report import schema_path
    validator = jsonschema.Draft202012Validator(json.loads(schema_path().read_text()))
    validator.validate(doc)
    for t in doc["targets"]:
        validator.validate(t)


def test_report_object_is_a_report():
    r = scanned("rate_not_plumbed")
    assert isinstance(r, dropverify.Report)
    assert repr(r).startswith("ScanReport(FAIL: scan of scan_models.TinyNet; 12 sites;")
    with pytest.raises(dropverify.CheckFailed, match="cause: blocks.0.attn: F.scaled_dot_product_attention received"):
        r.assert_ok()
    assert scanned("correct").assert_ok() is scanned("correct")


def test_committed_timm_report_is_what_the_readme_quotes():
    root = Path(__file__).resolve().parents[1]
    report = root / "reports" / "scan" / "timm_vit_tiny.md"
    text = report.read_text()
    readme = (root / "docs" / "frameworks.md").read_text()
    section = readme[readme.index("## Audit a whole model: `dropverify scan`"):]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert len(rows) == 6 and all(row in text.splitlines() for row in rows)
    quoted = re.search(r"(\d+) sites,\s+(\d+) PASS,\s+(\d+) INCONCLUSIVE,\s+(\d+) NOT EXERCISED", section)
    assert quoted, "docs/frameworks.md no longer quotes the scan's counts"
    sites, passed, inconclusive, idle = quoted.groups()
    assert (f"Verdict: **INCONCLUSIVE** — {sites} dropout site(s): {passed} PASS, {inconclusive} INCONCLUSIVE, "
            f"{idle} NOT EXERCISED.") in text
    doc = json.loads(report.with_suffix(".json").read_text())
    from dropverify.report.jsonout import SCHEMA_VERSION
    current = doc["schema_version"] == SCHEMA_VERSION  # else written before issue 25: `make scan` regenerates it
    assert doc["run"]["command"] == ("dropverify scan examples/scan/scan_models.py:timm_vit --shape 64,3,32,32 "
                                     "--time-budget 0" + ("" if current else " --report reports/scan/timm_vit_tiny.md"))
    assert doc["ok"] and not doc["causes"]
    if not current:
        pytest.skip(f"the committed scan report has schema {doc['schema_version']}, not {SCHEMA_VERSION}: `make scan`")
    jsonschema = pytest.importorskip("jsonschema")
    from dropverify.report import schema_path
    jsonschema.Draft202012Validator(json.loads(schema_path().read_text())).validate(doc)


def test_a_module_with_two_rates_and_an_unplumbed_one():
    class TwoRates(nn.Module):
        def __init__(self, plumbed=True):
            super().__init__()
            self.dropout_p, self.proj_drop, self.plumbed = 0.1, 0.3, plumbed

        def forward(self, x):
            q = x.unsqueeze(1)
            y = F.scaled_dot_product_attention(q, q, q, dropout_p=self.dropout_p if self.training else 0.0)
            return F.dropout(y.squeeze(1), self.proj_drop if self.plumbed else 0.0, self.training)

    r = dropverify.scan(TwoRates(), torch.randn(4, 6, 8), **FAST)
    assert r.ok, r.summary()
    (ok,) = [x for x in r.results if x.target == "(model)[dropout]" and x.check == mc.SITE_TRAINING]
    assert ok.message == ("(model): F.dropout received p=0.3 in training, as configured ((model).proj_drop; the first "
                          "rate attribute, (model).dropout_p, is 0.1)")
    r = dropverify.scan(TwoRates(plumbed=False), torch.randn(4, 6, 8), **FAST)
    assert failing(r) == {("(model)[dropout]", mc.SITE_TRAINING)}
