"""The data defects a new user met (issue 15), each fixed at load time.

1 a corrupt or truncated image fails when the data is loaded, naming split, row and file;
2 a label with no training row, or a case variant of another, is a LabelError;
4 a mistyped local path fails at once, an ambiguous name names both readings;
6 text-only and image-only datasets load;
10 messages name the CLI flag next to the Python keyword; a missing validation split points at
validation_size.
"""

from __future__ import annotations

import io
from pathlib import Path

import datasets
import numpy as np
import pytest
from _data_helpers import hf_cache, png, png_bytes, write_csv
from datasets import Dataset, DatasetDict, Features, Image, Value
from PIL import Image as PILImage

from ensemble.data import class_names, load_multimodal, require_splits
from ensemble.exceptions import ConfigError, DataError, InvalidImageError, LabelError


def _noise_png(size: int = 32) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _shapes(root: Path, bad: dict[str, tuple[int, bytes]] | None = None) -> Path:
    """``root/shapes``: train/validation/test csv files over PNGs; ``bad`` replaces one file
    per split (``{split: (row, bytes)}``)."""
    folder = root / "shapes"
    for split, n in (("train", 8), ("validation", 4), ("test", 4)):
        rows = []
        for i in range(n):
            path = png(folder / split / f"{i:03d}.png", (20 * i, 0, 200))
            if bad and split in bad and bad[split][0] == i:
                path.write_bytes(bad[split][1])
            rows.append({"file": f"{split}/{i:03d}.png", "caption": f"{split} shape {i}",
                         "shape": ["circle", "square"][i % 2]})
        write_csv(folder / f"{split}.csv", rows)
    return folder


def _load_shapes(folder: Path, **options: object) -> DatasetDict:
    return load_multimodal(folder, data_files={s: f"{s}.csv" for s in
                                               ("train", "validation", "test")},
                           image_column="file", text_column="caption", label_column="shape",
                           **hf_cache(folder.parent), **options)


# --- 1. corrupt and truncated images ------------------------------------------------------


def test_random_bytes_saved_as_png_fail_at_load_naming_split_row_and_file(
        tmp_path: Path) -> None:
    folder = _shapes(tmp_path, {"train": (5, np.random.default_rng(1).bytes(300))})
    with pytest.raises(InvalidImageError, match=(
            r"row 5 of split 'train': image file '.*train/005\.png' cannot be read.*corrupt, "
            r"truncated or not an image")):
        _load_shapes(folder)
    assert _load_shapes(folder, verify_images=False)["train"].num_rows == 8  # opt-out


