"""Issue 23 item 4e: configured rates read from the model's own config and matched per site kind, and rates
the user declares (``expect`` / ``--expect``). Each with a correct model (PASS) and a broken one (FAIL naming
both fields)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402

import dropverify  # noqa: E402
from dropverify import InvalidArgument, Settings  # noqa: E402
from dropverify.cli import main  # noqa: E402
from dropverify.modelscan import configs  # noqa: E402

EXACT = ["multiplier_values_exact"]
MODELS = str(Path(__file__).resolve().parents[1] / "examples" / "scan" / "scan_models.py")


def scan(model, x, **kw):
    return dropverify.scan(model, x, settings=Settings(max_calls=200), checks=EXACT, **kw)


def result(report, check):
    (r,) = [r for r in report.results if r.check == check]
    return r


def x_(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------ a tiny BERT-like model


class SelfAttention(nn.Module):
    def __init__(self, dim, p):
        super().__init__()
        self.qkv, self.heads = nn.Linear(dim, 3 * dim), 2
        self.dropout = nn.Dropout(p)            # on the attention weights, (N, heads, L, L)

    def forward(self, x):
        n, t, c = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        w = self.dropout(torch.softmax(q @ k.transpose(-1, -2) / (c // self.heads) ** 0.5, -1))
        return (w @ v).transpose(1, 2).reshape(n, t, c)


class Output(nn.Module):
    def __init__(self, dim, p):
        super().__init__()
        self.dense, self.dropout = nn.Linear(dim, dim), nn.Dropout(p)   # hidden dropout, (N, L, C)

    def forward(self, h, x):
        return x + self.dropout(self.dense(h))


class Attention(nn.Module):
    def __init__(self, dim, attn_p, hidden_p):
        super().__init__()
        self.self, self.output = SelfAttention(dim, attn_p), Output(dim, hidden_p)

    def forward(self, x):
        return self.output(self.self(x), x)


class TinyBert(nn.Module):
    """BERT's layout: attention.self.dropout (attention weights), attention.output.dropout (hidden)."""

    def __init__(self, config, swap=False):
        super().__init__()
        self.config = config
        get = (lambda k: config[k]) if isinstance(config, dict) else (lambda k: getattr(config, k))
        attn, hidden = get("attention_probs_dropout_prob"), get("hidden_dropout_prob")
        if swap:  # the bug: each dropout gets the other's config field
            attn, hidden = hidden, attn
        self.embed_dropout = nn.Dropout(hidden)
        self.attention = Attention(16, attn, hidden)

    def forward(self, x):
        return self.attention(self.embed_dropout(x))


@pytest.mark.parametrize("config", [
    {"hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.2},
    SimpleNamespace(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.2),
], ids=["dict", "object"])
def test_attention_and_hidden_dropouts_given_each_others_config_values_fail_naming_both(config):
    ok = scan(TinyBert(config), x_(4, 6, 16))
    r = result(ok, configs.CONFIG_CHECK)
    assert r.verdict == "PASS" and ok.verdict != "FAIL", ok.summary()
    broken = scan(TinyBert(config, swap=True), x_(4, 6, 16))
    r = result(broken, configs.CONFIG_CHECK)
    assert r.verdict == "FAIL", broken.summary()
    assert "attention.self.dropout: attention dropout received p=0.1" in r.text
    assert "config.hidden_dropout_prob" in r.text and "config.attention_probs_dropout_prob=0.2" in r.text
    assert "attention.output.dropout: hidden dropout received p=0.2" in r.text
    assert broken.verdict == "FAIL" and any("attention_probs_dropout_prob" in c for c in broken.scan.causes)


def test_hugging_face_config_is_read_when_installed():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.2, classifier_dropout=None)
    fields = {f.name: (f.rate, f.kind) for f in configs.read_config(SimpleNamespace(config=cfg))}
    assert fields == {"hidden_dropout_prob": (0.1, "hidden"), "attention_probs_dropout_prob": (0.2, "attention")}


