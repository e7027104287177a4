"""The numpy mutant corpus, gathered from the family modules.

=====================  =======================================================================
module                 family
=====================  =======================================================================
``_elementwise``       dropout, Gaussian, alpha, feature-alpha dropout
``_structured``        spatial (channel-wise) dropout, stochastic depth, DropPath
``_dropblock``         DropBlock 2-D / 3-D (plus zero-slip CONTROLS of its own sampler)
``_sequence``          attention, token / word-type embedding, variational, zoneout, DropConnect
``_calllevel``         call-level faults of dropout: mask pools, stale masks, batch items reusing
                       masks, intermittent rates, position-skewed rates, value-dependent output
``_longhorizon``       long-horizon faults: a bank of 256 masks, a mask frozen after 1000 calls,
                       draws shared 96 elements apart, a shifted counter, an over-dispersed rate
``_inputs``            drop rates (Gaussian: mean multipliers) that depend on the input value
``_marginals``         uneven marginal rates: a per-sample rate ramp, a never-dropped flat tail
``_contract``          contract edges: p out of range accepted, dtype widened, empty batch refused,
                       unreproducible seeds, seeded streams one call apart, a uniform depth schedule
``_patterns``          call patterns: masks replayed after every eval pass, a class-level mask cache
``_layouts``           a backward reading the saved mask in another memory order than forward
``_drift``             stream-long faults: two generators interleaved (reuse at lag 2), a warm-up rate,
                       a creeping rate
=====================  =======================================================================
"""
from __future__ import annotations

from typing import Dict, Tuple

from . import _calllevel, _contract, _dropblock, _elementwise, _inputs, _longhorizon, _sequence, _structured
from . import _patterns
from . import _layouts
from . import _drift
from . import _negative
from . import _marginals
from ._core import Mutant

MUTANTS: Tuple[Mutant, ...] = (_elementwise.MUTANTS + _structured.MUTANTS + _dropblock.MUTANTS
                               + _sequence.MUTANTS + _calllevel.MUTANTS + _longhorizon.MUTANTS + _inputs.MUTANTS
                               + _contract.MUTANTS + _patterns.MUTANTS
                               + _layouts.MUTANTS
                               + _drift.MUTANTS
                               + _negative.MUTANTS
                               + _marginals.MUTANTS)
"""Every numpy mutant (the harness must kill each one)."""

CONTROLS: Tuple[Mutant, ...] = _dropblock.CONTROLS
"""Zero-slip runs through the mutants' own machinery (the harness must pass them)."""

FAMILIES: Dict[str, Tuple[str, ...]] = {
    "element-wise (dropout, gaussian, alpha, feature-alpha)":
        ("dropout", "gaussian_dropout", "alpha_dropout", "feature_alpha_dropout"),
    "spatial": ("spatial_dropout_1d", "spatial_dropout_2d", "spatial_dropout_3d"),
    "DropBlock": ("dropblock_2d", "dropblock_3d"),
    "depth (stochastic depth, DropPath)": ("stochastic_depth", "drop_path"),
    "sequence (attention, embedding, word-type, variational, zoneout)":
        ("attention_dropout", "embedding_dropout", "word_embedding_dropout", "variational_dropout", "zoneout"),
    "DropConnect": ("dropconnect",),
}
"""Family name -> canonical variants, for the count per family in reports."""


def family_of(variant: str) -> str:
    for family, variants in FAMILIES.items():
        if variant in variants:
            return family
    return "other"
