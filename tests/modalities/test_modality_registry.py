"""The modality registry, the contract every registered modality keeps, and a plugin modality
that the data layer accepts without any change to it."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from collections.abc import Iterator
from typing import Any

import pytest
from datasets import Audio, Dataset, DatasetDict, Image, Value

import ensemble.data
import ensemble.modalities
from ensemble.data import load_multimodal
from ensemble.exceptions import ConfigError, DataError, ModalityError, UnknownNameError
from ensemble.modalities import (
    MODALITIES,
    ColumnContext,
    Modality,
    get_modality,
    list_modalities,
    modality_of,
    register_modality,
)

#: A present value, the feature it is stored as, and the coerced value, per built-in modality.
EXAMPLES: dict[str, tuple[Any, Any]] = {
    "text": ("a red circle", Value("string")),
    "tabular": ({"price": 1.5, "brand": "acme"}, {"price": Value("float64"),
                                                  "brand": Value("string")}),
}


def test_registry_lists_and_resolves_the_built_in_modalities() -> None:
    assert list_modalities() == ["audio", "image", "tabular", "text"]
    assert get_modality("image") is get_modality("image")  # one stateless instance
    assert get_modality("tabular").column_group and not get_modality("text").column_group
    assert repr(get_modality("text")) == "TextModality(name='text')"


def test_unknown_names_suggest_close_matches() -> None:
    with pytest.raises(UnknownNameError, match=r"unknown modality 'txet'\. Did you mean 'text'"):
        get_modality("txet")
    with pytest.raises(UnknownNameError,
                       match=r"Registered: \['audio', 'image', 'tabular', 'text'\]"):
        get_modality("video")


def test_modality_of_a_feature() -> None:
    assert modality_of(Image()) == "image"
    assert modality_of(Audio()) == "audio"
    assert modality_of(Value("large_string")) == "text"
    assert modality_of({"a": Value("float64"), "b": Value("string")}) == "tabular"
    with pytest.raises(ModalityError, match=r"no registered modality.*int64"):
        modality_of(Value("int64"))


@pytest.mark.parametrize("name", ["audio", "image", "tabular", "text"])
def test_every_modality_keeps_the_contract(name: str) -> None:
    modality = get_modality(name)
    assert isinstance(modality, Modality) and modality.name == name
    assert modality.is_missing(None) and modality.is_missing(float("nan"))
    if name in EXAMPLES:
        value, feature = EXAMPLES[name]
        assert modality.matches(feature) and not modality.matches(Value("int64"))
        assert not modality.is_missing(value)
        assert modality.coerce(value, ident="x") == value
        assert isinstance(modality.digest(value), bytes)
        assert modality.digest(value) == modality.digest(modality.coerce(value, ident="x"))


def test_group_methods_refuse_single_column_modalities() -> None:
    with pytest.raises(ModalityError, match="reads one column"):
        get_modality("text").group_fields({}, {})
    with pytest.raises(ModalityError, match="reads one column"):
        get_modality("image").build_column(None, "x", None, "train")


def test_a_name_cannot_be_taken_twice() -> None:
    with pytest.raises(ConfigError, match="already taken"):
        @register_modality("text")
        class Other(Modality):  # pragma: no cover - refused at registration
            pass


# -- a plugin modality: one class and its registration, nothing else ------------------------


@pytest.fixture
def upper_modality() -> Iterator[type[Modality]]:
    @register_modality("shout")
    class Shout(Modality):
        """Words stored as strings that must be upper case."""

        def matches(self, feature: Any) -> bool:
            return getattr(feature, "dtype", None) == "string"

        def coerce(self, value: Any, ident: str) -> str:
            return str(value).upper()

        def digest(self, value: Any) -> bytes:
            return str(value).encode()

        def check_column(self, dataset: Any, column: str, split: str,
                         context: ColumnContext | None = None) -> None:
            context = context or ColumnContext(source=column)
            for row, value in enumerate(dataset[column]):
                if value is not None and value != value.upper():
                    raise DataError(f"{context.row(split, row)} is not shouted: {value!r}")

    yield Shout
    MODALITIES.unregister("shout")


def test_a_new_modality_is_one_class_and_its_registration(
        upper_modality: type[Modality]) -> None:
    dsd = DatasetDict(train=Dataset.from_dict({"cry": ["HEY", None, "HO"], "label": list("aba")}))
    ds = load_multimodal(dsd, inputs={"cry": "shout"})
    assert ds["train"].column_names == ["id", "label", "cry"]
    assert ds["train"]["cry"][:] == ["HEY", None, "HO"]
    bad = DatasetDict(train=Dataset.from_dict({"cry": ["HEY", "ho"], "label": list("ab")}))
    with pytest.raises(DataError, match=r"row 1 of split 'train' is not shouted: 'ho'"):
        load_multimodal(bad, inputs={"cry": "shout"})


# -- the modules' own examples run -------------------------------------------------------------


def _modules(package: Any) -> Iterator[str]:
    yield package.__name__
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
        yield info.name


@pytest.mark.parametrize("module", [*_modules(ensemble.modalities), *_modules(ensemble.data)])
def test_docstring_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
