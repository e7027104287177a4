"""Small Keras 3 models for ``dropverify scan`` (any backend: KERAS_BACKEND torch, jax or tensorflow):
correct ones of each construction, one per Keras dropout bug, and a keras.applications MobileNet.

    dropverify scan examples/scan/keras_models.py:sequential --shape 8,16
    dropverify scan examples/scan/keras_models.py:flag_ignored --shape 8,16

* ``sequential`` / ``functional`` / ``subclassed`` — correct: Dropout, SpatialDropout1D,
  MultiHeadAttention(dropout), LSTM(dropout), GaussianDropout, AlphaDropout, a nested block.
* ``flag_ignored`` — a Dropout subclass whose ``call`` drops whatever ``training`` it is passed.
* ``rate_not_plumbed`` — a block that keeps ``rate=0.3`` and builds ``Dropout(0.1)``.
* ``training_hard_coded`` — a block that calls its Dropout with ``training=True``.
* ``no_dropout`` — Dense layers only (a usage error: nothing to scan).
* ``mobilenet`` — keras.applications.MobileNet(alpha=0.25, weights=None, dropout=0.2) at 32 x 32.
"""
from __future__ import annotations

import keras
import numpy as np

L = keras.layers
DIM = 16


def sequential() -> keras.Model:
    return keras.Sequential([keras.Input((DIM,)), L.Dense(32, activation="relu"), L.Dropout(0.3, name="drop"),
                             L.Dense(8), L.GaussianDropout(0.2, name="noise"), L.Dense(4)], name="seq")


def functional() -> keras.Model:
    """(N, 6, 16) -> attention (dropout 0.2) -> SpatialDropout1D -> LSTM(dropout 0.25) -> AlphaDropout."""
    x = keras.Input((6, DIM))
    a = L.MultiHeadAttention(num_heads=2, key_dim=4, dropout=0.2, name="attn")(x, x)
    h = L.SpatialDropout1D(0.2, name="sdrop")(L.Add()([x, a]))
    h = L.LSTM(8, dropout=0.25, name="lstm")(h)
    return keras.Model(x, L.Dense(4)(L.AlphaDropout(0.1, name="adrop")(h)), name="func")


class Block(keras.layers.Layer):
    """Dense -> Dropout(rate); ``mode`` picks the bug."""

    def __init__(self, rate: float = 0.3, mode: str = "correct", **kw) -> None:
        super().__init__(**kw)
        self.rate, self.mode = rate, mode
        self.dense = L.Dense(DIM, activation="relu")
        self.drop = L.Dropout(0.1 if mode == "rate_not_plumbed" else rate, name="drop")

    def call(self, x, training=None):
        return self.drop(self.dense(x), training=True if self.mode == "hard_coded" else training)


class Net(keras.Model):
    """Two blocks and a nested Sequential head with its own Dropout."""

    def __init__(self, mode: str = "correct", **kw) -> None:
        super().__init__(**kw)
        self.block1 = Block(0.3, mode, name="block1")
        self.block2 = Block(0.2, name="block2")
        self.head = keras.Sequential([L.Dense(8), L.Dropout(0.1, name="drop"), L.Dense(4)], name="head")

    def call(self, x, training=None):
        return self.head(self.block2(self.block1(x, training=training), training=training), training=training)


def subclassed() -> keras.Model:
    return Net(name="net")


class AlwaysDrops(L.Dropout):
    """Ignores ``training``: drops on every call."""

    def call(self, inputs, training=False):
        return keras.random.dropout(inputs, self.rate, seed=self.seed_generator)


def flag_ignored() -> keras.Model:
    return keras.Sequential([keras.Input((DIM,)), L.Dense(32), AlwaysDrops(0.3, name="drop"), L.Dense(4)])


def rate_not_plumbed() -> keras.Model:
    return Net("rate_not_plumbed", name="net")


def training_hard_coded() -> keras.Model:
    return Net("hard_coded", name="net")


def no_dropout() -> keras.Model:
    return keras.Sequential([keras.Input((DIM,)), L.Dense(8), L.Dense(4)])


def mobilenet() -> keras.Model:
    """keras.applications.MobileNet without weights: alpha 0.25, dropout 0.2 before the classifier."""
    return keras.applications.MobileNet(input_shape=(32, 32, 3), alpha=0.25, weights=None, dropout=0.2, classes=10)


def example_input() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((8, DIM)).astype("float32")


def sequence_input() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((8, 6, DIM)).astype("float32")
