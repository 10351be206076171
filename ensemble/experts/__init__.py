"""Experts: one model per input column, as plugins in one registry.

Built-in kinds: ``timm`` (:class:`ImageExpert`), ``transformers`` (:class:`TextExpert`),
``transformers-audio`` (:class:`AudioExpert`), ``tfidf`` (:class:`TfidfExpert`), ``sklearn``
(:class:`TabularExpert`), ``precomputed`` (:class:`PrecomputedExpert`) and ``bagged``
(:class:`BaggedExpert`, the fold experts of cross-fitting used as one).

Example:
    >>> from ensemble.experts import list_experts
    >>> list_experts()
    ['bagged', 'precomputed', 'sklearn', 'tfidf', 'timm', 'transformers', 'transformers-audio']
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .base import Expert, LogitOutputs, load_expert
from .registry import EXPERTS, create_expert, get_expert_class, list_experts, register_expert

if TYPE_CHECKING:
    from .bagged import BaggedExpert
    from .hf_audio import AudioExpert
    from .hf_text import TextExpert
    from .precomputed import PrecomputedExpert
    from .sklearn_tabular import TabularExpert
    from .sklearn_text import TfidfExpert
    from .timm_image import ImageExpert
    from .torch_expert import TorchExpert
    from .training import EpochRecord, TrainingConfig, TrainingResult, train_classifier

#: Names imported on first access (the torch kinds cost seconds to import, and the ONNX
#: runtime must load the tabular, tfidf and precomputed kinds without torch).
_LAZY = {
    "AudioExpert": "hf_audio",
    "BaggedExpert": "bagged",
    "TextExpert": "hf_text",
    "PrecomputedExpert": "precomputed",
    "TabularExpert": "sklearn_tabular",
    "TfidfExpert": "sklearn_text",
    "ImageExpert": "timm_image",
    "TorchExpert": "torch_expert",
    "EpochRecord": "training",
    "TrainingConfig": "training",
    "TrainingResult": "training",
    "train_classifier": "training",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "EXPERTS",
    "AudioExpert",
    "BaggedExpert",
    "EpochRecord",
    "Expert",
    "ImageExpert",
    "LogitOutputs",
    "PrecomputedExpert",
    "TabularExpert",
    "TextExpert",
    "TfidfExpert",
    "TorchExpert",
    "TrainingConfig",
    "TrainingResult",
    "create_expert",
    "get_expert_class",
    "list_experts",
    "load_expert",
    "register_expert",
    "train_classifier",
]
