"""A corpus of real library models for ``dropverify scan`` (issue 23): no weights, no network.

Each entry of :data:`CORPUS` is a factory ``<name>()`` and an input function ``<name>_input()``;
``make scan-corpus`` scans each with the default checks and ``--time-budget 0`` into
``reports/scan/<name>.md``::

    dropverify scan examples/scan/corpus.py:hf_bert_eager --input examples/scan/corpus.py:hf_bert_eager_input \\
        --time-budget 0 --report reports/scan/hf_bert_eager.md

Every rate the constructor allows is set > 0; where a config has several dropout fields they get
different values (0.1, 0.15, 0.2 ...) so that a site fed another field's value shows. Inputs are the
smallest each model allows (32 x 32 images, 8 tokens), so the whole corpus runs in minutes.
Hugging Face models are built from their config classes (2 layers, hidden 32), each with
``attn_implementation`` "eager" and "sdpa".
"""
from __future__ import annotations

from typing import Any, Dict

import torch
import torch.nn as nn

BATCH, TOKENS, VOCAB = 4, 8, 64


def _image(size: int = 32, batch: int = BATCH) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))


def _tokens(batch: int = BATCH, n: int = TOKENS) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, n), generator=torch.Generator().manual_seed(0))


# ------------------------------------------------------------------------------ torchvision

def tv_efficientnet_b0() -> nn.Module:
    """torchvision efficientnet_b0: StochasticDepth('row', 0 .. 0.2) and an in-place classifier Dropout(0.2)."""
    from torchvision.models import efficientnet_b0
    torch.manual_seed(0)
    return efficientnet_b0(weights=None, stochastic_depth_prob=0.2, dropout=0.2)


def tv_convnext_tiny() -> nn.Module:
    """torchvision convnext_tiny: StochasticDepth('row', linear 0 .. 0.1 over 18 blocks)."""
    from torchvision.models import convnext_tiny
    torch.manual_seed(0)
    return convnext_tiny(weights=None, stochastic_depth_prob=0.1)


def tv_swin_t() -> nn.Module:
    """torchvision swin_t: dropout 0.1, attention dropout 0.15 (functional), StochasticDepth 0 .. 0.2."""
    from torchvision.models import swin_t
    torch.manual_seed(0)
    return swin_t(weights=None, dropout=0.1, attention_dropout=0.15)  # stochastic_depth_prob: 0.2, fixed


def tv_mobilenet_v3_small() -> nn.Module:
    """torchvision mobilenet_v3_small: classifier Dropout(0.2, inplace=True)."""
    from torchvision.models import mobilenet_v3_small
    torch.manual_seed(0)
    return mobilenet_v3_small(weights=None, dropout=0.2)


def tv_vit_b_16() -> nn.Module:
    """torchvision vit_b_16 at 32 x 32 (4 patches + a class token): dropout 0.1, nn.MultiheadAttention 0.15."""
    from torchvision.models import vit_b_16
    torch.manual_seed(0)
    return vit_b_16(weights=None, image_size=32, dropout=0.1, attention_dropout=0.15)


tv_efficientnet_b0_input = tv_convnext_tiny_input = tv_swin_t_input = tv_mobilenet_v3_small_input = \
    tv_vit_b_16_input = _image


# ------------------------------------------------------------------------------ timm

def timm_resnet18() -> nn.Module:
    """timm resnet18: DropBlock2d (layer3 gamma_scale 0.25, layer4 1.0) at 0.1, DropPath 0 .. 0.1, head 0.1."""
    import timm
    torch.manual_seed(0)
    return timm.create_model("resnet18", pretrained=False, drop_rate=0.1, drop_block_rate=0.1, drop_path_rate=0.1)


def timm_resnet18_input() -> torch.Tensor:
    """64 x 64: layer3 maps are 4 x 4, layer4 2 x 2."""
    return _image(64)


def timm_convnext_atto() -> nn.Module:
    """timm convnext_atto: DropPath 0 .. 0.1, head dropout 0.1."""
    import timm
    torch.manual_seed(0)
    return timm.create_model("convnext_atto", pretrained=False, drop_rate=0.1, drop_path_rate=0.1)


def timm_efficientnet_b0() -> nn.Module:
    """timm efficientnet_b0: DropPath 0 .. 0.1, head dropout 0.2."""
    import timm
    torch.manual_seed(0)
    return timm.create_model("efficientnet_b0", pretrained=False, drop_rate=0.2, drop_path_rate=0.1)


timm_convnext_atto_input = timm_efficientnet_b0_input = _image


