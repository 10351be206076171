"""Tiny generated multimodal datasets for the logit-store and expert tests.

Each example's class is a colour: its 32x32 image is (mostly) that colour and its text
contains the colour word plus a few filler words. Every word is in ``conftest.WORDS`` (the
tiny tokenizer's vocabulary; a test checks it). It is not imported from there because
``import conftest`` can resolve to another directory's conftest.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
from datasets import ClassLabel, Dataset, Features, Image, Value
from PIL import Image as PILImage

CLASSES = ["red", "green", "blue"]
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}
FILLER = ["circle", "square", "big", "small", "happy", "sad", "cat", "dog", "apple", "sun"]


def colour_image(name: str, rng: np.random.Generator | None = None) -> PILImage.Image:
    """A 32x32 RGB image of colour ``name`` with a little noise."""
    rng = rng or np.random.default_rng(0)
    base = np.array(COLOURS[name], dtype=np.int16)
    noise = rng.integers(-20, 21, size=(32, 32, 3))
    return PILImage.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def colour_text(name: str, rng: np.random.Generator | None = None) -> str:
    """A short text that mentions colour ``name`` among filler words."""
    rng = rng or np.random.default_rng(0)
    words = [str(w) for w in rng.choice(FILLER, size=3)]
    words.insert(int(rng.integers(0, 4)), name)
    return " ".join(words)


def make_dataset(
    n: int = 12,
    *,
    seed: int = 0,
    label_names: Sequence[str] = CLASSES,
    prefix: str = "ex",
    missing_image: Collection[int] = (),
    missing_text: Collection[int] = (),
) -> Dataset:
    """``n`` examples cycling through the classes; ``label_names`` is the ClassLabel order."""
    rng = np.random.default_rng(seed)
    labels = [CLASSES[i % len(CLASSES)] for i in range(n)]
    features = Features({
        "id": Value("string"),
        "image": Image(),
        "text": Value("string"),
        "label": ClassLabel(names=list(label_names)),
    })
    return Dataset.from_dict(
        {
            "id": [f"{prefix}-{i}" for i in range(n)],
            "image": [None if i in missing_image else colour_image(name, rng)
                      for i, name in enumerate(labels)],
            "text": [None if i in missing_text else colour_text(name, rng)
                     for i, name in enumerate(labels)],
            "label": [list(label_names).index(name) for name in labels],
        },
        features=features,
    )




#: The tone of each class in the audio datasets (a few octaves apart: learnable in seconds).
TONES = {"red": 300.0, "green": 1200.0, "blue": 4000.0}


def make_audio_dataset(
    n: int = 12,
    *,
    seed: int = 0,
    prefix: str = "clip",
    missing_audio: Collection[int] = (),
    sampling_rate: int = 16000,
) -> Dataset:
    """``n`` examples cycling through the classes: ``clip`` a 0.2-0.4 s tone of the class
    (``{"array", "sampling_rate"}``), ``text`` a text naming the class colour."""
    from ensemble.testing import tone_clip

    rng = np.random.default_rng(seed)
    labels = [CLASSES[i % len(CLASSES)] for i in range(n)]
    clips = [None if i in missing_audio else
             tone_clip(TONES[name], seconds=float(rng.uniform(0.2, 0.4)),
                       sampling_rate=sampling_rate, seed=seed * 10_000 + i)
             for i, name in enumerate(labels)]
    return Dataset.from_dict({
        "id": [f"{prefix}-{seed}-{i}" for i in range(n)],
        "clip": clips,
        "text": [colour_text(name, rng) for name in labels],
        "label": labels,
    }).cast_column("label", ClassLabel(names=list(CLASSES)))
