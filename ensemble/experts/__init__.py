"""Experts: one model per input column, as plugins in one registry.

Built-in kinds: ``timm`` (:class:`ImageExpert`), ``transformers`` (:class:`TextExpert`),
``sklearn`` (:class:`TabularExpert`), ``precomputed`` (:class:`PrecomputedExpert`) and
``bagged`` (:class:`BaggedExpert`, the fold experts of cross-fitting used as one).

Example:
    >>> from ensemble.experts import list_experts
    >>> list_experts()
    ['bagged', 'precomputed', 'sklearn', 'timm', 'transformers']
"""

from .bagged import BaggedExpert
from .base import Expert, LogitOutputs, load_expert
from .hf_text import TextExpert
from .precomputed import PrecomputedExpert
from .registry import EXPERTS, create_expert, get_expert_class, list_experts, register_expert
from .sklearn_tabular import TabularExpert
from .timm_image import ImageExpert
from .torch_expert import TorchExpert
from .training import EpochRecord, TrainingConfig, TrainingResult, train_classifier

__all__ = [
    "EXPERTS",
    "BaggedExpert",
    "EpochRecord",
    "Expert",
    "ImageExpert",
    "LogitOutputs",
    "PrecomputedExpert",
    "TabularExpert",
    "TextExpert",
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
