"""``TabularExpert`` (kind ``sklearn``): learning, missing values, estimators, persistence."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from datasets import Dataset
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from threadpoolctl import threadpool_limits

from ensemble.exceptions import (
    ArtifactError,
    ConfigError,
    InvalidTabularError,
    NotFittedError,
)
from ensemble.experts import TabularExpert, create_expert, load_expert
from ensemble.logits import LogitSet

CLASSES = ["low", "mid", "high"]
SHAPES = ["round", "square", "flat"]


@pytest.fixture(scope="module", autouse=True)
def _one_openmp_thread() -> Iterator[None]:
    """HistGradientBoosting's OpenMP threads spin against each other on a busy 2-core
    machine (12 s instead of 0.2 s for 150 rows); tiny tables need one."""
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


def _rows(n: int, seed: int) -> tuple[list[dict[str, Any] | None], list[str]]:
    """``x`` ~ class + noise, ``shape`` names the class 75% of the time, ``noise`` is noise;
    some fields are NaN or None, every 10th group is missing."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    rows: list[dict[str, Any] | None] = []
    for i, k in enumerate(labels):
        row: dict[str, Any] = {
            "x": float(k + rng.normal(0, 0.4)),
            "shape": SHAPES[k] if rng.random() < 0.75 else str(rng.choice(SHAPES)),
            "noise": float(rng.normal()),
        }
        if i % 6 == 1:
            row["x"] = float("nan")
        if i % 8 == 2:
            row["shape"] = None
        rows.append(None if i % 10 == 5 else row)
    return rows, [CLASSES[k] for k in labels]


def _dataset(n: int, seed: int, prefix: str) -> Dataset:
    rows, labels = _rows(n, seed)
    return Dataset.from_dict({"id": [f"{prefix}-{i}" for i in range(n)], "meta": rows,
                              "label": labels})


@pytest.fixture(scope="module")
def train() -> Dataset:
    return _dataset(150, 0, "tr")


@pytest.fixture(scope="module")
def test() -> Dataset:
    return _dataset(60, 1, "te")


def _accuracy(expert: TabularExpert, dataset: Dataset) -> float:
    present = expert.present_rows(dataset)
    y = expert.encode_labels(dataset)
    logits = expert.predict_logits(dataset)
    return float((logits[present].argmax(axis=1) == y[present]).mean())


@pytest.fixture(scope="module")
def fitted(train: Dataset) -> TabularExpert:
    return create_expert("sklearn", column="meta", labels=CLASSES,
                         estimator_params={"max_iter": 40}).fit(train)


# -- learning -------------------------------------------------------------------------------


def test_the_default_estimator_learns_numeric_and_categorical_fields(
        fitted: TabularExpert, test: Dataset) -> None:
    assert fitted.kinds_ == {"x": "numeric", "shape": "categorical", "noise": "numeric"}
    assert fitted.categories_ == {"shape": sorted(SHAPES)}
    assert fitted.native_nan_
    assert _accuracy(fitted, test) > 0.8  # chance is 1/3


def test_estimator_params_reach_the_default_estimator_too(train: Dataset) -> None:
    expert = TabularExpert(column="meta", labels=CLASSES, estimator_params={"max_iter": 7})
    assert expert.fit(train).estimator_.max_iter == 7


def test_a_categorical_field_alone_is_learnt_and_unseen_categories_are_missing() -> None:
    shapes = [SHAPES[i % 3] for i in range(60)]
    train = Dataset.from_dict({"meta": [{"shape": s} for s in shapes],
                               "label": [CLASSES[i % 3] for i in range(60)]})
    expert = create_expert("sklearn", column="meta", labels=CLASSES,
                           estimator_params={"max_iter": 20}).fit(train)
    logits = expert.predict_logits([{"shape": "flat"}, {"shape": "round"}, {"shape": "oval"}])
    assert logits[:2].argmax(axis=1).tolist() == [2, 0]
    assert np.isfinite(logits).all()


def test_missing_fields_predict_and_missing_groups_get_zero_logits(fitted: TabularExpert) -> None:
    values = [{"x": float("nan"), "shape": "flat", "noise": None}, None,
              {"x": None, "shape": None, "noise": None}, {"x": 2.0}]
    logits = fitted.predict_logits(values)
    np.testing.assert_array_equal(fitted.present_rows(values), [True, False, False, True])
    assert np.isfinite(logits).all()
    np.testing.assert_array_equal(logits[[1, 2]], 0.0)
    assert logits[[0, 3]].argmax(axis=1).tolist() == [2, 2]
    np.testing.assert_allclose(np.exp(logits[[0, 3]]).sum(axis=1), 1.0, atol=1e-5)


