"""Small torch models for ``dropverify scan``: one correct, one per model-level dropout bug.

    dropverify scan examples/scan/scan_models.py:correct --shape 8,5,16
    dropverify scan examples/scan/scan_models.py:sdpa_dropout_in_eval --shape 8,5,16

Each bug is the pattern of a public fix:

* ``sdpa_dropout_in_eval`` — ``F.scaled_dot_product_attention(..., dropout_p=self.p)`` without
  ``if self.training`` (timm PR 1978, nanoGPT PR 240, torchtune 1791, wenet 2699): eval output is random.
* ``dropout_without_training_flag`` — ``F.dropout(x, p)``: its default is ``training=True``.
* ``zeroed_and_not_restored`` — attention that sets its own ``dropout_p = 0`` on an eval pass and never
  restores it (Megatron-LM PR 411): after one evaluation, training runs without attention dropout.
* ``rate_not_plumbed`` — ``attn_drop`` configured, never passed to the call.
* ``droppath_without_scale`` — a DropPath that keeps samples unscaled (no 1/keep).
* ``decreasing_depth_schedule`` / ``nonlinear_depth_schedule`` — stochastic-depth rates that fall
  with depth / rise quadratically instead of linearly.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

DIM, HEADS = 16, 2


class Attention(nn.Module):
    """Self-attention through F.scaled_dot_product_attention; ``mode`` picks how dropout_p is passed."""

    def __init__(self, attn_drop: float = 0.1, mode: str = "correct") -> None:
        super().__init__()
        self.qkv = nn.Linear(DIM, 3 * DIM)
        self.proj = nn.Linear(DIM, DIM)
        self.mode = mode
        if mode == "zeroed":
            self.dropout_p = attn_drop
        else:
            self.attn_drop = attn_drop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, HEADS, c // HEADS).permute(2, 0, 3, 1, 4)
        if self.mode == "correct":
            p = self.attn_drop if self.training else 0.0
        elif self.mode == "eval_dropout":      # the rate is passed whatever the mode
            p = self.attn_drop
        elif self.mode == "not_plumbed":       # the configured rate never reaches the call
            p = 0.0
        elif self.mode == "zeroed":            # zeroed on an eval pass, never restored
            if not self.training:
                self.dropout_p = 0.0
            p = self.dropout_p
        else:
            raise ValueError(self.mode)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        return self.proj(y.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """fc -> gelu -> F.dropout -> fc; ``flag=False`` omits ``training=`` (F.dropout's default: True)."""

    def __init__(self, drop: float = 0.1, flag: bool = True) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(DIM, 2 * DIM), nn.Linear(2 * DIM, DIM)
        self.drop, self.flag = drop, flag

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.fc1(x))
        h = F.dropout(h, self.drop, self.training) if self.flag else F.dropout(h, self.drop)
        return self.fc2(h)


class DropPath(nn.Module):
    """Per-sample stochastic depth of a residual branch, kept samples scaled by 1 / keep."""

    def __init__(self, drop_prob: float) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


class DropPathNoScale(DropPath):
    """The bug: kept samples are not divided by keep, so E[y] = keep * x in training."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1.0 - self.drop_prob)
        return x * mask


class Block(nn.Module):
    def __init__(self, drop_path: float, attn_mode: str, mlp_flag: bool, drop_path_cls: type) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(DIM), nn.LayerNorm(DIM)
        self.attn = Attention(0.1, attn_mode)
        self.mlp = Mlp(0.1, mlp_flag)
        self.drop_path = drop_path_cls(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def schedule(kind: str, rate: float, depth: int) -> list:
    """Drop-path rates per block: linear (torch.linspace(0, rate, depth), as timm), decreasing or quadratic."""
    if kind == "linear":
        return [float(r) for r in torch.linspace(0, rate, depth)]
    if kind == "decreasing":
        return [float(r) for r in torch.linspace(rate, 0, depth)]
    if kind == "quadratic":
        return [rate * (i / (depth - 1)) ** 2 for i in range(depth)]
    raise ValueError(kind)


class TinyNet(nn.Module):
    """A 4-block transformer on (N, tokens, 16) inputs: SDPA attention, F.dropout MLP, DropPath, a head."""

    def __init__(self, depth: int = 4, attn_mode: str = "correct", mlp_flag: bool = True,
                 drop_path_rate: float = 0.3, depth_schedule: str = "linear", drop_path_cls: type = DropPath) -> None:
        super().__init__()
        rates = schedule(depth_schedule, drop_path_rate, depth)
        self.blocks = nn.ModuleList(Block(r, attn_mode, mlp_flag, drop_path_cls) for r in rates)
        self.head_drop = nn.Dropout(0.1)
        self.head = nn.Linear(DIM, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(self.head_drop(x.mean(1)))


def correct() -> nn.Module:
    torch.manual_seed(0)
    return TinyNet()


def sdpa_dropout_in_eval() -> nn.Module:
    torch.manual_seed(0)
    return TinyNet(attn_mode="eval_dropout")


def dropout_without_training_flag() -> nn.Module:
    torch.manual_seed(0)
    return TinyNet(mlp_flag=False)


def zeroed_and_not_restored() -> nn.Module:
    torch.manual_seed(0)
    return TinyNet(attn_mode="zeroed")


def rate_not_plumbed() -> nn.Module:
    torch.manual_seed(0)
    return TinyNet(attn_mode="not_plumbed")


def droppath_without_scale() -> nn.Module:
    torch.manual_seed(0)
    return TinyNet(drop_path_cls=DropPathNoScale)


def decreasing_depth_schedule() -> nn.Module:
    torch.manual_seed(0)
    return TinyNet(depth_schedule="decreasing")


def nonlinear_depth_schedule() -> nn.Module:
    torch.manual_seed(0)
    return TinyNet(depth_schedule="quadratic")


def example_input() -> torch.Tensor:
    """(8, 5, 16): 8 sequences of 5 tokens."""
    return torch.randn(8, 5, DIM, generator=torch.Generator().manual_seed(0))


def timm_vit() -> nn.Module:
    """timm's ViT-Tiny/16 on 32 x 32 images (4 patches + a class token), every dropout rate set."""
    import timm
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, drop_rate=0.1,
                             attn_drop_rate=0.1, drop_path_rate=0.1)