# ------------------------------------------------------------------------------ keep_prob (TF1 ports)


@dataclasses.dataclass
class Tf1Config:
    keep_prob: float = 0.9
    hidden_size: int = 16


class Tf1Port(nn.Module):
    def __init__(self, cfg, as_p=False):
        super().__init__()
        self.config = cfg
        self.fc = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.drop = nn.Dropout(cfg.keep_prob if as_p else 1.0 - cfg.keep_prob)

    def forward(self, x):
        return self.drop(self.fc(x))


def test_keep_prob_passed_as_p_fails_and_one_minus_keep_prob_passes():
    ok = scan(Tf1Port(Tf1Config()), x_(8, 16))
    assert result(ok, configs.CONFIG_CHECK).verdict == "PASS", ok.summary()
    broken = scan(Tf1Port(Tf1Config(), as_p=True), x_(8, 16))
    r = result(broken, configs.CONFIG_CHECK)
    assert r.verdict == "FAIL", broken.summary()
    assert "config.keep_prob=0.9 passed as p" in r.text and "1 - 0.9 = 0.1" in r.text


def test_field_kinds_and_keep_rates():
    fields = {f.name: f for f in configs._fields_of({
        "attn_pdrop": 0.2, "resid_pdrop": 0.1, "embd_pdrop": 0.15, "drop_path_rate": 0.1, "drop_block_rate": 0.05,
        "attention_keep_prob": 0.8, "layerdrop": 0.1, "hidden_size": 0.5, "use_dropout": True, "dropout": 3.0}, "c.")}
    assert {k: (f.kind, round(f.rate, 6)) for k, f in fields.items()} == {
        "attn_pdrop": ("attention", 0.2), "resid_pdrop": ("hidden", 0.1), "embd_pdrop": ("hidden", 0.15),
        "drop_path_rate": ("drop_path", 0.1), "drop_block_rate": ("drop_block", 0.05),
        "attention_keep_prob": ("attention", 0.2)}


def test_no_config_adds_no_result():
    r = scan(nn.Sequential(nn.Linear(16, 16), nn.Dropout(0.2)), x_(8, 16))
    assert not [x for x in r.results if x.check == configs.CONFIG_CHECK]


# ------------------------------------------------------------------------------ declared rates


def _tinynet():
    import importlib.util
    spec = importlib.util.spec_from_file_location("scan_models_cfg", MODELS)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.correct(), mod.example_input()


def test_expect_pattern_passes_when_the_rate_matches_and_fails_when_not():
    model, x = _tinynet()
    ok = scan(model, x, expect={"blocks.*.attn": 0.1, "head_drop": 0.1})
    assert result(ok, configs.EXPECT_CHECK).verdict == "PASS", ok.summary()
    broken = scan(model, x, expect=["blocks.*.attn=0.2"])
    r = result(broken, configs.EXPECT_CHECK)
    assert r.verdict == "FAIL" and "blocks.0.attn: p=0.1 in training, but blocks.*.attn=0.2 is expected" in r.text
    assert broken.verdict == "FAIL"


@pytest.mark.parametrize("expect, message", [
    ({"nothing.*": 0.1}, "matches no dropout site"),
    (["blocks.*.attn"], "should be PATTERN=RATE"),
    ({"blocks.*.attn": 1.5}, "a rate in [0, 1]"),
])
def test_bad_expect_is_invalid_argument(expect, message):
    model, x = _tinynet()
    with pytest.raises(InvalidArgument, match=message.replace("[", r"\[").replace("]", r"\]")):
        scan(model, x, expect=expect)


