"""LabelSpace: the one owner of class names, label encoding and softmax."""

from __future__ import annotations

import datasets
import numpy as np
import pytest

from ensemble.exceptions import ClassMismatchError, ConfigError, DataError, LabelError
from ensemble.labels import LabelSpace, log_softmax, softmax


def test_encode_names_indices_and_mixes() -> None:
    space = LabelSpace(["cat", "dog", "eel"])
    assert space.encode(["eel", "cat", 1]).tolist() == [2, 0, 1]
    assert space.encode(np.array([2, 0])).tolist() == [2, 0]
    assert space.encode(np.array([1.0, 2.0])).tolist() == [1, 2]
    assert space.decode([2, 0]).tolist() == ["eel", "cat"]
    assert space.index("dog") == 1 and "dog" in space and len(space) == 3


@pytest.mark.parametrize(("values", "message"), [
    (["cat", "Dog"], r"label 'Dog' of example 'b' .*Did you mean 'dog'\?"),
    ([0, 3], r"label 3 of example 'b'"),
    (np.array([0.0, 1.5]), r"label 1.5 is not an integer class index"),
    (np.array([0, -1]), r"label -1"),
])
def test_unknown_labels_name_the_value_and_the_example(values, message: str) -> None:
    with pytest.raises(LabelError, match=message):
        LabelSpace(["cat", "dog"]).encode(values, ids=["a", "b"])


@pytest.mark.parametrize(("names", "error"), [
    (["a"], ClassMismatchError), (["a", "a"], ConfigError), ("ab", ConfigError),
    (["a", ""], ConfigError),
])
def test_invalid_label_spaces(names, error: type) -> None:
    with pytest.raises(error):
        LabelSpace(names)


def test_class_label_columns_are_matched_by_name() -> None:
    feature = datasets.ClassLabel(names=["dog", "cat"])  # another order than the space
    data = datasets.Dataset.from_dict({"id": ["x", "y"], "label": [0, 1]},
                                      features=datasets.Features({
                                          "id": datasets.Value("string"), "label": feature}))
    assert LabelSpace(["cat", "dog"]).encode_column(data).tolist() == [1, 0]
    with pytest.raises(ClassMismatchError, match="'dog'"):
        LabelSpace(["cat", "eel"]).encode_column(data)
    with pytest.raises(DataError, match="no label column 'target'"):
        LabelSpace(["cat", "dog"]).encode_column(data, "target")
    assert LabelSpace.from_dataset(data).names == ("dog", "cat")


def test_permutation_reorders_columns_by_name() -> None:
    space = LabelSpace(["a", "b", "c"])
    other = ["c", "a", "b"]
    array = np.array([[3.0, 1.0, 2.0]])  # in other's order: c=3, a=1, b=2
    assert array[:, space.permutation(other)].tolist() == [[1.0, 2.0, 3.0]]
    with pytest.raises(ClassMismatchError, match="missing"):
        space.permutation(["a", "b", "d"])


def test_softmax_is_stable_and_normalised() -> None:
    logits = np.array([[1000.0, 1000.0, -1000.0], [0.0, 1.0, 2.0]])
    proba = softmax(logits, axis=1)
    assert np.allclose(proba.sum(axis=1), 1.0) and np.isfinite(proba).all()
    assert np.allclose(proba[0], [0.5, 0.5, 0.0])
    assert np.allclose(np.exp(log_softmax(logits, axis=1)), proba)
    assert LabelSpace.from_dict(LabelSpace(["a", "b"]).to_dict()) == LabelSpace(["a", "b"])
