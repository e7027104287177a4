"""The names of the built-in third-party targets and the variant each implements, known
without importing any framework: the CLI and :func:`dropverify.verify` answer a misspelt
target, variant or parameter in about a second, before torch / Keras / JAX / TensorFlow load.

Each adapter's ``TARGETS`` stays the source of the specs; ``tests/test_usage.py`` (torch,
torchvision, timm, Keras) and ``tests/targets/test_catalogue_frameworks.py`` (JAX, TensorFlow)
fail when this table and an adapter's ``TARGETS`` disagree on a name or a variant.
"""
from __future__ import annotations

from typing import Dict, Tuple

_KERAS = (("Dropout", "dropout"), ("Dropout[unseeded]", "dropout"), ("Dropout[noise_shape]", "variational_dropout"),
          ("SpatialDropout1D", "spatial_dropout_1d"), ("SpatialDropout2D", "spatial_dropout_2d"),
          ("SpatialDropout3D", "spatial_dropout_3d"), ("GaussianDropout", "gaussian_dropout"),
          ("AlphaDropout", "alpha_dropout"))

CATALOGUE: Dict[str, Tuple[Tuple[str, str], ...]] = {
    "torch": (("Dropout", "dropout"), ("F.dropout", "dropout"), ("Dropout1d", "spatial_dropout_1d"),
              ("Dropout2d", "spatial_dropout_2d"), ("Dropout3d", "spatial_dropout_3d"),
              ("Dropout1d[unbatched]", "spatial_dropout_1d"), ("Dropout2d[unbatched]", "spatial_dropout_2d"),
              ("Dropout3d[unbatched]", "spatial_dropout_3d"), ("AlphaDropout", "alpha_dropout"),
              ("FeatureAlphaDropout", "feature_alpha_dropout"), ("MultiheadAttention", "attention_dropout"),
              ("scaled_dot_product_attention", "attention_dropout")),
    "torchvision": (("DropBlock2d", "dropblock_2d"), ("DropBlock3d", "dropblock_3d"),
                    ("StochasticDepth[row]", "stochastic_depth"), ("StochasticDepth[batch]", "stochastic_depth")),
    "timm": (("DropBlock2d", "dropblock_2d"), ("DropBlock2d[block_size=4]", "dropblock_2d"),
             ("DropBlock2d[block_size=7,W=5]", "dropblock_2d"), ("DropBlock2d[seed_region=valid]", "dropblock_2d"),
             ("DropPath", "drop_path"), ("DropPath[scale_by_keep=False]", "drop_path")),
    "keras": _KERAS,
    "keras[jax]": _KERAS + (("Dropout[jit]", "dropout"),),
    "keras[tensorflow]": _KERAS + (("Dropout[function]", "dropout"),),
    "tf": (("nn.dropout", "dropout"), ("nn.dropout[function]", "dropout"),
           ("nn.dropout[noise_shape]", "variational_dropout"), ("nn.experimental.stateless_dropout", "dropout"),
           ("nn.experimental.stateless_dropout[function]", "dropout"),
           ("nn.experimental.stateless_dropout[generator]", "dropout")),
    "flax": (("nnx.Dropout", "dropout"), ("nnx.Dropout[jit]", "dropout"),
             ("nnx.Dropout[broadcast_dims]", "variational_dropout"),
             ("nnx.Dropout[broadcast_dims][jit]", "variational_dropout"), ("linen.Dropout", "dropout"),
             ("linen.Dropout[jit]", "dropout"), ("linen.Dropout[broadcast_dims]", "variational_dropout"),
             ("linen.Dropout[broadcast_dims][jit]", "variational_dropout")),
    "equinox": (("Dropout", "dropout"), ("Dropout[jit]", "dropout")),
    "jax": (("random.bernoulli", "dropout"), ("random.bernoulli[jit]", "dropout")),
}
"""framework -> ((layer, variant), ...), in each adapter's ``TARGETS`` order."""


def catalogue_names(framework: str) -> Tuple[str, ...]:
    """The built-in target names of a third-party ``framework`` (no import; unknown: ())."""
    return tuple(f"{framework}:{layer}" for layer, _ in CATALOGUE.get(framework, ()))


def catalogue_variant(name: str) -> str:
    """The variant the built-in third-party target ``name`` implements ("" if not listed)."""
    framework, _, layer = name.partition(":")
    return dict(CATALOGUE.get(framework, ())).get(layer, "")


__all__ = ["CATALOGUE", "catalogue_names", "catalogue_variant"]
