"""make_synthetic: shape, determinism, the fusion-requiring factors, argument checks."""

from __future__ import annotations

import collections
from typing import Any

import numpy as np
import pytest
from datasets import ClassLabel, DatasetDict, Image
from PIL import Image as PILImage

from ensemble.data import SYNTHETIC_COLOURS, SYNTHETIC_WORDS, class_names, make_synthetic
from ensemble.exceptions import ConfigError


@pytest.fixture(scope="module")
def synthetic() -> DatasetDict:
    return make_synthetic()


def test_synthetic_shape_and_columns(synthetic: DatasetDict) -> None:
    assert list(synthetic) == ["train", "validation", "test"]
    assert {s: synthetic[s].num_rows for s in synthetic} == {
        "train": 64, "validation": 32, "test": 32
    }
    for split in synthetic.values():
        assert split.column_names[:4] == ["id", "image", "text", "label"]
        assert isinstance(split.features["image"], Image)
        assert isinstance(split.features["label"], ClassLabel)
        image = split[0]["image"]
        assert isinstance(image, PILImage.Image)
        assert image.mode == "RGB" and image.size == (32, 32)
        assert isinstance(split[0]["text"], str) and split[0]["text"]
        # balanced classes
        assert set(collections.Counter(split["label"]).values()) == {split.num_rows // 4}
    assert class_names(synthetic) == ["red-alpha", "red-beta", "blue-alpha", "blue-beta"]
    ids = [i for split in synthetic.values() for i in split["id"]]
    assert len(set(ids)) == len(ids)


def _dump(ds: DatasetDict) -> list[tuple[Any, ...]]:
    rows = []
    raw = ds.cast_column("image", Image(decode=False))
    for name, split in raw.items():
        for row in split:
            rows.append((name, row["id"], row["image"]["bytes"], row["text"], row["label"]))
    return rows


def test_synthetic_is_deterministic(synthetic: DatasetDict) -> None:
    assert _dump(make_synthetic()) == _dump(synthetic)
    assert _dump(make_synthetic(seed=1)) != _dump(synthetic)
    # a split does not depend on the size of the others
    other = make_synthetic(n_train=8)
    assert _dump(DatasetDict(test=other["test"])) == _dump(DatasetDict(test=synthetic["test"]))


def test_synthetic_each_modality_alone_is_ambiguous() -> None:
    ds = make_synthetic(n_train=96, noise=0.0, n_classes=6)["train"]
    labels = np.array(ds["label"])
    image_factor = np.array(ds["image_factor"])
    text_factor = np.array(ds["text_factor"])
    # both factors together determine the class ...
    assert np.array_equal(labels, 2 * image_factor + text_factor)
    # ... but each alone leaves several classes possible
    for value in np.unique(image_factor):
        assert len(set(labels[image_factor == value])) == 2
    for value in np.unique(text_factor):
        assert len(set(labels[text_factor == value])) == 3
    # the text carries the word group only, the image the colour only
    groups = list(SYNTHETIC_WORDS.values())
    colours = np.array(list(SYNTHETIC_COLOURS.values())[:3], dtype=float)
    for row in ds:
        words = set(row["text"].split())
        assert words & set(groups[row["text_factor"]])
        assert not words & set(groups[1 - row["text_factor"]])
        pixels = np.asarray(row["image"], dtype=float).reshape(-1, 3)
        spread = pixels.max(axis=1) - pixels.min(axis=1)  # saturation: shape, not grey
        shape_colour = np.median(pixels[spread >= np.quantile(spread, 0.9)], axis=0)
        nearest = int(np.argmin(((colours - shape_colour) ** 2).sum(axis=1)))
        assert nearest == row["image_factor"]


def test_synthetic_noise_corrupts_some_modalities() -> None:
    ds = make_synthetic(n_train=400, n_validation=4, n_test=4, noise=0.2)["train"]
    labels = np.array(ds["label"])
    image_ok = np.array(ds["image_factor"]) == labels // 2
    text_ok = np.array(ds["text_factor"]) == labels % 2
    assert 0.7 < image_ok.mean() < 0.9
    assert 0.7 < text_ok.mean() < 0.9


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_classes": 3},
        {"n_classes": 2},
        {"n_classes": 40},
        {"n_train": 0},
        {"image_size": 4},
        {"noise": 0.7},
        {"seed": -1},
    ],
)
def test_synthetic_rejects_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=next(iter(kwargs))):
        make_synthetic(**kwargs)
