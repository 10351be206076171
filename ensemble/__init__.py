"""ensemble: late-fusion ensembles over pretrained models, one expert per named input.

The public API is re-exported here and imported lazily, so ``import ensemble`` stays fast
and only the parts you use load torch, timm or transformers.

Example:
    >>> import ensemble
    >>> ensemble.LogitSet.__name__
    'LogitSet'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import exceptions
from .exceptions import EnsembleError

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # data
    "class_names": "data",
    "load_emoji": "data",
    "load_multimodal": "data",
    "make_synthetic": "data",
    # labels, dataset identity
    "LabelSpace": "labels",
    "dataset_fingerprint": "fingerprints",
    # experts
    "AudioExpert": "experts",
    "Expert": "experts",
    "PrecomputedExpert": "experts",
    "TabularExpert": "experts",
    "TfidfExpert": "experts",
    "create_expert": "experts",
    "list_experts": "experts",
    "register_expert": "experts",
    # combiners
    "create_combiner": "combiners",
    "list_combiners": "combiners",
    "load_combiner": "combiners",
    "register_combiner": "combiners",
    "ImageExpert": "experts",
    "TextExpert": "experts",
    "TrainingConfig": "experts",
    "load_expert": "experts",
    # checkpoints
    "OfflineMirror": "checkpoints",
    "list_mirrors": "checkpoints",
    "register_mirror": "checkpoints",
    "resolve_image_checkpoint": "checkpoints",
    "resolve_text_checkpoint": "checkpoints",
    # predictor
    "FusionPredictor": "predictor",
    # recipes and runs
    "Pipeline": "pipeline",
    "Recipe": "recipe",
    "load_recipe": "recipe",
    # logits
    "LogitCache": "logits",
    "LogitSet": "logits",
    "Provenance": "logits",
}

__all__ = [
    "AudioExpert",
    "EnsembleError",
    "Expert",
    "FusionPredictor",
    "ImageExpert",
    "LabelSpace",
    "LogitCache",
    "LogitSet",
    "OfflineMirror",
    "Pipeline",
    "PrecomputedExpert",
    "Provenance",
    "Recipe",
    "TabularExpert",
    "TextExpert",
    "TfidfExpert",
    "TrainingConfig",
    "__version__",
    "class_names",
    "create_combiner",
    "create_expert",
    "dataset_fingerprint",
    "exceptions",
    "list_combiners",
    "list_experts",
    "list_mirrors",
    "load_combiner",
    "load_emoji",
    "load_expert",
    "load_multimodal",
    "load_recipe",
    "make_synthetic",
    "register_combiner",
    "register_expert",
    "register_mirror",
    "resolve_image_checkpoint",
    "resolve_text_checkpoint",
]

if TYPE_CHECKING:
    from .checkpoints import (
        OfflineMirror,
        list_mirrors,
        register_mirror,
        resolve_image_checkpoint,
        resolve_text_checkpoint,
    )
    from .combiners import create_combiner, list_combiners, load_combiner, register_combiner
    from .data import class_names, load_emoji, load_multimodal, make_synthetic
    from .experts import (
        AudioExpert,
        Expert,
        ImageExpert,
        PrecomputedExpert,
        TabularExpert,
        TextExpert,
        TfidfExpert,
        TrainingConfig,
        create_expert,
        list_experts,
        load_expert,
        register_expert,
    )
    from .fingerprints import dataset_fingerprint
    from .labels import LabelSpace
    from .logits import LogitCache, LogitSet, Provenance
    from .pipeline import Pipeline
    from .predictor import FusionPredictor
    from .recipe import Recipe, load_recipe


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ensemble' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
