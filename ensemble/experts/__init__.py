"""Experts: one pretrained classifier per modality, fine-tuned by one shared loop."""

from .bagged import BaggedExpert
from .base import Expert, load_expert
from .image import ImageExpert
from .text import TextExpert
from .training import EpochRecord, TrainingConfig, TrainingResult, train_classifier

__all__ = [
    "BaggedExpert",
    "EpochRecord",
    "Expert",
    "ImageExpert",
    "TextExpert",
    "TrainingConfig",
    "TrainingResult",
    "load_expert",
    "train_classifier",
]
