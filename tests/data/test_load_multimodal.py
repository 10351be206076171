"""load_multimodal with image_column / text_column: sources, layouts, ids, labels, errors.

Named inputs, tabular groups and the checks added for issue 15 have their own files.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from _data_helpers import hf_cache, image_folder, in_memory, png, write_csv
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Value
from PIL import Image as PILImage

from ensemble.data import class_names, load_multimodal
from ensemble.exceptions import (
    ClassMismatchError,
    ConfigError,
    DataError,
    InvalidImageError,
    InvalidTextError,
    LabelError,
)

HEX16 = re.compile(r"^[0-9a-f]{16}(~\d+)?$")


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    return image_folder(tmp_path)


def test_load_csv_with_column_mapping(image_dir: Path) -> None:
    rows = [
        {"path": f"imgs/{i}.png", "caption": f"caption {i}", "species": ["dog", "cat"][i % 2]}
        for i in range(6)
    ]
    write_csv(image_dir / "pets.csv", rows)
    ds = load_multimodal(
        image_dir / "pets.csv", image_column="path", text_column="caption",
        label_column="species", **hf_cache(image_dir),
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
        label_column="species", class_names=["dog", "cat"], **hf_cache(image_dir),
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
    write_csv(sub / "train.csv", [{"image": "../imgs/0.png", "text": "a", "label": "x"},
                                   {"image": "../imgs/1.png", "text": "b", "label": "y"}])
    write_csv(sub / "test.csv", [{"image": "../imgs/2.png", "text": "c", "label": "y"}])
    ds = load_multimodal(
        "csv",
        data_files={"train": str(sub / "train.csv"), "test": str(sub / "test.csv")},
        **hf_cache(image_dir),
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
                         id_column="uid", class_names=["a", "b", "c"], **hf_cache(image_dir))
    train = ds["train"]
    assert train.column_names == ["id", "image", "text", "label", "extra"]
    assert train["id"] == ["100", "101", "102", "103"]
    assert class_names(ds) == ["a", "b", "c"]
    assert train["label"] == [0, 1, 2, 0]
    # integer labels without class_names get the names "0", "1", ...
    plain = load_multimodal(path, image_column="img", text_column="txt", label_column="y",
                            id_column="uid", **hf_cache(image_dir))
    assert class_names(plain) == ["0", "1", "2"]


def test_load_imagefolder_with_metadata(tmp_path: Path) -> None:
    root = tmp_path / "folder"
    for split, n in (("train", 4), ("test", 2)):
        lines = []
        for i in range(n):
            png(root / split / f"{i}.png", (10 * i, 200, 0))
            lines.append(json.dumps({"file_name": f"{i}.png", "caption": f"{split} {i}",
                                     "category": ["leaf", "stone"][i % 2]}))
        (root / split / "metadata.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    ds = load_multimodal(root, text_column="caption", label_column="category",
                         **hf_cache(tmp_path))
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
    ds = load_multimodal(tmp_path / "d.parquet", **hf_cache(tmp_path))
    assert ds["train"][1]["image"].getpixel((0, 0)) == (9, 9, 9)
    ds.save_to_disk(str(tmp_path / "saved"))
    reloaded = load_multimodal(tmp_path / "saved", id_column="id")
    assert reloaded["train"]["id"] == ds["train"]["id"]
    assert class_names(reloaded) == ["p", "q"]


def test_in_memory_classlabel_reordered_and_missing_modalities() -> None:
    dsd = in_memory(text=["one", None, "three", "four"])
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
        train=Dataset.from_dict({"image": [image, image, None], "text": ["x", "x", "y"],
                                 "label": ["a", "a", "b"]}),
        test=Dataset.from_dict({"image": [image], "text": ["x"], "label": ["a"]}),
    )
    with pytest.warns(UserWarning, match=r"repeat every input \(image, text\)"):
        ds = load_multimodal(dsd)
    first = ds["train"]["id"][0]
    assert ds["train"]["id"][:2] == [first, f"{first}~1"] and ds["test"]["id"] == [f"{first}~2"]


def test_image_and_text_ids_keep_the_digest_of_earlier_versions(image_dir: Path) -> None:
    """A dataset of one image and one text input keeps sha256(text, image bytes)[:16]."""
    dsd = DatasetDict(train=Dataset.from_dict(
        {"image": [str(image_dir / "imgs" / "1.png"), None], "text": ["a cat", None],
         "label": ["x", "y"]}))
    image_bytes = (image_dir / "imgs" / "1.png").read_bytes()
    expected = [
        hashlib.sha256(b"text\x00a cat\x00image\x00" + image_bytes).hexdigest()[:16],
        hashlib.sha256(b"no-text\x00\x00no-image").hexdigest()[:16],
    ]
    assert load_multimodal(dsd)["train"]["id"] == expected
    named = load_multimodal(dsd, inputs={"image": "image", "text": "text"})
    assert named["train"]["id"] == expected


# --- bad inputs -----------------------------------------------------------------------


def test_missing_column_names_it_and_lists_available() -> None:
    with pytest.raises(DataError, match=r"'caption'.*available columns: \['image', 'text'"):
        load_multimodal(in_memory(), text_column="caption")


def test_label_outside_label_space_names_value_and_id() -> None:
    dsd = DatasetDict(train=Dataset.from_dict({
        "image": [None, None], "text": ["a", "b"], "label": ["cat", "dgo"], "uid": ["k1", "k2"],
    }))
    with pytest.raises(LabelError, match=r"'dgo' of example 'k2'.*class_names"):
        load_multimodal(dsd, id_column="uid", class_names=["cat", "dog"])


def test_unlabelled_classlabel_rows_are_rejected() -> None:
    with pytest.raises(LabelError, match="no label"):
        load_multimodal(in_memory(label=[0, 1, -1, 0]))


def test_int_label_out_of_range() -> None:
    dsd = DatasetDict(train=Dataset.from_dict({"image": [None], "text": ["a"], "label": [5]}))
    with pytest.raises(LabelError, match=r"(?i)label 5 of example"):
        load_multimodal(dsd, class_names=["a", "b"])


def test_duplicate_ids_are_rejected() -> None:
    dsd = in_memory(uid=["a", "b", "a", "c"])
    with pytest.raises(DataError, match=r"(?i)duplicate example id 'a'.*row 0.*row 2"):
        load_multimodal(dsd, id_column="uid")


def test_duplicate_ids_across_splits_are_rejected() -> None:
    dsd = DatasetDict(train=in_memory(uid=list("abcd"))["train"],
                      test=in_memory(uid=list("wxyd"))["train"])
    with pytest.raises(DataError, match=r"'d'.*'train' row 3 and split 'test' row 3"):
        load_multimodal(dsd, id_column="uid")


def test_missing_image_file_names_row_and_path(image_dir: Path) -> None:
    write_csv(image_dir / "bad.csv", [{"image": "imgs/0.png", "text": "a", "label": "x"},
                                       {"image": "imgs/nope.png", "text": "b", "label": "x"}])
    with pytest.raises(InvalidImageError, match=r"row 1 of split 'train'.*imgs/nope.png"):
        load_multimodal(image_dir / "bad.csv", **hf_cache(image_dir))


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
        load_multimodal(in_memory(text=["a", "b", "  ", "d"]))
    dsd = DatasetDict(train=Dataset.from_dict({"image": [None, None], "text": [3, 4],
                                               "label": ["a", "b"]}))
    with pytest.raises(InvalidTextError, match=r"int64.*not text.*--text-column"):
        load_multimodal(dsd)


def test_unmapped_standard_column_collides() -> None:
    dsd = DatasetDict(train=Dataset.from_dict(
        {"id": ["q", "r"], "image": [None, None], "text": ["a", "b"], "label": ["x", "y"]}
    ))
    with pytest.raises(DataError, match="id_column='id'"):
        load_multimodal(dsd)
    assert load_multimodal(dsd, id_column="id")["train"]["id"] == ["q", "r"]
    # a standard name used as the source of another role is renamed, not a collision
    swapped = DatasetDict(train=Dataset.from_dict(
        {"id": [None, None], "caption": ["a", "b"], "label": ["x", "y"], "uid": ["u1", "u2"]}
    ))
    ds = load_multimodal(swapped, image_column="id", text_column="caption", id_column="uid")
    assert ds["train"].column_names == ["id", "image", "text", "label"]
    assert ds["train"][0]["id"] == "u1" and ds["train"][0]["text"] == "a"


def test_bad_configuration() -> None:
    with pytest.raises(ConfigError, match="different columns"):
        load_multimodal(in_memory(), text_column="image")
    with pytest.raises(ConfigError, match="list of strings"):
        load_multimodal(in_memory(), class_names="neg,pos")
    with pytest.raises(ConfigError, match="more than once"):
        load_multimodal(in_memory(), class_names=["a", "a"])
    with pytest.raises(ConfigError, match="data_files"):
        load_multimodal(in_memory(), data_files="x.csv")


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
                   **hf_cache(image_dir))
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
        load_multimodal(in_memory(), column_names=["a", "b", "c"])


def _files_by_label(root: Path) -> DatasetDict:
    """Rows naming a file; the files live in ``root/<split>/<label>/<file>``."""
    colours = {"train": (10, 0, 0), "test": (0, 0, 90)}
    splits = {}
    for split, colour in colours.items():
        for label in ("cat", "dog"):
            png(root / split / label / "a.png", colour)
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
        load_multimodal(in_memory(), image_path_template="{label}/{image}")
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
    dsd = in_memory()
    assert class_names(dsd) == ["neg", "pos"] == class_names(dsd["train"])
    with pytest.raises(DataError, match="not a ClassLabel"):
        class_names(dsd, label_column="text")
    other = dsd["train"].cast_column("label", ClassLabel(names=["pos", "neg"]))
    with pytest.raises(ClassMismatchError, match="class_names"):
        class_names(DatasetDict(train=dsd["train"], test=other))
