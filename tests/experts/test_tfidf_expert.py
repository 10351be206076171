"""``TfidfExpert`` (kind ``tfidf``): learning, missing texts, bad input, persistence, recipes.

Also the shared skops loader (``ensemble.experts.sklearn_estimators``) on what a fitted
vectorizer stores. Tiny generated texts keep every test well under a second.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from datasets import Dataset
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, SGDClassifier

from ensemble import FusionPredictor
from ensemble.cli import main
from ensemble.exceptions import (
    ArtifactError,
    ConfigError,
    DataError,
    InvalidTextError,
    ModalityError,
    NotFittedError,
)
from ensemble.experts import TfidfExpert, create_expert, get_expert_class, load_expert
from ensemble.experts.sklearn_estimators import (
    estimator_bytes,
    is_numpy_scalar_type,
    load_estimator,
    refused_types,
)
from ensemble.logits import LogitSet

CLASSES = ["fruit", "animal", "tool"]
WORDS = {"fruit": ["apple", "banana", "cherry", "mango"],
         "animal": ["horse", "tiger", "rabbit", "otter"],
         "tool": ["hammer", "wrench", "chisel", "pliers"]}
FILLER = ["the", "a", "small", "big", "old", "new", "red", "green"]


def _texts(n: int, seed: int) -> tuple[list[str | None], list[str]]:
    """Two filler words and one word of the class (80% of rows; else a random class's word),
    every 7th text missing."""
    rng = np.random.default_rng(seed)
    labels = [CLASSES[k] for k in rng.integers(0, 3, n)]
    texts: list[str | None] = []
    for i, label in enumerate(labels):
        group = WORDS[label] if rng.random() < 0.8 else WORDS[str(rng.choice(CLASSES))]
        words = [str(rng.choice(FILLER)), str(rng.choice(FILLER)), str(rng.choice(group))]
        rng.shuffle(words)
        texts.append(None if i % 7 == 3 else " ".join(words))
    return texts, labels


def _dataset(n: int, seed: int, prefix: str) -> Dataset:
    texts, labels = _texts(n, seed)
    return Dataset.from_dict({"id": [f"{prefix}-{i}" for i in range(n)], "text": texts,
                              "label": labels})


@pytest.fixture(scope="module")
def train() -> Dataset:
    return _dataset(120, 0, "tr")


@pytest.fixture(scope="module")
def test() -> Dataset:
    return _dataset(60, 1, "te")


@pytest.fixture(scope="module")
def fitted(train: Dataset) -> TfidfExpert:
    return create_expert("tfidf", None, column="text", labels=CLASSES).fit(train)


def _accuracy(expert: TfidfExpert, dataset: Dataset) -> float:
    present = expert.present_rows(dataset)
    logits = expert.predict_logits(dataset)
    return float((logits[present].argmax(axis=1) == expert.encode_labels(dataset)[present]).mean())


# -- learning -------------------------------------------------------------------------------


def test_the_kind_is_registered_and_torch_free(fitted: TfidfExpert) -> None:
    assert get_expert_class("tfidf") is TfidfExpert
    assert fitted.registry_name == "tfidf" and fitted.modality == "text" and fitted.torch_free
    assert fitted.hyper_parameters() == {
        "analyzer": "char_wb", "ngram_range": [1, 4], "max_features": 50000,
        "lowercase": True, "estimator": None, "estimator_params": {}}
    classifier = fitted.pipeline_.named_steps["classifier"]
    assert isinstance(classifier, LogisticRegression) and classifier.C == 10.0


@pytest.mark.parametrize("options", [
    {},
    {"analyzer": "word", "ngram_range": [1, 2]},   # a list, as a recipe gives it
    {"estimator": "sklearn.naive_bayes.ComplementNB"},
    {"estimator": SGDClassifier(loss="log_loss", random_state=0), "max_features": 200},
], ids=["default", "word", "dotted-path", "instance"])
def test_it_learns_the_class_words(options: dict[str, Any], train: Dataset,
                                   test: Dataset) -> None:
    expert = create_expert("tfidf", column="text", labels=CLASSES, **options).fit(train)
    assert _accuracy(expert, test) > 0.75  # chance is 1/3; 80% of texts name their class
    assert expert.trained_on_  # the leakage guard knows the training rows
    if "max_features" in options:
        assert expert.vocabulary_size_ <= 200
        assert not hasattr(options["estimator"], "coef_")  # the instance is cloned


def test_missing_texts_get_zero_logits_and_are_absent(fitted: TfidfExpert, test: Dataset) -> None:
    values = ["an apple", None, "a tiger", None]
    logits, features = fitted.predict_logits(values, return_features=True)
    np.testing.assert_array_equal(fitted.present_rows(values), [True, False, True, False])
    np.testing.assert_array_equal(logits[[1, 3]], 0.0)
    np.testing.assert_array_equal(features[[1, 3]], 0.0)
    assert logits.dtype == np.float32 and features.shape == (4, len(CLASSES))
    assert logits[[0, 2]].argmax(axis=1).tolist() == [0, 1]
    np.testing.assert_allclose(np.exp(logits[[0, 2]]).sum(axis=1), 1.0, atol=1e-5)
    expected = [text is not None for text in test["text"]]
    np.testing.assert_array_equal(fitted.present_rows(test), expected)
    logit_set = LogitSet.from_experts({"words": fitted}, test, split="test")
    np.testing.assert_array_equal(logit_set.present("words"), expected)


# -- bad input ------------------------------------------------------------------------------


def test_bad_texts_are_refused_with_the_row_and_value(fitted: TfidfExpert) -> None:
    with pytest.raises(InvalidTextError, match=r"row 1 of column 'text' is a int \(42\).*None"):
        fitted.predict_logits(["apple", 42])
    with pytest.raises(InvalidTextError, match=r"row 0 of column 'text' is an empty text "
                                               r"\(' '\).*None to mark"):
        fitted.predict_logits([" "])
    with pytest.raises(ModalityError, match="column 'text' holds"):
        fitted.fit(Dataset.from_dict({"text": [1, 2], "label": ["fruit", "tool"]}))


@pytest.mark.parametrize(("options", "error", "message"), [
    ({"analyzer": "words"}, ConfigError, r"analyzer 'words' is not one of .*'char_wb'"),
    ({"ngram_range": (3, 1)}, ConfigError, r"ngram_range \(3, 1\) must be two integers"),
    ({"ngram_range": 4}, ConfigError, r"ngram_range 4 must be two integers"),
    ({"max_features": 0}, ConfigError, r"max_features 0 must be a positive integer"),
    ({"estimator": "sklearn.linear_model.LinearRegression"}, ConfigError,
     "not a scikit-learn classifier with predict_proba"),
    ({"estimator": "sklearn.svm.LinearSVC"}, ConfigError, "LinearSVC is not a scikit-learn "
                                                          "classifier with predict_proba"),
    ({"estimator": "os.system"}, ConfigError, "must be a scikit-learn classifier's dotted path"),
])
def test_bad_options_are_refused_at_fit(options: dict[str, Any], error: type, message: str,
                                        train: Dataset) -> None:
    expert = create_expert("tfidf", column="text", labels=CLASSES, **options)  # only stores
    with pytest.raises(error, match=message):
        expert.fit(train)


@pytest.mark.parametrize(("texts", "labels", "message"), [
    ([None, None], ["fruit", "tool"], r"no training example has a 'text' text"),
    ([], [], r"no training example has a 'text' text"),
    (["apple", "mango", None], ["fruit", "fruit", "tool"], r"the class 'fruit'.*two classes"),
    (["a", "b", "c"], ["fruit", "tool", "fruit"], r"'word' analyzer finds no n-gram.*'a'"),
], ids=["all-missing", "no-rows", "one-class", "empty-vocabulary"])
def test_unusable_training_data_is_refused(texts: list[str | None], labels: list[str],
                                           message: str) -> None:
    data = Dataset.from_dict({"text": texts, "label": labels}, features=_string_features())
    expert = create_expert("tfidf", column="text", labels=CLASSES, analyzer="word")
    with pytest.raises(DataError, match=message):
        expert.fit(data)


def _string_features() -> Any:
    from datasets import Features, Value

    return Features({"text": Value("string"), "label": Value("string")})


def test_unfitted_and_training_arguments_are_refused(train: Dataset) -> None:
    expert = create_expert("tfidf", column="text", labels=CLASSES)
    with pytest.raises(NotFittedError, match="call fit"):
        expert.predict_logits(["apple"])
    with pytest.raises(ConfigError, match="takes no training arguments"):
        expert.fit(train, epochs=3)
    with pytest.raises(ConfigError, match="has no option"):
        create_expert("tfidf", column="text", labels=CLASSES, max_length=32)


# -- persistence ----------------------------------------------------------------------------


@pytest.mark.parametrize("options", [{}, {"analyzer": "word", "ngram_range": (1, 2),
                                          "lowercase": False}], ids=["char_wb", "word"])
def test_save_and_load_give_identical_logits(options: dict[str, Any], train: Dataset,
                                             test: Dataset, tmp_path: Path) -> None:
    expert = create_expert("tfidf", column="text", labels=CLASSES, **options).fit(train)
    folder = expert.save_pretrained(tmp_path / "words")
    assert sorted(p.name for p in folder.iterdir()) == ["ensemble.json", "pipeline.skops"]
    again = load_expert(folder)
    assert isinstance(again, TfidfExpert) and again.hyper_parameters() == \
        expert.hyper_parameters()
    assert again.fingerprint() == expert.fingerprint()
    vocabulary = expert.pipeline_.named_steps["tfidf"].vocabulary_
    assert again.pipeline_.named_steps["tfidf"].vocabulary_ == vocabulary
    for data in (test, ["APPLE pie", "an unseen zebra", None]):
        np.testing.assert_array_equal(again.predict_logits(data), expert.predict_logits(data))
    np.testing.assert_array_equal(again.present_rows(test), expert.present_rows(test))


@pytest.fixture
def saved(fitted: TfidfExpert, tmp_path: Path) -> Path:
    return fitted.save_pretrained(tmp_path / "words")


def _drop_fingerprint(folder: Path) -> None:
    """Whoever crafted a file wrote the metadata too: no fingerprint to check it against."""
    metadata = json.loads((folder / "ensemble.json").read_text())
    del metadata["fingerprint"]
    (folder / "ensemble.json").write_text(json.dumps(metadata))


def _exec_payload(marker: Path) -> bytes:
    """A skops file whose only node calls ``builtins.exec`` with code while it loads."""
    code = json.dumps(f"open({str(marker)!r}, 'w').write('ran')")
    schema = {"__class__": "exec", "__module__": "builtins",
              "__loader__": "ConstructorFromReduceNode", "__id__": 1,
              "content": {"__class__": "tuple", "__module__": "builtins",
                          "__loader__": "TupleNode", "__id__": 2,
                          "content": [{"__class__": "str", "__module__": "builtins",
                                       "__loader__": "JsonNode", "content": code,
                                       "is_json": True, "__id__": 3}]},
              "protocol": 2, "_skops_version": "0.16.0"}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("schema.json", json.dumps(schema))
    return buffer.getvalue()


def test_a_replaced_pipeline_file_is_refused(saved: Path, train: Dataset,
                                             tmp_path: Path) -> None:
    other = create_expert("tfidf", column="text", labels=CLASSES, analyzer="word").fit(train)
    other_folder = other.save_pretrained(tmp_path / "other")
    (saved / "pipeline.skops").write_bytes((other_folder / "pipeline.skops").read_bytes())
    with pytest.raises(ArtifactError, match=r"pipeline\.skops does not match the fingerprint"):
        load_expert(saved)


def test_a_damaged_or_missing_pipeline_file_is_refused(saved: Path) -> None:
    (saved / "pipeline.skops").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ArtifactError, match="does not match the fingerprint"):
        load_expert(saved)
    _drop_fingerprint(saved)
    with pytest.raises(ArtifactError, match=r"pipeline\.skops is not a skops file"):
        load_expert(saved)
    (saved / "pipeline.skops").unlink()
    with pytest.raises(ArtifactError, match=r"pipeline\.skops is missing"):
        load_expert(saved)


def test_a_file_that_would_run_code_is_refused_before_loading(saved: Path,
                                                              tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    (saved / "pipeline.skops").write_bytes(_exec_payload(marker))
    _drop_fingerprint(saved)
    with pytest.raises(ArtifactError, match=r"not scikit-learn classes: \['builtins.exec'\]"):
        load_expert(saved)
    assert not marker.exists()


def test_a_file_holding_something_else_is_refused(saved: Path) -> None:
    model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    (saved / "pipeline.skops").write_bytes(estimator_bytes(model))
    _drop_fingerprint(saved)
    with pytest.raises(ArtifactError, match=r"holds a LogisticRegression, not the fitted "
                                            r"Pipeline\(tfidf, classifier\)"):
        load_expert(saved)


def test_numpy_data_types_are_trusted_and_functions_are_not() -> None:
    assert is_numpy_scalar_type("numpy.float64") and is_numpy_scalar_type("numpy.float32")
    assert not is_numpy_scalar_type("numpy.load") and not is_numpy_scalar_type("numpy.ndarray")
    assert refused_types(["numpy.float64", "sklearn.feature_extraction.text.TfidfVectorizer",
                          "numpy.load", "builtins.exec", "numpy.lib.npyio.load"]) == [
        "numpy.load", "builtins.exec", "numpy.lib.npyio.load"]
    vectorizer = TfidfVectorizer(analyzer="char_wb", dtype=np.float32).fit(["ab cd", "ef"])
    again = load_estimator(estimator_bytes(vectorizer), "vectorizer.skops")
    assert again.vocabulary_ == vectorizer.vocabulary_ and again.dtype is np.float32


# -- recipes --------------------------------------------------------------------------------

RECIPE = """
name: tfidf_run
data: {source: synthetic, options: {n_train: 48, n_validation: 32, n_test: 32}}
experts:
  chars: {type: tfidf, column: text}
  words:
    type: tfidf
    column: text
    options: {analyzer: word, ngram_range: [1, 1], estimator_params: {C: 5.0}}
combiners: [voting]
evaluation: {bootstrap: 10, plots: false}
"""


def test_a_recipe_runs_tfidf_experts_into_a_bundle(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "tfidf.yaml"
    recipe.write_text(RECIPE)
    run_dir = tmp_path / "run"
    assert main(["run", str(recipe), "--run-dir", str(run_dir), "-q"]) == 0
    capsys.readouterr()
    metadata = json.loads((run_dir / "experts" / "words" / "ensemble.json").read_text())
    assert metadata["kind"] == "tfidf" and metadata["params"]["ngram_range"] == [1, 1]
    assert metadata["params"]["estimator_params"] == {"C": 5.0}
    predictor = FusionPredictor.load(run_dir / "bundle")
    assert {type(e) for e in predictor.experts.values()} == {TfidfExpert}
    texts = ["apple anchor", "a quiet river"]
    proba = predictor.predict_proba({"text": texts})
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    words = load_expert(run_dir / "experts" / "words")
    np.testing.assert_array_equal(predictor.experts["words"].predict_logits(texts),
                                  words.predict_logits(texts))
