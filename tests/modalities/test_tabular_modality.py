"""The tabular modality: coercion of one row, kinds over all splits, the struct column."""

from __future__ import annotations

import math

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, Features, Value

from ensemble.exceptions import InvalidTabularError
from ensemble.modalities import ColumnContext, TabularFields, get_modality

TABULAR = get_modality("tabular")


def test_coerce_a_row() -> None:
    row = {"price": "3.5", "n": np.int64(2), "flag": True, "brand": " acme ", "gap": math.nan,
           "none": None}
    assert TABULAR.coerce(row, ident="e") == {"price": 3.5, "n": 2.0, "flag": 1.0,
                                              "brand": "acme", "gap": None, "none": None}
    with pytest.raises(InvalidTabularError, match=r"example 'e' is a list; give a dict"):
        TABULAR.coerce([1, 2], ident="e")
    with pytest.raises(InvalidTabularError, match=r"field 'x' of example 'e' is inf"):
        TABULAR.coerce({"x": float("inf")}, ident="e")
    with pytest.raises(InvalidTabularError, match=r"field 'x' of example 'e' is a list"):
        TABULAR.coerce({"x": [1]}, ident="e")


def test_missing_and_digest() -> None:
    assert TABULAR.is_missing({"a": None, "b": math.nan, "c": ""})
    assert not TABULAR.is_missing({"a": 0.0})
    assert TABULAR.digest({"a": 1.0, "b": "x"}) == TABULAR.digest({"b": "x", "a": 1.0})
    assert TABULAR.digest({"a": 1.0}) != TABULAR.digest({"a": 2.0})


def test_kinds_are_inferred_over_all_splits() -> None:
    features = Features({"n": Value("int64"), "s": Value("string"), "c": ClassLabel(
        names=["lo", "hi"]), "e": Value("null"), "b": Value("bool")})
    splits = {"train": Dataset.from_dict({"n": [1, 2], "s": ["1", "x"], "c": [0, 1],
                                          "e": [None, None], "b": [True, False]},
                                         features=features),
              "test": Dataset.from_dict({"n": [3, None], "s": ["y", None], "c": [1, 1],
                                         "e": [None, None], "b": [False, None]},
                                        features=features)}
    fields = TABULAR.group_fields(splits, {c: c for c in "nsceb"})
    assert fields.kinds == (("n", "numeric"), ("s", "categorical"), ("c", "categorical"),
                            ("e", "numeric"), ("b", "numeric"))
    built = TABULAR.build_column(splits["test"], "meta", fields, "test")
    assert built["meta"][:] == [{"n": 3.0, "s": "y", "c": "hi", "e": None, "b": 0.0},
                                {"n": None, "s": None, "c": "hi", "e": None, "b": None}]
    TABULAR.check_column(built, "meta", "test")


def test_given_kinds_are_kept_and_checked() -> None:
    ds = Dataset.from_dict({"zip": [1234, 5678], "w": ["1.5", "bad"]})
    fields = TABULAR.group_fields({"train": ds}, {"zip": "zip"}, categorical=["zip"])
    assert TABULAR.build_column(ds, "m", fields, "train")["m"][:] == [{"zip": "1234"},
                                                                      {"zip": "5678"}]
    with pytest.raises(InvalidTabularError, match=(
            r"column 'w' \(input 'meta'\) is declared numeric, but row 1 of split 'train' holds "
            r"'bad', not a number")):
        TABULAR.group_fields({"train": ds}, {"w": "w"}, numeric=["w"],
                             context=ColumnContext(input_name="meta"))


def test_fields_feature_and_a_struct_source() -> None:
    fields = TabularFields((("a", "numeric"), ("b", "categorical")))
    assert fields.numeric == ("a",) and fields.categorical == ("b",)
    assert fields.feature() == {"a": Value("float64"), "b": Value("string")}
    struct = Dataset.from_dict({"m": [{"a": 1.0, "b": "x"}, None]},
                               features=Features({"m": fields.feature()}))
    expanded = TABULAR.group_fields({"train": struct}, {"m": "m"})
    assert expanded.names == ("a", "b") and expanded.source("a") == ("m", "a")
    assert TABULAR.build_column(struct, "meta", expanded, "train")["meta"][:] == [
        {"a": 1.0, "b": "x"}, None]


def test_check_column_refuses_other_features() -> None:
    with pytest.raises(InvalidTabularError, match="not a group of numeric"):
        TABULAR.check_column(Dataset.from_dict({"m": [1]}), "m", "train")
