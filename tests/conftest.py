"""Shared fixtures: tiny models built from config and tiny generated data, all offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ensemble import testing

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

WORDS = [
    "red",
    "green",
    "blue",
    "yellow",
    "circle",
    "square",
    "triangle",
    "star",
    "big",
    "small",
    "happy",
    "sad",
    "face",
    "cat",
    "dog",
    "apple",
    "banana",
    "car",
    "train",
    "flag",
    "heart",
    "hand",
    "sun",
    "moon",
]


def build_tiny_text_checkpoint(directory: Path) -> Path:
    """A 2-layer, 32-wide BERT with a word-level tokenizer over WORDS, saved like a Hub folder."""
    return testing.build_tiny_text_checkpoint(directory, WORDS)


@pytest.fixture(scope="session")
def tiny_text_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_text_checkpoint(tmp_path_factory.mktemp("tiny-bert"))