def test_a_logit_set_masks_the_missing_groups(fitted: TabularExpert, test: Dataset) -> None:
    logits = LogitSet.from_experts({"meta": fitted}, test, split="test")
    expected = [row is not None for row in test["meta"]]
    np.testing.assert_array_equal(logits.present("meta"), expected)
    assert not all(expected)


@pytest.mark.parametrize("estimator", [LogisticRegression(max_iter=500),
                                       "sklearn.linear_model.LogisticRegression"],
                         ids=["instance", "dotted-path"])
def test_an_estimator_without_nan_support_gets_imputed_one_hot_inputs(
        estimator: Any, train: Dataset, test: Dataset) -> None:
    expert = create_expert("sklearn", column="meta", labels=CLASSES, estimator=estimator,
                           estimator_params={"C": 10.0}).fit(train)
    assert not expert.native_nan_
    assert isinstance(expert.estimator_, LogisticRegression) and expert.estimator_.C == 10.0
    assert _accuracy(expert, test) > 0.8
    if not isinstance(estimator, str):
        assert not hasattr(estimator, "coef_")  # the given instance is cloned, not fitted


@pytest.mark.parametrize(("estimator", "message"), [
    ("sklearn.linear_model.LinearRegression", "not a scikit-learn classifier"),
    ("os.system", "must be a scikit-learn classifier's dotted path"),
    ("sklearn.linear_model.NoSuchModel", "cannot be imported"),
])
def test_bad_estimators_are_refused(estimator: str, message: str, train: Dataset) -> None:
    with pytest.raises(ConfigError, match=message):
        create_expert("sklearn", column="meta", labels=CLASSES, estimator=estimator).fit(train)


# -- bad input ------------------------------------------------------------------------------


def test_a_string_in_a_numeric_field_names_the_field_row_and_value(
        fitted: TabularExpert) -> None:
    with pytest.raises(InvalidTabularError,
                       match=r"field 'x' of column 'meta', row 2, is 'cheap'.*give a number"):
        fitted.predict_logits([None, {"x": 1.0}, {"x": "cheap"}])


def test_a_field_mixing_numbers_and_strings_is_refused_at_fit() -> None:
    train = Dataset.from_dict({"meta": [{"x": "1.5"}, {"x": "n/a"}], "label": ["low", "mid"]})
    mixed = [{"x": 1.5}, {"x": "n/a"}]
    expert = create_expert("sklearn", column="meta", labels=CLASSES)
    with pytest.raises(InvalidTabularError, match=r"field 'x' .* mixes numbers and strings"):
        expert._learn_encoding(mixed)
    assert expert.fit(train).kinds_ == {"x": "categorical"}  # all strings: a category


def test_a_row_that_is_not_a_mapping_is_refused(fitted: TabularExpert) -> None:
    with pytest.raises(InvalidTabularError, match=r"row 1 of column 'meta' is a str"):
        fitted.predict_logits([{"x": 1.0}, "x=1"])


def test_boolean_fields_are_numbers() -> None:
    train = Dataset.from_dict({"meta": [{"flag": i % 2 == 0} for i in range(40)],
                               "label": [CLASSES[i % 2] for i in range(40)]})
    expert = create_expert("sklearn", column="meta", labels=CLASSES,
                           estimator="sklearn.linear_model.LogisticRegression").fit(train)
    assert expert.predict_logits([{"flag": True}, {"flag": False}]).argmax(axis=1).tolist() \
        == [0, 1]


def test_unfitted_and_training_arguments_are_refused(train: Dataset) -> None:
    expert = create_expert("sklearn", column="meta", labels=CLASSES)
    with pytest.raises(NotFittedError, match="call fit"):
        expert.predict_logits([{"x": 1.0}])
    with pytest.raises(ConfigError, match="estimator_params"):
        expert.fit(train, epochs=3)


# -- persistence ----------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", [None, "sklearn.linear_model.LogisticRegression"],
                         ids=["hist-gradient-boosting", "logistic-regression"])
