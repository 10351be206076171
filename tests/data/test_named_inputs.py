"""load_multimodal with named inputs: columns, tabular groups, presence, ids, and errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from _data_helpers import hf_cache, listings, png, write_csv
from datasets import Dataset, DatasetDict, Image, Value
from PIL import Image as PILImage

from ensemble.data import class_names, load_multimodal, parse_inputs
from ensemble.exceptions import (
    ConfigError,
    DataError,
    InvalidImageError,
    InvalidTabularError,
    InvalidTextError,
    UnknownNameError,
)
from ensemble.modalities import modality_of

INPUTS = {"photo": "image", "title": "text", "description": "text",
          "meta": ["price", "year", "brand"]}


@pytest.fixture
def listing_csv(tmp_path: Path) -> Path:
    return listings(tmp_path)


def test_named_inputs_keep_their_names_in_declared_order(listing_csv: Path) -> None:
    ds = load_multimodal(listing_csv, inputs=INPUTS, label_column="category",
                         **hf_cache(listing_csv.parent))
    train = ds["train"]
    # id, label, the inputs in declared order; price/year/brand live inside meta only
    assert train.column_names == ["id", "label", "photo", "title", "description", "meta"]
    assert class_names(ds) == ["tools", "toys"]
    assert isinstance(train.features["photo"], Image)
    assert train.features["meta"] == {"price": Value("float64"), "year": Value("float64"),
                                      "brand": Value("string")}
    row = train[3]
    assert row["title"] == "item 3" and row["description"] == "a fine thing number 3"
    assert row["meta"] == {"price": 11.5, "year": 2003.0, "brand": "zenith"}
    assert row["photo"].getpixel((0, 0)) == (90, 100, 0)
    # every loaded input column is recognised as its declared modality
    expected = {"photo": "image", "title": "text", "description": "text", "meta": "tabular"}
    assert {c: modality_of(train.features[c]) for c in expected} == expected


def test_remaining_columns_follow_and_shared_columns_are_copied(listing_csv: Path) -> None:
    ds = load_multimodal(listing_csv, inputs={"brand": "text", "meta": ["price", "brand"]},
                         label_column="category", **hf_cache(listing_csv.parent))
    train = ds["train"]
    # brand is a text input and a field of meta; photo/title/... are kept after the inputs
    assert train.column_names == ["id", "label", "brand", "meta", "photo", "title",
                                  "description", "year"]
    assert train[0]["brand"] == "acme" and train[0]["meta"] == {"price": 10.0, "brand": "acme"}


def test_given_kinds_and_column_renames(listing_csv: Path) -> None:
    ds = load_multimodal(
        listing_csv, label_column="category", **hf_cache(listing_csv.parent),
        inputs=[("picture", {"modality": "image", "column": "photo"}),
                ("meta", {"numeric": ["year"], "categorical": ["brand", "price"]})])
    train = ds["train"]
    assert train.column_names[:4] == ["id", "label", "picture", "meta"]
    assert "photo" not in train.column_names  # the source column became the input
    assert train.features["meta"] == {"year": Value("float64"), "brand": Value("string"),
                                      "price": Value("string")}
    # integer-valued floats read as categories lose the ".0"
    assert [m["price"] for m in train["meta"][:2]] == ["10", "10.5"]


def test_missing_values_mark_each_input_absent(tmp_path: Path) -> None:
    png(tmp_path / "a.png", (1, 2, 3))
    rows = [
        {"photo": "a.png", "title": "first", "price": 1.5, "brand": "x", "y": "p"},
        {"photo": None, "title": None, "price": None, "brand": None, "y": "q"},
        {"photo": "a.png", "title": "third", "price": None, "brand": "z", "y": "p"},
        {"photo": None, "title": "fourth", "price": 2.0, "brand": None, "y": "q"},
    ]
    ds = load_multimodal(write_csv(tmp_path / "d.csv", rows), label_column="y",
                         inputs={"photo": "image", "title": "text",
                                 "meta": ["price", "brand"]}, **hf_cache(tmp_path))
    train = ds["train"].cast_column("photo", Image(decode=False))
    assert [p is None for p in train["photo"]] == [False, True, False, True]
    assert train["title"][:] == ["first", None, "third", "fourth"]
    assert train["meta"][:] == [{"price": 1.5, "brand": "x"}, None,
                                {"price": None, "brand": "z"}, {"price": 2.0, "brand": None}]


def test_in_memory_nan_and_blank_cells_are_missing_in_a_group() -> None:
    dsd = DatasetDict(train=Dataset.from_dict({
        "price": [1.0, math.nan, 3.0], "brand": ["a", "  ", None], "y": ["p", "q", "p"]}))
    ds = load_multimodal(dsd, inputs={"meta": ["price", "brand"]}, label_column="y")
    assert ds["train"]["meta"][:] == [{"price": 1.0, "brand": "a"}, None,
                                      {"price": 3.0, "brand": None}]


def _texts(**columns: list[object]) -> DatasetDict:
    return DatasetDict(train=Dataset.from_dict({**columns, "label": ["a", "b", "a"]}))


def test_content_ids_hash_every_declared_input() -> None:
    base = _texts(title=["t1", "t2", "t3"], notes=["n1", "n2", "n3"], price=[1.0, 2.0, 3.0])
    inputs = {"title": "text", "notes": "text", "meta": ["price"]}
    ids = load_multimodal(base, inputs=inputs)["train"]["id"][:]
    assert len(set(ids)) == 3
    # a change in any declared input changes the id of that row only
    for column, values in (("notes", ["n1", "CHANGED", "n3"]), ("price", [1.0, 9.0, 3.0])):
        changed = base["train"].remove_columns([column]).add_column(column, values)
        other = load_multimodal(DatasetDict(train=changed), inputs=inputs)["train"]["id"][:]
        assert other[0] == ids[0] and other[1] != ids[1] and other[2] == ids[2], column
    # an undeclared column and the label do not enter the id; the split and order do not
    extra = base["train"].add_column("unused", ["u", "v", "w"])
    assert load_multimodal(DatasetDict(train=extra), inputs=inputs)["train"]["id"][:] == ids
    relabelled = base["train"].remove_columns(["label"]).add_column("label", ["b", "a", "a"])
    assert load_multimodal(DatasetDict(train=relabelled), inputs=inputs)["train"]["id"][:] == ids
    reordered = DatasetDict(test=base["train"].select([2, 1, 0]))
    assert load_multimodal(reordered, inputs=inputs)["test"]["id"][:] == ids[::-1]
    # the same values under swapped input names are different examples
    swapped = load_multimodal(base, inputs={"notes": "text", "title": "text",
                                            "meta": ["price"]})["train"]["id"][:]
    assert swapped != ids


def test_duplicate_content_over_all_inputs_warns() -> None:
    dsd = _texts(title=["same", "same", "other"], price=[1.0, 1.0, 1.0])
    with pytest.warns(UserWarning, match=r"repeat every input \(title, meta\)"):
        ids = load_multimodal(dsd, inputs={"title": "text", "meta": ["price"]})["train"]["id"]
    assert ids[1] == f"{ids[0]}~1"


def test_tabular_string_spec_takes_a_struct_or_one_column(listing_csv: Path) -> None:
    ds = load_multimodal(listing_csv, inputs=INPUTS, label_column="category",
                         **hf_cache(listing_csv.parent))
    saved = listing_csv.parent / "saved"
    ds.save_to_disk(str(saved))
    again = load_multimodal(saved, id_column="id", inputs={"photo": "image", "meta": "tabular"})
    assert again["train"]["meta"][:] == ds["train"]["meta"][:]
    assert again["train"]["id"][:] == ds["train"]["id"][:]
    single = load_multimodal(listing_csv, inputs={"price": "tabular"}, label_column="category",
                             **hf_cache(listing_csv.parent))
    assert single["train"][0]["price"] == {"price": 10.0}


def test_image_path_template_applies_to_the_one_image_input(tmp_path: Path) -> None:
    for label in ("a", "b"):
        png(tmp_path / "train" / label / "x.png", (5, 5, 5))
    dsd = DatasetDict(train=Dataset.from_dict({"file": ["x.png", "x.png"], "t": ["u", "v"],
                                               "label": ["a", "b"]}))
    ds = load_multimodal(dsd, inputs={"photo": {"modality": "image", "column": "file"},
                                      "t": "text"},
                         image_root=tmp_path, image_path_template="{split}/{label}/{file}")
    assert ds["train"][1]["photo"].getpixel((0, 0)) == (5, 5, 5)
    with pytest.raises(ConfigError, match=r"one image input, but there are 0"):
        load_multimodal(dsd, inputs={"t": "text"}, image_path_template="{file}")


# --- declaration errors -------------------------------------------------------------------


@pytest.mark.parametrize(("inputs", "error", "message"), [
    ({"photo": "imgae"}, UnknownNameError, r"input 'photo'.*Did you mean 'image'"),
    ({"photo": "sound"}, UnknownNameError, r"unknown modality 'sound'.*\['audio', 'image'"),
    ({"label": "text"}, ConfigError, r"'label' is reserved.*label_column="),
    ({"id": "text"}, ConfigError, r"'id' is reserved.*--id-column"),
    ([("title", "text"), ("title", "image")], ConfigError, "'title' is declared twice"),
    ({}, ConfigError, "inputs is empty"),
    ("title", ConfigError, "inputs must map input names"),
    ({"meta": []}, ConfigError, "lists no columns"),
    ({"meta": ["price", "price"]}, ConfigError, r"\['price'\] more than once"),
    ({"meta": {"numeric": ["a"], "categorical": ["a"]}}, ConfigError, "numeric and categorical"),
    ({"meta": {"numerc": ["a"]}}, ConfigError, "Did you mean 'numeric'"),
    ({"meta": {"modality": "image", "numeric": ["a"]}}, ConfigError, "tabular group"),
    ({"photo": {"column": "path"}}, ConfigError, "needs a modality"),
    ({"photo": 3}, ConfigError, "expected a modality name"),
    ({"": "text"}, ConfigError, "non-empty string"),
])
def test_bad_declarations(inputs: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        parse_inputs(inputs)


def test_declarations_that_conflict_with_the_data_or_other_options(listing_csv: Path) -> None:
    options = {"label_column": "category", **hf_cache(listing_csv.parent)}
    with pytest.raises(ConfigError, match="either inputs"):
        load_multimodal(listing_csv, inputs=INPUTS, image_column="photo", **options)
    with pytest.raises(ConfigError, match="reads 'category', the label column"):
        load_multimodal(listing_csv, inputs={"meta": ["price", "category"]}, **options)
    with pytest.raises(DataError, match=(
            r"column 'titel' \(input 'titel'\) not found in split 'train'; available columns: "
            r"\['photo', 'title'.*Did you mean 'title'\?.*inputs=.*--data-option")):
        load_multimodal(listing_csv, inputs={"titel": "text"}, **options)
    with pytest.raises(DataError, match=r"already has a column 'photo'.*rename the input"):
        load_multimodal(listing_csv, inputs={"photo": ["price"]}, **options)


# --- content of the wrong modality --------------------------------------------------------


def test_text_declared_on_numbers_or_image_names(listing_csv: Path) -> None:
    options = {"label_column": "category", **hf_cache(listing_csv.parent)}
    with pytest.raises(InvalidTextError, match=(
            r"column 'year' of split 'train' holds Value\('int64'\) values, not text.*"
            r"tabular input")):
        load_multimodal(listing_csv, inputs={"year": "text"}, **options)
    with pytest.raises(InvalidTextError, match=r"holds image file names such as 'photos/0.png'"):
        load_multimodal(listing_csv, inputs={"photo": "text"}, **options)


def test_image_declared_on_sentences_or_numbers(listing_csv: Path) -> None:
    options = {"label_column": "category", **hf_cache(listing_csv.parent)}
    with pytest.raises(InvalidImageError, match=(
            r"column 'description' of split 'train' is declared as an image input but holds "
            r"text such as 'a fine thing number 0'.*Declare it as a text input")):
        load_multimodal(listing_csv, inputs={"description": "image"}, **options)
    with pytest.raises(InvalidImageError, match=r"column 'year'.*not images"):
        load_multimodal(listing_csv, inputs={"year": "image"}, **options)


def test_tabular_column_of_images_is_refused() -> None:
    dsd = DatasetDict(train=Dataset.from_dict(
        {"pic": [PILImage.new("RGB", (2, 2))] * 2, "label": ["a", "b"]}))
    with pytest.raises(InvalidTabularError, match=r"column 'pic' \(input 'meta'\).*cannot take"):
        load_multimodal(dsd, inputs={"meta": ["pic"]})


def test_non_number_in_a_mostly_numeric_column_names_split_row_and_value() -> None:
    dsd = DatasetDict(
        train=Dataset.from_dict({"price": ["1.5", "2", "3"], "label": ["a", "b", "a"]}),
        test=Dataset.from_dict({"price": ["4", "cheap", None], "label": ["a", "b", "a"]}))
    with pytest.raises(InvalidTabularError, match=(
            r"column 'price' \(input 'meta'\) is numeric \(4 of its 5 values are numbers\), "
            r"but row 1 of split 'test' holds 'cheap', not a number.*'categorical': \['price'\]")):
        load_multimodal(dsd, inputs={"meta": ["price"]})
    # declared categorical, the same column loads
    ds = load_multimodal(dsd, inputs={"meta": {"categorical": ["price"]}})
    assert ds["test"]["meta"][:] == [{"price": "4"}, {"price": "cheap"}, None]
    # mostly words: categorical
    words = DatasetDict(train=Dataset.from_dict({"c": ["x", "y", "3"], "label": ["a", "b", "a"]}))
    assert load_multimodal(words, inputs={"meta": ["c"]})["train"].features["meta"] == {
        "c": Value("string")}


def test_declared_numeric_column_with_a_word_or_infinity() -> None:
    dsd = DatasetDict(train=Dataset.from_dict({"n": ["1", "two"], "label": ["a", "b"]}))
    with pytest.raises(InvalidTabularError, match=r"declared numeric, but row 1.*'two'"):
        load_multimodal(dsd, inputs={"meta": {"numeric": ["n"]}})
    inf = DatasetDict(train=Dataset.from_dict({"n": [1.0, math.inf], "label": ["a", "b"]}))
    with pytest.raises(InvalidTabularError, match=r"row 1 of split 'train' holds inf"):
        load_multimodal(inf, inputs={"meta": ["n"]})


def test_numeric_strings_across_csv_files_name_the_file_row_and_column(tmp_path: Path) -> None:
    write_csv(tmp_path / "train.csv", [{"price": 1.5, "label": "a"}, {"price": 2, "label": "b"}])
    write_csv(tmp_path / "test.csv", [{"price": 3, "label": "a"}, {"price": "cheap",
                                                                   "label": "b"}])
    with pytest.raises(DataError, match=(
            r"column 'price' holds 'cheap' in '.*test.csv' \(split 'test', row 1\), but double "
            r"numbers elsewhere")):
        load_multimodal("csv", data_files={"train": str(tmp_path / "train.csv"),
                                           "test": str(tmp_path / "test.csv")},
                        inputs={"meta": ["price"]}, **hf_cache(tmp_path))
