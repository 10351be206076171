"""Tests for ensemble.data: synthetic data, load_multimodal, load_emoji (offline), class_names."""

from __future__ import annotations

import collections
import io
import json
import os
import re
import shutil
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Value
from PIL import Image as PILImage
from sklearn.model_selection import train_test_split

from ensemble import data as data_mod
from ensemble.data import (
    SYNTHETIC_COLOURS,
    SYNTHETIC_WORDS,
    class_names,
    load_emoji,
    load_multimodal,
    make_synthetic,
)
from ensemble.exceptions import (
    ClassMismatchError,
    ConfigError,
    DataError,
    DependencyError,
    InvalidImageError,
    InvalidTextError,
    LabelError,
)

HEX16 = re.compile(r"^[0-9a-f]{16}(~\d+)?$")


# --------------------------------------------------------------------------------------
# make_synthetic
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# load_multimodal
# --------------------------------------------------------------------------------------


def _png(path: Path, colour: tuple[int, ...], mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.new(mode, (8, 8), colour).save(path)


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    for i in range(6):
        _png(tmp_path / "imgs" / f"{i}.png", (40 * i, 0, 0))
    _png(tmp_path / "imgs" / "rgba.png", (0, 0, 255, 128), mode="RGBA")
    return tmp_path


def _hf_cache(tmp_path: Path) -> dict[str, str]:
    return {"cache_dir": str(tmp_path / "hf-cache")}


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    header = list(rows[0])
    lines = [",".join(header)] + [",".join(str(r[h]) for h in header) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_load_csv_with_column_mapping(image_dir: Path) -> None:
    rows = [
        {"path": f"imgs/{i}.png", "caption": f"caption {i}", "species": ["dog", "cat"][i % 2]}
        for i in range(6)
    ]
    _write_csv(image_dir / "pets.csv", rows)
    ds = load_multimodal(
        image_dir / "pets.csv", image_column="path", text_column="caption",
        label_column="species", **_hf_cache(image_dir),
    )
    train = ds["train"]
    assert train.column_names == ["id", "image", "text", "label"]
    assert class_names(ds) == ["cat", "dog"]  # sorted
    assert train["label"] == [1, 0, 1, 0, 1, 0]
    assert train["text"][2] == "caption 2"
    image = train[3]["image"]
    assert isinstance(image, PILImage.Image) and image.getpixel((0, 0)) == (120, 0, 0)
    assert all(HEX16.match(i) for i in train["id"])
    # ids are stable across runs and independent of the working directory
    again = load_multimodal(
        str(image_dir / "pets.csv"), image_column="path", text_column="caption",
        label_column="species", class_names=["dog", "cat"], **_hf_cache(image_dir),
    )
    assert again["train"]["id"] == train["id"]
    assert class_names(again) == ["dog", "cat"]  # the given order is kept
    assert again["train"]["label"] == [0, 1, 0, 1, 0, 1]
    # the content hash is the same once the image files are embedded as bytes
    ds.save_to_disk(str(image_dir / "saved"))
    embedded = DatasetDict.load_from_disk(str(image_dir / "saved")).remove_columns("id")
    assert load_multimodal(embedded)["train"]["id"] == train["id"]


def test_load_csv_with_builder_name_and_data_files(image_dir: Path) -> None:
    sub = image_dir / "meta"
    sub.mkdir()
    _write_csv(sub / "train.csv", [{"image": "../imgs/0.png", "text": "a", "label": "x"},
                                   {"image": "../imgs/1.png", "text": "b", "label": "y"}])
    _write_csv(sub / "test.csv", [{"image": "../imgs/2.png", "text": "c", "label": "y"}])
    ds = load_multimodal(
        "csv",
        data_files={"train": str(sub / "train.csv"), "test": str(sub / "test.csv")},
        **_hf_cache(image_dir),
    )
    assert sorted(ds) == ["test", "train"]
    assert ds["test"][0]["image"].getpixel((0, 0)) == (80, 0, 0)
    assert class_names(ds) == ["x", "y"] and ds["test"]["label"] == [1]


def test_load_jsonl_with_ids_and_int_labels(image_dir: Path) -> None:
    path = image_dir / "data.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for i in range(4):
            row = {"uid": 100 + i, "img": str(image_dir / "imgs" / f"{i}.png"),
                   "txt": f"t{i}", "y": i % 3, "extra": i * 2}
            handle.write(json.dumps(row) + "\n")
    ds = load_multimodal(path, image_column="img", text_column="txt", label_column="y",
                         id_column="uid", class_names=["a", "b", "c"], **_hf_cache(image_dir))
    train = ds["train"]
    assert train.column_names == ["id", "image", "text", "label", "extra"]
    assert train["id"] == ["100", "101", "102", "103"]
    assert class_names(ds) == ["a", "b", "c"]
    assert train["label"] == [0, 1, 2, 0]
    # integer labels without class_names get the names "0", "1", ...
    plain = load_multimodal(path, image_column="img", text_column="txt", label_column="y",
                            id_column="uid", **_hf_cache(image_dir))
    assert class_names(plain) == ["0", "1", "2"]


def test_load_imagefolder_with_metadata(tmp_path: Path) -> None:
    root = tmp_path / "folder"
    for split, n in (("train", 4), ("test", 2)):
        lines = []
        for i in range(n):
            _png(root / split / f"{i}.png", (10 * i, 200, 0))
            lines.append(json.dumps({"file_name": f"{i}.png", "caption": f"{split} {i}",
                                     "category": ["leaf", "stone"][i % 2]}))
        (root / split / "metadata.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    ds = load_multimodal(root, text_column="caption", label_column="category",
                         **_hf_cache(tmp_path))
    assert sorted(ds) == ["test", "train"]
    assert ds["train"].num_rows == 4 and ds["test"].num_rows == 2
    assert class_names(ds) == ["leaf", "stone"]
    row = ds["test"][1]
    assert row["text"] == "test 1" and row["label"] == 1
    assert row["image"].getpixel((0, 0)) == (10, 200, 0)


def test_load_parquet_and_saved_directory(tmp_path: Path) -> None:
    source = DatasetDict(train=Dataset.from_dict(
        {"image": [PILImage.new("RGB", (4, 4), (9, 9, 9))] * 2, "text": ["u", "v"],
         "label": ["p", "q"]}
    ))
    source["train"].to_parquet(str(tmp_path / "d.parquet"))
    ds = load_multimodal(tmp_path / "d.parquet", **_hf_cache(tmp_path))
    assert ds["train"][1]["image"].getpixel((0, 0)) == (9, 9, 9)
    ds.save_to_disk(str(tmp_path / "saved"))
    reloaded = load_multimodal(tmp_path / "saved", id_column="id")
    assert reloaded["train"]["id"] == ds["train"]["id"]
    assert class_names(reloaded) == ["p", "q"]


def _in_memory(**overrides: Any) -> DatasetDict:
    columns: dict[str, Any] = {
        "image": [PILImage.new("RGB", (4, 4), (i, 0, 0)) for i in range(4)],
        "text": ["one", "two", "three", "four"],
        "label": [0, 1, 0, 1],
    }
    columns.update(overrides)
    features = Features({
        "image": Image(), "text": Value("string"), "label": ClassLabel(names=["neg", "pos"]),
        **{k: v for k, v in {"uid": Value("string")}.items() if k in columns},
    })
    return DatasetDict(train=Dataset.from_dict(columns, features=features))


def test_in_memory_classlabel_reordered_and_missing_modalities() -> None:
    dsd = _in_memory(text=["one", None, "three", "four"])
    dsd["train"] = dsd["train"].cast_column("image", Image(decode=False))
    ds = load_multimodal(dsd, class_names=["pos", "neg"])
    assert class_names(ds) == ["pos", "neg"]
    assert ds["train"]["label"] == [1, 0, 1, 0]
    assert ds["train"][1]["text"] is None  # a missing text is kept as None
    assert isinstance(ds["train"][0]["image"], PILImage.Image)  # decoding switched back on
    single = load_multimodal(dsd["train"])  # a Dataset becomes the "train" split
    assert list(single) == ["train"]


def test_duplicate_content_gets_suffixed_ids() -> None:
    image = PILImage.new("RGB", (4, 4), (1, 2, 3))
    dsd = DatasetDict(
        train=Dataset.from_dict({"image": [image, image], "text": ["x", "x"], "label": ["a", "a"]}),
        test=Dataset.from_dict({"image": [image], "text": ["x"], "label": ["a"]}),
    )
    with pytest.warns(UserWarning, match="repeat the image and text"):
        ds = load_multimodal(dsd)
    first = ds["train"]["id"][0]
    assert ds["train"]["id"] == [first, f"{first}~1"] and ds["test"]["id"] == [f"{first}~2"]


# --- bad inputs -----------------------------------------------------------------------


def test_missing_column_names_it_and_lists_available() -> None:
    with pytest.raises(DataError, match=r"'caption'.*available columns: \['image', 'text'"):
        load_multimodal(_in_memory(), text_column="caption")


def test_label_outside_label_space_names_value_and_id() -> None:
    dsd = DatasetDict(train=Dataset.from_dict({
        "image": [None, None], "text": ["a", "b"], "label": ["cat", "dgo"], "uid": ["k1", "k2"],
    }))
    with pytest.raises(LabelError, match=r"'dgo' of example 'k2'.*class_names"):
        load_multimodal(dsd, id_column="uid", class_names=["cat", "dog"])


def test_unlabelled_classlabel_rows_are_rejected() -> None:
    with pytest.raises(LabelError, match="no label"):
        load_multimodal(_in_memory(label=[0, 1, -1, 0]))


def test_int_label_out_of_range() -> None:
    dsd = DatasetDict(train=Dataset.from_dict({"image": [None], "text": ["a"], "label": [5]}))
    with pytest.raises(LabelError, match="Label 5 of example"):
        load_multimodal(dsd, class_names=["a", "b"])


def test_duplicate_ids_are_rejected() -> None:
    dsd = _in_memory(uid=["a", "b", "a", "c"])
    with pytest.raises(DataError, match=r"Duplicate example id 'a'.*row 0.*row 2"):
        load_multimodal(dsd, id_column="uid")


def test_duplicate_ids_across_splits_are_rejected() -> None:
    dsd = DatasetDict(train=_in_memory(uid=list("abcd"))["train"],
                      test=_in_memory(uid=list("wxyd"))["train"])
    with pytest.raises(DataError, match=r"'d'.*'train' row 3 and split 'test' row 3"):
        load_multimodal(dsd, id_column="uid")


def test_missing_image_file_names_row_and_path(image_dir: Path) -> None:
    _write_csv(image_dir / "bad.csv", [{"image": "imgs/0.png", "text": "a", "label": "x"},
                                       {"image": "imgs/nope.png", "text": "b", "label": "x"}])
    with pytest.raises(InvalidImageError, match=r"row 1 of split 'train'.*imgs/nope.png"):
        load_multimodal(image_dir / "bad.csv", **_hf_cache(image_dir))


def test_image_root_resolves_relative_paths(image_dir: Path) -> None:
    dsd = DatasetDict(train=Dataset.from_dict(
        {"image": ["0.png", "rgba.png"], "text": ["a", "b"], "label": ["x", "y"]}
    ))
    ds = load_multimodal(dsd, image_root=image_dir / "imgs")
    assert ds["train"][1]["image"].mode == "RGBA"  # converted to RGB by the expert, not here
    with pytest.raises(InvalidImageError, match="image_root"):
        load_multimodal(dsd)  # relative to the working directory: not found


def test_empty_text_and_non_string_text() -> None:
    with pytest.raises(InvalidTextError, match=r"row 2 of split 'train'.*None"):
        load_multimodal(_in_memory(text=["a", "b", "  ", "d"]))
    dsd = DatasetDict(train=Dataset.from_dict({"image": [None], "text": [3], "label": ["a"]}))
    with pytest.raises(InvalidTextError, match="not string"):
        load_multimodal(dsd)


def test_unmapped_standard_column_collides() -> None:
    dsd = DatasetDict(train=Dataset.from_dict(
        {"id": ["q"], "image": [None], "text": ["a"], "label": ["x"]}
    ))
    with pytest.raises(DataError, match="id_column='id'"):
        load_multimodal(dsd)
    assert load_multimodal(dsd, id_column="id")["train"]["id"] == ["q"]
    # a standard name used as the source of another role is renamed, not a collision
    swapped = DatasetDict(train=Dataset.from_dict(
        {"id": [None], "caption": ["a"], "label": ["x"], "uid": ["u1"]}
    ))
    ds = load_multimodal(swapped, image_column="id", text_column="caption", id_column="uid")
    assert ds["train"].column_names == ["id", "image", "text", "label"]
    assert ds["train"][0]["id"] == "u1" and ds["train"][0]["text"] == "a"


def test_bad_configuration() -> None:
    with pytest.raises(ConfigError, match="different columns"):
        load_multimodal(_in_memory(), text_column="image")
    with pytest.raises(ConfigError, match="list of strings"):
        load_multimodal(_in_memory(), class_names="neg,pos")
    with pytest.raises(ConfigError, match="duplicates"):
        load_multimodal(_in_memory(), class_names=["a", "a"])
    with pytest.raises(ConfigError, match="data_files"):
        load_multimodal(_in_memory(), data_files="x.csv")


def test_missing_local_path_fails_fast(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_multimodal(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="does not exist"):
        load_multimodal("./no/such/dir")


def _headerless(path: Path, rows: list[list[str]]) -> None:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)


def test_column_names_reads_csv_files_without_a_header(image_dir: Path) -> None:
    _headerless(image_dir / "texts" / "train.csv",
                [["0.png", "first, with a comma", "x"], ["1.png", "second", "y"]])
    _headerless(image_dir / "texts" / "test.csv", [["2.png", "third", "y"]])
    options = dict(data_files={"train": "texts/train.csv", "test": "texts/test.csv"},
                   column_names=["file", "title", "kind"], image_column="file",
                   text_column="title", label_column="kind", image_root=image_dir / "imgs",
                   **_hf_cache(image_dir))
    ds = load_multimodal(image_dir, **options)
    assert ds["train"]["text"] == ["first, with a comma", "second"]  # row 1 is data
    assert ds["test"][0]["image"].getpixel((0, 0)) == (80, 0, 0)
    assert class_names(ds) == ["x", "y"]
    with pytest.raises(DataError, match="more columns than names"):
        load_multimodal(image_dir, **{**options, "column_names": ["title", "kind"],
                                      "image_column": "title", "text_column": "kind",
                                      "label_column": "kind2"})
    with pytest.raises(ConfigError, match="csv / tsv"):
        load_multimodal(image_dir / "data.jsonl", column_names=["a", "b", "c"])
    with pytest.raises(ConfigError, match="header"):
        load_multimodal(image_dir, **options, header=0)
    with pytest.raises(ConfigError, match="repeated"):
        load_multimodal(image_dir, **{**options, "column_names": ["a", "a", "b"]})
    with pytest.raises(ConfigError, match="in-memory"):
        load_multimodal(_in_memory(), column_names=["a", "b", "c"])


def _files_by_label(root: Path) -> DatasetDict:
    """Rows naming a file; the files live in ``root/<split>/<label>/<file>``."""
    colours = {"train": (10, 0, 0), "test": (0, 0, 90)}
    splits = {}
    for split, colour in colours.items():
        for label in ("cat", "dog"):
            _png(root / split / label / "a.png", colour)
        splits[split] = Dataset.from_dict(
            {"file": ["a.png", "a.png", None], "n": [1, 2, 3],
             "text": [f"{split} {w}" for w in "stu"], "label": [0, 1, 1]},
            features=Features({"file": Value("string"), "n": Value("int64"),
                               "text": Value("string"),
                               "label": ClassLabel(names=["cat", "dog"])}))
    return DatasetDict(splits)


def test_image_path_template_builds_paths_from_the_row(tmp_path: Path) -> None:
    dsd = _files_by_label(tmp_path)
    ds = load_multimodal(dsd, image_column="file", image_root=tmp_path,
                         image_path_template="{split}/{label}/{file}")
    paths = ds["test"].cast_column("image", Image(decode=False))["image"]
    assert paths[1]["path"] == str(tmp_path / "test" / "dog" / "a.png")  # ClassLabel -> name
    assert paths[2] is None  # a missing image stays missing
    assert ds["train"][0]["image"].getpixel((0, 0)) == (10, 0, 0)
    assert ds["test"][0]["image"].getpixel((0, 0)) == (0, 0, 90)
    # format specs work; the result is checked like any image path
    with pytest.raises(InvalidImageError, match=r"train/cat/a-01\.png"):
        load_multimodal(dsd, image_column="file", image_root=tmp_path,
                        image_path_template="{split}/{label}/a-{n:02d}.png")
    with pytest.raises(DataError, match=r"uses column 'species'.*available columns"):
        load_multimodal(dsd, image_column="file", image_path_template="{species}/{file}")
    for bad, message in (("{0}/{file}", "must name a column"), ("{file.x}", "must name"),
                         ("images/a.png", "no placeholder"), ("{file", "valid format"),
                         ("", "non-empty")):
        with pytest.raises(ConfigError, match=message):
            load_multimodal(dsd, image_column="file", image_path_template=bad)
    with pytest.raises(ConfigError, match="needs file names"):
        load_multimodal(_in_memory(), image_path_template="{label}/{image}")
    holes = DatasetDict(train=Dataset.from_dict(
        {"file": ["a.png"], "group": [None], "text": ["t"], "label": ["x"]},
        features=Features({"file": Value("string"), "group": Value("string"),
                           "text": Value("string"), "label": Value("string")})))
    with pytest.raises(DataError, match=r"row 0 of split 'train' has no value in column 'group'"):
        load_multimodal(holes, image_column="file", image_path_template="{group}/{file}")


def _train_test(n_train: int = 20) -> DatasetDict:
    def split(n: int, name: str) -> Dataset:
        return Dataset.from_dict({"image": [None] * n,
                                  "text": [f"{name} text {i}" for i in range(n)],
                                  "label": [["a", "b"][i % 2] if i < n - 3 else "c"
                                            for i in range(n)]})

    return DatasetDict(train=split(n_train, "train"), test=split(6, "test"))


def test_validation_size_carves_a_stratified_seeded_split() -> None:
    whole = load_multimodal(_train_test())
    ds = load_multimodal(_train_test(), validation_size=0.25, split_seed=3)
    assert list(ds) == ["train", "validation", "test"]
    assert (ds["train"].num_rows, ds["validation"].num_rows) == (15, 5)
    # stratified: the 3-row class "c" keeps rows in both; ids and order are those of train
    assert set(ds["validation"]["label"]) == {0, 1, 2} == set(ds["train"]["label"])
    train_ids, held = list(whole["train"]["id"]), list(ds["validation"]["id"])
    assert sorted(list(ds["train"]["id"]) + held) == sorted(train_ids)
    assert held == [i for i in train_ids if i in set(held)]
    assert list(ds["test"]["id"]) == list(whole["test"]["id"])
    again = load_multimodal(_train_test(), validation_size=0.25, split_seed=3)
    assert list(again["validation"]["id"]) == held
    other = load_multimodal(_train_test(), validation_size=0.25, split_seed=4)
    assert list(other["validation"]["id"]) != held
    assert load_multimodal(_train_test(), validation_size=4)["validation"].num_rows == 4


def test_validation_size_errors() -> None:
    for bad in (0.0, 1.0, 0, -2, True, "0.1"):
        with pytest.raises(ConfigError, match="validation_size"):
            load_multimodal(_train_test(), validation_size=bad)
    with pytest.raises(ConfigError, match="split_seed"):
        load_multimodal(_train_test(), validation_size=0.2, split_seed=-1)
    with_validation = DatasetDict(train=_train_test()["train"],
                                  validation=_train_test()["test"])
    with pytest.raises(ConfigError, match="already has a 'validation' split"):
        load_multimodal(with_validation, validation_size=0.2)
    with pytest.raises(DataError, match="out of 'train'"):
        load_multimodal(DatasetDict(other=_train_test()["train"]), validation_size=0.2)
    with pytest.raises(DataError, match="stratified validation split"):
        load_multimodal(_train_test(), validation_size=2)  # fewer rows than classes


def test_class_names_helper() -> None:
    dsd = _in_memory()
    assert class_names(dsd) == ["neg", "pos"] == class_names(dsd["train"])
    with pytest.raises(DataError, match="not a ClassLabel"):
        class_names(dsd, label_column="text")
    other = dsd["train"].cast_column("label", ClassLabel(names=["pos", "neg"]))
    with pytest.raises(ClassMismatchError, match="class_names"):
        class_names(DatasetDict(train=dsd["train"], test=other))


# --------------------------------------------------------------------------------------
# load_emoji (offline, fake tarball with the real layout)
# --------------------------------------------------------------------------------------

FAKE_CATEGORIES = {"Smileys & Emotion": (250, 200, 0), "Animals & Nature": (0, 150, 0),
                   "Flags": (0, 0, 200)}


def _rgba_png(colour: tuple[int, int, int]) -> bytes:
    image = PILImage.new("RGBA", (64, 64), (0, 0, 0, 0))  # transparent background
    image.paste((*colour, 255), (16, 16, 48, 48))
    image.putpixel((2, 2), (255, 0, 0, 128))  # half-transparent red
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _add(archive: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    archive.addfile(info, io.BytesIO(payload))


def _fake_entries() -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    order = 0
    for c, category in enumerate(FAKE_CATEGORIES):
        for i in range(10):
            order += 1
            code = f"1F{c}{i:02d}"
            entries.append({
                "name": f"{category.upper()} THING {i}", "unified": code,
                "image": f"{code.lower()}.png", "short_names": [f"thing_{c}_{i}"],
                "category": category, "subcategory": f"sub-{c}-{i % 2}",
                "sort_order": 100 - order, "has_img_google": True,
            })
    entries[0]["name"] = ""  # falls back to the first short name
    entries.append({"name": "EMOJI MODIFIER FITZPATRICK TYPE-1-2", "unified": "1F3FB",
                    "image": "1f3fb.png", "short_names": ["skin-tone-2"], "category": "Component",
                    "subcategory": "skin-tone", "sort_order": 500, "has_img_google": True})
    entries.append({"name": "NO GOOGLE IMAGE", "unified": "2000", "image": "2000.png",
                    "short_names": ["no_img"], "category": "Flags", "subcategory": "flag",
                    "sort_order": 501, "has_img_google": False})
    entries.append({"name": "FILE MISSING", "unified": "2001", "image": "2001.png",
                    "short_names": ["missing"], "category": "Flags", "subcategory": "flag",
                    "sort_order": 502, "has_img_google": True})
    return entries


def _make_tarball(path: Path, package: dict[str, str] | None = None) -> Path:
    entries = _fake_entries()
    colours = list(FAKE_CATEGORIES.values())
    with tarfile.open(path, "w:gz") as archive:
        package = package or {"name": "emoji-datasource-google", "version": "16.0.0"}
        _add(archive, "package/package.json", json.dumps(package).encode())
        _add(archive, "package/emoji.json", json.dumps(entries).encode())
        _add(archive, "package/LICENSE", b"The MIT License (MIT)\n")
        for entry in entries:
            if entry["image"] in ("2001.png",):
                continue
            colour = colours[list(FAKE_CATEGORIES).index(entry["category"])] \
                if entry["category"] in FAKE_CATEGORIES else (9, 9, 9)
            _add(archive, f"package/img/google/64/{entry['image']}", _rgba_png(colour))
        _add(archive, "package/img/google/64/../../../../escape.png", _rgba_png((1, 1, 1)))
        _add(archive, "../escape.txt", b"should never be written")
    return path


@pytest.fixture(scope="module")
def fake_tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("emoji-src")
    return _make_tarball(root / "emoji-datasource-google-16.0.0.tgz")


@pytest.fixture(scope="module")
def emoji(tmp_path_factory: pytest.TempPathFactory, fake_tarball: Path) -> DatasetDict:
    cache = tmp_path_factory.mktemp("emoji-cache")
    return load_emoji(cache, tarball=fake_tarball)


def test_emoji_columns_rows_and_labels(emoji: DatasetDict) -> None:
    assert list(emoji) == ["train", "validation", "test"]
    assert {s: emoji[s].num_rows for s in emoji} == {"train": 18, "validation": 6, "test": 6}
    train = emoji["train"]
    assert train.column_names == [
        "id", "image", "text", "label", "subcategory", "short_names", "unified"
    ]
    assert class_names(emoji) == sorted(FAKE_CATEGORIES)
    rows = [row for split in emoji.values() for row in split]
    assert {r["unified"] for r in rows} == {e["unified"] for e in _fake_entries()[:30]}
    assert all(r["id"] == r["unified"] for r in rows)  # Component, no-image, missing file dropped
    by_id = {r["id"]: r for r in rows}
    assert by_id["1F001"]["text"] == "smileys & emotion thing 1"  # lower-cased name
    assert by_id["1F000"]["text"] == "thing 0 0"  # empty name -> first short name
    assert by_id["1F201"]["short_names"] == ["thing_2_1"]
    assert by_id["1F201"]["subcategory"] == "sub-2-1"


def test_emoji_images_are_rgb_on_white(emoji: DatasetDict) -> None:
    names = class_names(emoji)
    for row in emoji["test"]:
        image = row["image"]
        assert image.mode == "RGB" and image.size == (64, 64)
        assert image.getpixel((0, 0)) == (255, 255, 255)  # transparent -> white
        assert image.getpixel((32, 32)) == FAKE_CATEGORIES[names[row["label"]]]
        red = image.getpixel((2, 2))  # 50% red over white
        assert red[0] == 255 and 120 <= red[1] <= 135 and red[1] == red[2]


def test_emoji_splits_are_stratified_and_as_documented(emoji: DatasetDict) -> None:
    for split, per_class in (("train", 6), ("validation", 2), ("test", 2)):
        assert set(collections.Counter(emoji[split]["label"]).values()) == {per_class}
    # re-derive the documented recipe: sort by sort_order, 60/20/20 stratified, seed 0
    rows = sorted(_fake_entries()[:30], key=lambda e: e["sort_order"])
    names = sorted(FAKE_CATEGORIES)
    y = np.array([names.index(e["category"]) for e in rows])
    train, temp = train_test_split(np.arange(30), test_size=0.4, stratify=y, random_state=0)
    val, test = train_test_split(temp, test_size=0.5, stratify=y[temp], random_state=0)
    for split, idx in (("train", train), ("validation", val), ("test", test)):
        assert emoji[split]["id"] == [rows[i]["unified"] for i in sorted(idx)]


def test_emoji_cache_is_reused_and_deterministic(
    tmp_path: Path, fake_tarball: Path, emoji: DatasetDict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENSEMBLE_CACHE", str(tmp_path))
    first = load_emoji(tarball=fake_tarball)
    assert (tmp_path / "datasets" / "emoji-google-16.0.0-64px" / "dataset_dict.json").is_file()
    for split in emoji:
        assert first[split]["id"] == emoji[split]["id"]

    def boom(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(data_mod, "_build_emoji", boom)
    second = load_emoji()  # from $ENSEMBLE_CACHE, no tarball, no npm needed
    assert second["validation"]["id"] == emoji["validation"]["id"]
    with pytest.raises(AssertionError, match="cache"):
        load_emoji(overwrite=True, tarball=fake_tarball)


def test_emoji_image_size_and_safe_extraction(tmp_path: Path, fake_tarball: Path) -> None:
    cwd = Path.cwd()
    ds = load_emoji(tmp_path / "cache", image_size=32, tarball=fake_tarball)
    assert ds["train"][0]["image"].size == (32, 32)
    assert not (tmp_path / "escape.txt").exists() and not (cwd / "escape.txt").exists()
    assert not list(tmp_path.rglob("escape*"))


def test_emoji_without_npm_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(DependencyError, match=r"Node\.js.*tarball="):
        load_emoji(tmp_path)


def test_emoji_bad_tarballs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_emoji(tmp_path, tarball=tmp_path / "missing.tgz")
    wrong = _make_tarball(tmp_path / "apple.tgz", {"name": "emoji-datasource-apple",
                                                   "version": "16.0.0"})
    with pytest.raises(DataError, match=r"expected emoji-datasource-google@16\.0\.0"):
        load_emoji(tmp_path, tarball=wrong)
    junk = tmp_path / "junk.tgz"
    junk.write_bytes(b"not a tarball")
    with pytest.raises(DataError, match="not a readable"):
        load_emoji(tmp_path, tarball=junk)
    with pytest.raises(ConfigError, match="image_size"):
        load_emoji(tmp_path, image_size=0)


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("ENSEMBLE_NETWORK_TESTS") != "1" or shutil.which("npm") is None,
    reason="downloads from the npm registry; set ENSEMBLE_NETWORK_TESTS=1",
)
def test_real_emoji_dataset(tmp_path: Path) -> None:
    ds = load_emoji(tmp_path)
    assert {s: ds[s].num_rows for s in ds} == {"train": 1143, "validation": 381, "test": 382}
    assert len(class_names(ds)) == 9 and "Component" not in class_names(ds)
