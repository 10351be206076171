"""An expert pointed at a column of another modality fails at once, naming the column."""

from __future__ import annotations

import datasets
import pytest

from ensemble.exceptions import DataError, ModalityError
from ensemble.experts import create_expert

DATA = datasets.Dataset.from_dict({
    "id": ["a", "b"], "title": ["red", "blue"], "meta": [{"p": 1.0}, {"p": 2.0}],
    "path": ["x.png", "y.png"], "label": ["a", "b"]})


@pytest.mark.parametrize(("kind", "checkpoint", "column", "held"), [
    ("sklearn", None, "title", "text values"),
    ("timm", "test_resnet", "meta", "tabular values"),
    ("transformers", "unused", "meta", "tabular values"),
])
def test_a_column_of_another_modality_is_refused(kind: str, checkpoint: str | None,
                                                 column: str, held: str) -> None:
    options = {"pretrained": False} if checkpoint else {}
    expert = create_expert(kind, checkpoint, column=column, labels=["a", "b"], **options)
    with pytest.raises(ModalityError, match=rf"column '{column}' holds {held}.*column=") as info:
        expert.fit(DATA)
    assert kind in str(info.value)


def test_image_paths_in_a_string_column_are_accepted() -> None:
    expert = create_expert("timm", "test_resnet", column="path", labels=["a", "b"],
                           pretrained=False)
    assert expert.present_rows(DATA).tolist() == [True, True]


def test_a_missing_column_names_the_columns_that_exist() -> None:
    expert = create_expert("sklearn", column="metadata", labels=["a", "b"])
    with pytest.raises(DataError, match=r"no column 'metadata'.*'meta'"):
        expert.fit(DATA)


def test_a_tabular_expert_needs_two_classes_among_its_rows() -> None:
    one_class = datasets.Dataset.from_dict({"meta": [{"p": 1.0}, {"p": 2.0}, None],
                                            "label": ["a", "a", "b"]})
    expert = create_expert("sklearn", column="meta", labels=["a", "b"])
    with pytest.raises(DataError, match=r"class 'a'; a classifier needs at least two"):
        expert.fit(one_class)