def test_cli_expect_exit_codes(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    fast = ["--max-calls", "200", "--check", "multiplier_values_exact", "--quiet", "--shape", "8,5,16"]
    assert main(["scan", f"{MODELS}:correct", *fast, "--expect", "blocks.*.attn=0.1"]) == 0
    assert main(["scan", f"{MODELS}:correct", *fast, "--expect", "blocks.*.attn=0.3"]) == 1
    out = capsys.readouterr().out
    assert "blocks.*.attn=0.3 is expected" in out
    assert main(["scan", f"{MODELS}:correct", *fast, "--expect", "nope=0.1"]) == 2
    err = capsys.readouterr().err
    assert "'nope' matches no dropout site" in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------------------ regression: torchvision Swin


class WindowAttention(nn.Module):
    """torchvision's ShiftedWindowAttention pattern: two float rates on the module, F.dropout on the attention
    weights with ``attention_dropout`` then on the projection with ``dropout``."""

    def __init__(self, dropout=0.1, attention_dropout=0.15, swap=False):
        super().__init__()
        self.qkv, self.proj = nn.Linear(16, 48), nn.Linear(16, 16)
        self.dropout, self.attention_dropout, self.swap = dropout, attention_dropout, swap

    def forward(self, x):
        import torch.nn.functional as F
        n, t, c = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, 2, c // 2).permute(2, 0, 3, 1, 4)
        w = torch.softmax(q @ k.transpose(-1, -2), -1)
        w = F.dropout(w, p=self.dropout if self.swap else self.attention_dropout, training=self.training)
        y = self.proj((w @ v).transpose(1, 2).reshape(n, t, c))
        return F.dropout(y, p=self.dropout, training=self.training)


class SwinLike(nn.Module):
    def __init__(self, swap=False):
        super().__init__()
        self.attn = WindowAttention(swap=swap)
        self.dropout, self.attention_dropout = 0.1, 0.15   # as torchvision's SwinTransformer keeps them

    def forward(self, x):
        return self.attn(x)


def test_functional_dropout_on_attention_weights_with_the_attention_rate_is_not_a_false_fail():
    """tv swin_t FAILed 12 sites 'F.dropout received p=0.15, but 0.1 is configured (attn.dropout)': the
    module's attention_dropout was not among the rates an F.dropout may receive."""
    ok = scan(SwinLike(), x_(4, 6, 16))
    assert ok.verdict != "FAIL" and not [r for r in ok.results if r.verdict in ("FAIL", "ERROR")], ok.summary()
    broken = scan(SwinLike(swap=True), x_(4, 6, 16))
    r = result(broken, configs.CONFIG_CHECK)
    assert r.verdict == "FAIL" and "attn: attention dropout received p=0.1" in r.text, broken.summary()
    assert "model.dropout" in r.text and "model.attention_dropout=0.15" in r.text


class CrossAttention(nn.Module):
    """BART's layout: F.dropout on (N, heads, queries, keys) cross-attention weights at ``attention_dropout``,
    F.dropout on the output at ``dropout``."""

    def __init__(self, config):
        super().__init__()
        self.q, self.kv = nn.Linear(16, 16), nn.Linear(16, 32)
        self.dropout, self.attention_dropout = config["dropout"], config["attention_dropout"]

    def forward(self, x):
        import torch.nn.functional as F
        n, t, c = x.shape
        memory = x[:, :3]                                   # 3 keys for t queries: not square
        q = self.q(x).reshape(n, t, 2, c // 2).transpose(1, 2)
        k, v = self.kv(memory).reshape(n, 3, 2, 2, c // 2).permute(2, 0, 3, 1, 4)
        w = F.dropout(torch.softmax(q @ k.transpose(-1, -2), -1), p=self.attention_dropout, training=self.training)
        y = (w @ v).transpose(1, 2).reshape(n, t, c)
        return F.dropout(y, p=self.dropout, training=self.training)


class BartLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.config = {"dropout": 0.1, "attention_dropout": 0.2}
        self.encoder_attn = CrossAttention(self.config)

    def forward(self, x):
        return self.encoder_attn(x)


def test_cross_attention_weights_are_attention_sites():
    """Eager cross-attention weights (queries != keys) are attention dropout, not hidden: their rate is the
    config's attention_dropout."""
    r = scan(BartLike(), x_(4, 6, 16))
    res = result(r, configs.CONFIG_CHECK)
    assert res.verdict == "PASS" and r.verdict != "FAIL", r.summary()