def test_save_and_load_give_identical_logits(estimator: str | None, train: Dataset,
                                             test: Dataset, tmp_path: Path) -> None:
    expert = create_expert("sklearn", column="meta", labels=CLASSES, estimator=estimator,
                           estimator_params={"max_iter": 40}).fit(train)
    folder = expert.save_pretrained(tmp_path / "meta")
    assert sorted(p.name for p in folder.iterdir()) == ["encoding.json", "ensemble.json",
                                                        "estimator.skops"]
    again = load_expert(folder)
    assert isinstance(again, TabularExpert) and again.column == "meta"
    assert again.fingerprint() == expert.fingerprint()
    np.testing.assert_array_equal(again.predict_logits(test), expert.predict_logits(test))
    np.testing.assert_array_equal(again.present_rows(test), expert.present_rows(test))


@pytest.fixture
def saved(fitted: TabularExpert, tmp_path: Path) -> Path:
    return fitted.save_pretrained(tmp_path / "meta")


def test_a_replaced_estimator_file_is_refused(saved: Path, train: Dataset,
                                              tmp_path: Path) -> None:
    other = create_expert("sklearn", column="meta", labels=CLASSES,
                          estimator_params={"max_iter": 5}).fit(train)
    other_folder = other.save_pretrained(tmp_path / "other")
    (saved / "estimator.skops").write_bytes((other_folder / "estimator.skops").read_bytes())
    with pytest.raises(ArtifactError, match="does not match the fingerprint"):
        load_expert(saved)


def test_a_damaged_estimator_file_is_refused(saved: Path) -> None:
    (saved / "estimator.skops").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ArtifactError, match=r"estimator\.skops"):
        load_expert(saved)
    (saved / "estimator.skops").unlink()
    with pytest.raises(ArtifactError, match=r"estimator\.skops is missing"):
        load_expert(saved)


def test_an_edited_encoding_is_refused(saved: Path) -> None:
    encoding = json.loads((saved / "encoding.json").read_text())
    encoding["categories"]["shape"].reverse()
    (saved / "encoding.json").write_text(json.dumps(encoding))
    with pytest.raises(ArtifactError, match="does not match the fingerprint"):
        load_expert(saved)


def _double(values: Any) -> Any:
    return np.asarray(values) * 2.0


def test_a_type_outside_scikit_learn_loads_only_when_trusted(train: Dataset, test: Dataset,
                                                             tmp_path: Path) -> None:
    pipeline = make_pipeline(FunctionTransformer(_double), LogisticRegression(max_iter=500))
    expert = create_expert("sklearn", column="meta", labels=CLASSES,
                           estimator=pipeline).fit(train)
    folder = expert.save_pretrained(tmp_path / "meta")
    name = f"{_double.__module__}._double"
    with pytest.raises(ArtifactError, match=rf"not scikit-learn classes: \['{name}'\].*"
                                            rf"trusted_types=\['{name}'\]"):
        load_expert(folder)
    again = load_expert(folder, trusted_types=[name])
    np.testing.assert_array_equal(again.predict_logits(test), expert.predict_logits(test))


def _exec_payload(marker: Path) -> bytes:
    """A skops file whose only node calls ``builtins.exec`` with code while it loads."""
    code = f"open({str(marker)!r}, 'w').write('ran')"
    schema = {
        "__class__": "exec", "__module__": "builtins",
        "__loader__": "ConstructorFromReduceNode", "__id__": 1,
        "content": {"__class__": "tuple", "__module__": "builtins", "__loader__": "TupleNode",
                    "__id__": 2, "content": [{
                        "__class__": "str", "__module__": "builtins", "__loader__": "JsonNode",
                        "content": json.dumps(code), "is_json": True, "__id__": 3}]},
        "protocol": 2, "_skops_version": "0.16.0",
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("schema.json", json.dumps(schema))
    return buffer.getvalue()


def test_a_file_that_would_run_code_is_refused_before_loading(saved: Path,
                                                              tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    (saved / "estimator.skops").write_bytes(_exec_payload(marker))
    metadata = json.loads((saved / "ensemble.json").read_text())
    del metadata["fingerprint"]  # whoever crafted the file wrote the metadata too
    (saved / "ensemble.json").write_text(json.dumps(metadata))
    with pytest.raises(ArtifactError, match=r"not scikit-learn classes: \['builtins.exec'\]"):
        load_expert(saved)
    assert not marker.exists()