# ------------------------------------------------------------------------------ Hugging Face

def _hf(model_cls: Any, config: Any, attn: str) -> nn.Module:
    config._attn_implementation = attn
    torch.manual_seed(0)
    return model_cls(config)


def _bert(attn: str) -> nn.Module:
    from transformers import BertConfig, BertModel
    cfg = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=32, hidden_dropout_prob=0.1,
                     attention_probs_dropout_prob=0.2)
    return _hf(BertModel, cfg, attn)


def _gpt2(attn: str) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel
    cfg = GPT2Config(vocab_size=VOCAB, n_positions=32, n_embd=32, n_layer=2, n_head=2, resid_pdrop=0.1,
                     embd_pdrop=0.15, attn_pdrop=0.2, bos_token_id=0, eos_token_id=0)
    return _hf(GPT2LMHeadModel, cfg, attn)


def _vit(attn: str) -> nn.Module:
    from transformers import ViTConfig, ViTModel
    cfg = ViTConfig(image_size=32, patch_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.2)
    return _hf(ViTModel, cfg, attn)


def _t5(attn: str) -> nn.Module:
    from transformers import T5Config, T5Model
    cfg = T5Config(vocab_size=VOCAB, d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2, dropout_rate=0.1)
    return _hf(T5Model, cfg, attn)


def _llama(attn: str) -> nn.Module:
    from transformers import LlamaConfig, LlamaModel
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                      attention_dropout=0.1)
    return _hf(LlamaModel, cfg, attn)


def hf_bert_eager() -> nn.Module:
    return _bert("eager")


def hf_bert_sdpa() -> nn.Module:
    return _bert("sdpa")


def hf_gpt2_eager() -> nn.Module:
    return _gpt2("eager")


def hf_gpt2_sdpa() -> nn.Module:
    return _gpt2("sdpa")


def hf_vit_eager() -> nn.Module:
    return _vit("eager")


def hf_vit_sdpa() -> nn.Module:
    return _vit("sdpa")


def hf_t5_eager() -> nn.Module:
    return _t5("eager")


def hf_t5_sdpa() -> nn.Module:
    return _t5("sdpa")


def hf_llama_eager() -> nn.Module:
    return _llama("eager")


def hf_llama_sdpa() -> nn.Module:
    return _llama("sdpa")


def _ids() -> Dict[str, torch.Tensor]:
    return {"input_ids": _tokens()}


def _pixels() -> Dict[str, torch.Tensor]:
    return {"pixel_values": _image()}


def _seq2seq() -> Dict[str, torch.Tensor]:
    return {"input_ids": _tokens(), "decoder_input_ids": _tokens(n=TOKENS // 2)}


hf_bert_eager_input = hf_bert_sdpa_input = hf_gpt2_eager_input = hf_gpt2_sdpa_input = _ids
hf_llama_eager_input = hf_llama_sdpa_input = _ids
hf_vit_eager_input = hf_vit_sdpa_input = _pixels
hf_t5_eager_input = hf_t5_sdpa_input = _seq2seq


# ------------------------------------------------------------------------------ an RNN language model

class LstmLM(nn.Module):
    """Embedding -> Dropout(0.1) -> LSTM(2 layers, dropout 0.3 between them) -> Dropout(0.2) -> Linear."""

    def __init__(self, vocab: int = VOCAB, dim: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.drop_in = nn.Dropout(0.1)
        self.rnn = nn.LSTM(dim, dim, num_layers=2, dropout=0.3, batch_first=True)
        self.drop_out = nn.Dropout(0.2)
        self.head = nn.Linear(dim, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(self.drop_in(self.embed(ids)))
        return self.head(self.drop_out(h))


def lstm_lm() -> nn.Module:
    torch.manual_seed(0)
    return LstmLM()


lstm_lm_input = _tokens

CORPUS = ("tv_efficientnet_b0", "tv_convnext_tiny", "tv_swin_t", "tv_mobilenet_v3_small", "tv_vit_b_16",
          "timm_resnet18", "timm_convnext_atto", "timm_efficientnet_b0",
          "hf_bert_eager", "hf_bert_sdpa", "hf_gpt2_eager", "hf_gpt2_sdpa", "hf_vit_eager", "hf_vit_sdpa",
          "hf_t5_eager", "hf_t5_sdpa", "hf_llama_eager", "hf_llama_sdpa", "lstm_lm")
"""Every model ``make scan-corpus`` scans (timm's ViT-Tiny is ``make scan``: reports/scan/timm_vit_tiny.md)."""
