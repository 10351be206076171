"""The text modality at load time: an empty column becomes text, blank texts are refused."""

from __future__ import annotations

import pytest
from datasets import Dataset, Features, Value

from ensemble.exceptions import InvalidTextError
from ensemble.modalities import ColumnContext, get_modality, to_text

TEXT = get_modality("text")


def test_a_column_without_values_becomes_missing_text() -> None:
    empty = Dataset.from_dict({"t": [None, None]}, features=Features({"t": Value("float64")}))
    prepared = TEXT.prepare_column(empty, "t", "train")
    assert prepared.features["t"] == Value("string") and prepared["t"][:] == [None, None]
    TEXT.check_column(prepared, "t", "train")


def test_blank_text_names_the_row_and_the_fix() -> None:
    ds = Dataset.from_dict({"t": ["a", " \t"]})
    context = ColumnContext(source="caption", input_name="title",
                            row_name=lambda row: f"example 'e{row}'")
    with pytest.raises(InvalidTextError, match=(
            r"example 'e1' has an empty text in column 'caption' \(input 'title'\) of split "
            r"'train'; fill it in, or set it to None")):
        TEXT.check_column(ds, "t", "train", context)


def test_coerce_and_digest() -> None:
    assert TEXT.coerce(b"caf\xc3\xa9", ident="e") == to_text("café", ident="e") == "café"
    assert TEXT.digest("café") == "café".encode()
    with pytest.raises(InvalidTextError, match="not valid UTF-8"):
        TEXT.coerce(b"\xff", ident="e")
