"""Combiners: fuse per-expert logits into one distribution (see ``docs/combiners.md``).

Every combiner is a scikit-learn classifier registered by name:

    >>> from ensemble.combiners import create_combiner, list_combiners
    >>> "voting" in list_combiners()
    True
"""

from __future__ import annotations

from .auto import AutoCombiner
from .base import Combiner, FusionData
from .calibration import TemperatureScaler
from .feature_stacking import FeatureStacking
from .gating import GatingCombiner
from .registry import (
    COMBINERS,
    create_combiner,
    get_combiner_class,
    list_combiners,
    load_combiner,
    register_combiner,
)
from .selection import EnsembleSelection
from .stacking import StackingCombiner
from .voting import VotingCombiner

__all__ = [
    "COMBINERS",
    "AutoCombiner",
    "Combiner",
    "EnsembleSelection",
    "FeatureStacking",
    "FusionData",
    "GatingCombiner",
    "StackingCombiner",
    "TemperatureScaler",
    "VotingCombiner",
    "create_combiner",
    "get_combiner_class",
    "list_combiners",
    "load_combiner",
    "register_combiner",
]
