"""``make_synthetic``: a tiny generated image+text dataset in which fusion is required.

Class ``c`` is the pair (colour ``c // 2``, word group ``c % 2``): the image shows the colour,
the text the word group, so neither input alone gives the label. See :func:`make_synthetic`.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from ...exceptions import ConfigError

__all__ = ["SYNTHETIC_COLOURS", "SYNTHETIC_FILLER", "SYNTHETIC_WORDS", "make_synthetic"]

SYNTHETIC_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "blue": (40, 80, 220),
    "green": (40, 170, 60),
    "yellow": (235, 205, 30),
    "magenta": (200, 50, 200),
    "cyan": (40, 200, 210),
    "orange": (245, 130, 20),
    "black": (25, 25, 25),
}
#: Text factor: the word group whose words appear in the text.
SYNTHETIC_WORDS: dict[str, tuple[str, ...]] = {
    "alpha": ("anchor", "apple", "arrow", "atlas", "autumn", "amber"),
    "beta": ("bridge", "bottle", "breeze", "button", "basket", "bishop"),
}
#: Filler words mixed into every synthetic text (no label information).
SYNTHETIC_FILLER: tuple[str, ...] = (
    "a", "the", "photo", "of", "some", "small", "picture", "with", "thing", "near", "this",
)
_SPLIT_STREAMS = {"train": 0, "validation": 1, "test": 2}


def make_synthetic(
    n_train: int = 64,
    n_validation: int = 32,
    n_test: int = 32,
    *,
    n_classes: int = 4,
    image_size: int = 32,
    noise: float = 0.1,
    seed: int = 0,
) -> Any:
    """Generate a tiny image+text dataset in which neither modality alone gives the label.

    This data is GENERATED, not real. Class ``c`` is the pair (colour ``c // 2``, word group
    ``c % 2``), named e.g. ``"red-alpha"``. The image is a square or disc of the class colour
    on a noisy grey background (it says nothing about the word group); the text mixes two
    words of the class word group with filler words (it says nothing about the colour). So
    the image alone is ambiguous between 2 classes and the text alone between
    ``n_classes // 2``; together they determine the class. With probability ``noise`` each
    modality independently shows a wrong factor value, so the best fused accuracy is about
    ``(1 - noise) ** 2`` plus chance. Classes are balanced in every split; each split has its
    own random stream, so its rows do not depend on the other splits' sizes. Deterministic
    for a given ``seed``. Columns: ``id``, ``image``, ``text``, ``label`` and the factors
    actually shown, ``image_factor`` and ``text_factor`` (for analysis, not model inputs).

    Example:
        >>> ds = make_synthetic(n_train=8, n_validation=4, n_test=4, seed=1)
        >>> ds["train"].column_names[:4], ds["train"][0]["image"].size
        (['id', 'image', 'text', 'label'], (32, 32))
    """
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Value

    for name, value in (("n_train", n_train), ("n_validation", n_validation), ("n_test", n_test)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}.")
    max_classes = 2 * len(SYNTHETIC_COLOURS)
    if (
        isinstance(n_classes, bool)
        or not isinstance(n_classes, int)
        or n_classes < 4
        or n_classes > max_classes
        or n_classes % 2
    ):
        raise ConfigError(
            f"n_classes must be an even integer between 4 and {max_classes}, got {n_classes!r}."
        )
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise ConfigError(f"image_size must be an integer >= 8, got {image_size!r}.")
    if not isinstance(noise, (int, float)) or not 0.0 <= float(noise) < 0.5:
        raise ConfigError(f"noise must be a probability in [0, 0.5), got {noise!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}.")

    colours = list(SYNTHETIC_COLOURS)[: n_classes // 2]
    groups = list(SYNTHETIC_WORDS)
    names = [f"{colour}-{group}" for colour in colours for group in groups]
    features = Features({
        "id": Value("string"),
        "image": Image(),
        "text": Value("string"),
        "label": ClassLabel(names=names),
        "image_factor": Value("int64"),
        "text_factor": Value("int64"),
    })
    splits = {}
    for split, n in (("train", n_train), ("validation", n_validation), ("test", n_test)):
        rng = np.random.default_rng([seed, _SPLIT_STREAMS[split]])
        labels = rng.permutation(np.arange(n) % n_classes)
        columns: dict[str, list[Any]] = {k: [] for k in features}
        for i, label in enumerate(labels.tolist()):
            image_factor = _maybe_flip(rng, label // 2, len(colours), noise)
            text_factor = _maybe_flip(rng, label % 2, len(groups), noise)
            columns["id"].append(f"synthetic-{split}-{i:05d}")
            columns["image"].append(
                _synthetic_image(rng, SYNTHETIC_COLOURS[colours[image_factor]], image_size)
            )
            columns["text"].append(_synthetic_text(rng, SYNTHETIC_WORDS[groups[text_factor]]))
            columns["label"].append(label)
            columns["image_factor"].append(image_factor)
            columns["text_factor"].append(text_factor)
        splits[split] = Dataset.from_dict(columns, features=features)
    return DatasetDict(splits)


def _maybe_flip(rng: np.random.Generator, value: int, n_values: int, noise: float) -> int:
    if rng.random() < noise:
        return int((value + rng.integers(1, n_values)) % n_values)
    return int(value)


def _synthetic_image(
    rng: np.random.Generator, colour: tuple[int, int, int], size: int
) -> dict[str, Any]:
    from PIL import Image

    grey = rng.uniform(95, 165)
    pixels = np.full((size, size, 3), grey) + rng.normal(0, 12, (size, size, 3))
    radius = rng.uniform(0.18, 0.32) * size
    cy, cx = rng.uniform(radius, size - radius, 2)
    yy, xx = np.mgrid[0:size, 0:size]
    if rng.random() < 0.5:
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    else:
        mask = (np.abs(yy - cy) <= radius) & (np.abs(xx - cx) <= radius)
    fill = np.asarray(colour, dtype=float) + rng.normal(0, 15, 3)
    pixels[mask] = fill + rng.normal(0, 10, (int(mask.sum()), 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def _synthetic_text(rng: np.random.Generator, words: tuple[str, ...]) -> str:
    n_words = int(rng.integers(4, 8))
    chosen = [str(w) for w in rng.choice(words, size=2, replace=False)]
    chosen += [str(w) for w in rng.choice(SYNTHETIC_FILLER, size=n_words - 2)]
    return " ".join(chosen[i] for i in rng.permutation(n_words))


