"""Datasets that ``ensemble`` builds itself: the real emoji dataset and a synthetic one.

Example:
    >>> from ensemble.data.sources import make_synthetic
    >>> make_synthetic(n_train=4, n_validation=4, n_test=4)["train"].num_rows
    4
"""

from __future__ import annotations

from .emoji import EMOJI_META_FIELDS, EMOJI_PACKAGE, EMOJI_VERSION, load_emoji
from .synthetic import SYNTHETIC_COLOURS, SYNTHETIC_FILLER, SYNTHETIC_WORDS, make_synthetic

__all__ = [
    "EMOJI_META_FIELDS",
    "EMOJI_PACKAGE",
    "EMOJI_VERSION",
    "SYNTHETIC_COLOURS",
    "SYNTHETIC_FILLER",
    "SYNTHETIC_WORDS",
    "load_emoji",
    "make_synthetic",
]
