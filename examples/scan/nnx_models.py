"""Small Flax NNX models for ``dropverify scan``: a correct transformer block, and one module per NNX
dropout bug.

    dropverify scan examples/scan/nnx_models.py:transformer_block --shape 4,8,16
    dropverify scan examples/scan/nnx_models.py:rng_not_advanced --shape 8,16

* ``transformer_block`` — pre-norm self-attention + MLP, nnx.Dropout on the attention output, in the MLP
  and on each residual branch (its own dropout RngStream), correct.
* ``flag_ignored`` — a Dropout subclass that always calls ``nnx.Dropout`` with ``deterministic=False``:
  ``model.eval()`` sets it deterministic, and it drops anyway.
* ``rate_not_plumbed`` — a block that keeps ``dropout_rate=0.3`` and builds ``nnx.Dropout(0.1)``.
* ``rng_not_advanced`` — a block that calls its Dropout with a fresh ``nnx.Rngs(dropout=0)`` on every
  call: every call draws the same mask.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

DIM = 16


class TransformerBlock(nnx.Module):
    """x + drop(attn(norm(x))), then x + drop(mlp(norm(x))), dropout_rate everywhere."""

    def __init__(self, dim: int = DIM, heads: int = 2, dropout_rate: float = 0.1, *, rngs: nnx.Rngs) -> None:
        self.dropout_rate = dropout_rate
        self.norm1 = nnx.LayerNorm(dim, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(num_heads=heads, in_features=dim, qkv_features=dim, decode=False,
                                           dropout_rate=0.0, rngs=rngs)
        self.attn_drop = nnx.Dropout(dropout_rate, rngs=rngs)
        self.norm2 = nnx.LayerNorm(dim, rngs=rngs)
        self.fc1 = nnx.Linear(dim, 4 * dim, rngs=rngs)
        self.mlp_drop = nnx.Dropout(dropout_rate, rngs=rngs)
        self.fc2 = nnx.Linear(4 * dim, dim, rngs=rngs)
        self.resid_drop = nnx.Dropout(dropout_rate, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.attn_drop(self.attn(self.norm1(x)))
        h = self.mlp_drop(nnx.gelu(self.fc1(self.norm2(x))))
        return x + self.resid_drop(self.fc2(h))


def transformer_block() -> TransformerBlock:
    return TransformerBlock(rngs=nnx.Rngs(params=0, dropout=1))


class MLP(nnx.Module):
    """Linear -> Dropout -> Linear, the Dropout given as ``drop``."""

    def __init__(self, drop: nnx.Module, *, rngs: nnx.Rngs, dropout_rate: float = 0.3) -> None:
        self.dropout_rate = dropout_rate
        self.fc1 = nnx.Linear(DIM, 32, rngs=rngs)
        self.drop = drop
        self.fc2 = nnx.Linear(32, 4, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(self.drop(nnx.relu(self.fc1(x))))


def correct_mlp() -> MLP:
    rngs = nnx.Rngs(params=0, dropout=1)
    return MLP(nnx.Dropout(0.3, rngs=rngs), rngs=rngs)


class AlwaysDrops(nnx.Dropout):
    """Ignores the mode: always deterministic=False."""

    def __call__(self, inputs, *, deterministic=None, rngs=None):
        return super().__call__(inputs, deterministic=False, rngs=rngs)


def flag_ignored() -> MLP:
    rngs = nnx.Rngs(params=0, dropout=1)
    return MLP(AlwaysDrops(0.3, rngs=rngs), rngs=rngs)


def rate_not_plumbed() -> MLP:
    rngs = nnx.Rngs(params=0, dropout=1)
    return MLP(nnx.Dropout(0.1, rngs=rngs), rngs=rngs, dropout_rate=0.3)


class FreshKey(MLP):
    """Calls its Dropout with a new nnx.Rngs(dropout=0) each time: the same mask on every call."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(self.drop(nnx.relu(self.fc1(x)), rngs=nnx.Rngs(dropout=0)))


def rng_not_advanced() -> FreshKey:
    rngs = nnx.Rngs(params=0)
    return FreshKey(nnx.Dropout(0.3), rngs=rngs)


def no_dropout() -> nnx.Module:
    return nnx.Linear(DIM, 4, rngs=nnx.Rngs(0))


def example_input() -> jax.Array:
    return jax.random.normal(jax.random.key(0), (8, DIM))


def block_input() -> jax.Array:
    return jax.random.normal(jax.random.key(0), (4, 8, DIM))