def test_truncated_png_in_the_validation_csv_fails_at_load(tmp_path: Path) -> None:
    whole = _noise_png()
    folder = _shapes(tmp_path, {"validation": (2, whole[: len(whole) * 6 // 10])})
    with pytest.raises(InvalidImageError,
                       match=r"row 2 of split 'validation': image file '.*validation/002\.png'"):
        _load_shapes(folder)


def test_corrupt_image_bytes_in_a_dataset_name_the_example() -> None:
    good = png_bytes()
    features = Features({"image": Image(), "text": Value("string"), "label": Value("string"),
                         "uid": Value("string")})
    dsd = DatasetDict(
        train=Dataset.from_dict({"image": [{"bytes": good, "path": None}] * 2,
                                 "text": ["a", "b"], "label": ["x", "y"], "uid": ["u1", "u2"]},
                                features=features),
        test=Dataset.from_dict({"image": [{"bytes": good, "path": None},
                                          {"bytes": good[:40], "path": None}],
                                "text": ["c", "d"], "label": ["x", "y"], "uid": ["u3", "u4"]},
                               features=features))
    with pytest.raises(InvalidImageError,
                       match=r"example 'u4' \(split 'test', row 1\): image bytes cannot be read"):
        load_multimodal(dsd, id_column="uid")


def test_an_image_above_the_pixel_limit_is_refused_without_decoding(tmp_path: Path) -> None:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 10_000, 10_000, 8, 2, 0, 0, 0)
    (tmp_path / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                                        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                                        + chunk(b"IEND", b""))
    dsd = DatasetDict(train=Dataset.from_dict({"image": [str(tmp_path / "huge.png")] * 2,
                                               "text": ["a", "b"], "label": ["x", "y"]}))
    with pytest.raises(InvalidImageError, match="10000x10000, above the limit"):
        load_multimodal(dsd)


# --- 2. labels the training split never shows ------------------------------------------------


def _labelled(train: list[str], test: list[str], validation: list[str] | None = None
              ) -> DatasetDict:
    def split(labels: list[str], name: str) -> Dataset:
        return Dataset.from_dict({"text": [f"{name} {i}" for i in range(len(labels))],
                                  "label": labels})

    splits = {"train": split(train, "train"), "test": split(test, "test")}
    if validation is not None:
        splits["validation"] = split(validation, "validation")
    return DatasetDict(splits)


def test_label_only_in_the_test_split_is_an_error_naming_label_split_row_and_fix() -> None:
    dsd = _labelled(["circle", "square"] * 3, ["circle", "triangle", "square"])
    with pytest.raises(LabelError, match=(
            r"label 'triangle' of example '.*' \(split 'test', row 1, column 'label'\) has no "
            r"row in split 'train'.*class_names=\['circle', 'square', 'triangle'\].*"
            r"allow_unseen_labels=True")):
        load_multimodal(dsd, image_column=None)
    # the fixes the message names both work
    listed = load_multimodal(dsd, image_column=None,
                             class_names=["circle", "square", "triangle"])
    assert class_names(listed) == ["circle", "square", "triangle"]
    allowed = load_multimodal(dsd, image_column=None, allow_unseen_labels=True)
    assert class_names(allowed) == ["circle", "square", "triangle"]


def test_case_typo_of_a_label_is_an_error_naming_both_spellings() -> None:
    only_in_validation = _labelled(["circle", "square"] * 3, ["square"], ["circle", "Circle"])
    with pytest.raises(LabelError, match=(
            r"labels 'Circle' and 'circle' .* differ only in case or spaces: 'Circle' \(1 "
            r"row\(s\)\) first appears in example .* \(split 'validation', row 1\).*spelling")):
        load_multimodal(only_in_validation, image_column=None)
    in_train_too = _labelled(["circle", "square", "circle", "Circle"], ["square", "circle"])
    with pytest.raises(LabelError, match=r"'Circle' and 'circle'.*split 'train', row 3"):
        load_multimodal(in_train_too, image_column=None)
    with pytest.raises(LabelError, match=r"'Circle'.*Did you mean 'circle'"):
        load_multimodal(_labelled(["circle", "square"], ["Circle"]), image_column=None,
                        class_names=["circle", "square"])


def test_integer_labels_only_in_validation_and_a_split_without_train() -> None:
    dsd = DatasetDict(train=Dataset.from_dict({"text": ["a", "b"], "label": [0, 1]}),
                      validation=Dataset.from_dict({"text": ["c", "d"], "label": [1, 2]}))
    with pytest.raises(LabelError, match=r"label '2' .*split 'validation', row 1"):
        load_multimodal(dsd, image_column=None)
    # no train split (e.g. a test set scored with a saved bundle): nothing to compare with
    only_test = DatasetDict(test=Dataset.from_dict({"text": ["a", "b"], "label": ["x", "y"]}))
    assert class_names(load_multimodal(only_test, image_column=None)) == ["x", "y"]


def test_an_empty_label_cell_names_the_row(tmp_path: Path) -> None:
    rows = [{"text": "a", "label": 0}, {"text": "b", "label": None}, {"text": "c", "label": 1}]
    with pytest.raises(LabelError, match=r"example '.*' \(split 'train', row 1\) has no label"):
        load_multimodal(write_csv(tmp_path / "d.csv", rows), image_column=None,
                        **hf_cache(tmp_path))


# --- 4. a mistyped local path -----------------------------------------------------------------


@pytest.fixture
def in_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with data/shapes/, and no Hub: load_dataset must not be called
    for a path that looks local."""
    (tmp_path / "data" / "shapes").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _no_hub(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []

    def load_dataset(path: str, *args: object, **kwargs: object) -> None:
        calls.append(path)
        raise ConnectionError(f"Couldn't reach {path!r} on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


@pytest.mark.parametrize(("name", "close"), [
    ("data/shapess", "data/shapes"),       # first component exists: the docs' data/pets form
    ("data/shapes/train.csv", ""),         # a data-file extension
    ("shapes.csv", ""),
    ("./shapes", ""),
    ("data/shapes/sub/x", ""),             # its parent folder exists
])
def test_a_missing_path_that_looks_local_fails_at_once(
        in_project: Path, monkeypatch: pytest.MonkeyPatch, name: str, close: str) -> None:
    calls = _no_hub(monkeypatch)
    with pytest.raises(DataError, match=r"local path .* does not exist.*not tried as a Hub"
                       ) as info:
        load_multimodal(name)
    assert calls == []
    assert repr(name) in str(info.value) and str(in_project) in str(info.value)
    if close:
        assert f"Did you mean '{close}'?" in str(info.value)


@pytest.mark.parametrize("name", ["user/dataset", "shapez"])
def test_an_ambiguous_name_is_tried_on_the_hub_and_both_readings_are_named(
        in_project: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    calls = _no_hub(monkeypatch)
    with pytest.raises(DataError, match=(
            rf"'{name}' is neither a local file or folder \(nothing at .*{name}\) nor a "
            r"dataset that could be loaded from the Hub.*OfflineModeIsEnabled")):
        load_multimodal(name)
    assert calls == [name]


# --- 6. text-only and image-only datasets --------------------------------------------------


def test_text_only_and_image_only_datasets(tmp_path: Path) -> None:
    png(tmp_path / "a.png", (1, 1, 1))
    dsd = DatasetDict(train=Dataset.from_dict({
        "path": [str(tmp_path / "a.png"), None], "caption": ["a cat", "a dog"],
        "label": ["cat", "dog"]}))
    text_only = load_multimodal(dsd, image_column=None, text_column="caption")
    assert text_only["train"].column_names == ["id", "text", "label", "path"]
    image_only = load_multimodal(dsd, image_column="path", text_column=None)
    assert image_only["train"].column_names == ["id", "image", "label", "caption"]
    assert text_only["train"]["id"] != image_only["train"]["id"]
    with pytest.raises(ConfigError, match="without inputs"):
        load_multimodal(dsd, image_column=None, text_column=None)


# --- 10. messages name the CLI flag; the missing validation split --------------------------


def test_column_messages_name_the_keyword_and_the_cli_flag() -> None:
    dsd = DatasetDict(train=Dataset.from_dict({"text": ["a", "b"], "label": ["x", "y"]}))
    with pytest.raises(DataError, match=(
            r"column 'image' \(image_column\) not found.*image_column=<column> \(CLI: "
            r"--image-column NAME\)")):
        load_multimodal(dsd)
    with pytest.raises(DataError, match=r"label_column=<column> \(CLI: --label-column NAME\)"):
        load_multimodal(dsd, image_column=None, label_column="species")


def test_a_missing_validation_split_points_at_validation_size() -> None:
    dataset = {"train": None, "test": None}
    with pytest.raises(DataError, match=(
            r"no split 'validation'.*validation_size=0\.1 \(CLI: --data-option "
            r"validation_size=0\.1\).*data\.fit_split")):
        require_splits(dataset, {"data.train_split": "train", "data.fit_split": "validation"})
    with pytest.raises(DataError, match=r"no split 'dev'.*set data.test_split"):
        require_splits(dataset, {"data.test_split": "dev"})
    require_splits(dataset, {"data.test_split": "test"})
