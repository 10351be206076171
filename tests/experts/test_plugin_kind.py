"""Issue 10's acceptance test: a new expert kind is one class plus ``@register_expert``.

The kind below (a bag-of-words nearest-centroid classifier over a text column) is defined
here, in the test, and runs through every layer without any library file knowing it:
``create_expert``, ``fit``, ``LogitSet.from_experts`` (beside a scikit-learn tabular
expert), every registered combiner, ``FusionPredictor`` predict/explain with missing inputs,
``save`` and ``FusionPredictor.load``, and a recipe's ``type:``.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from datasets import Dataset
from safetensors.numpy import load_file, save_file
from threadpoolctl import threadpool_limits

from ensemble import FusionPredictor
from ensemble.combiners import create_combiner, get_combiner_class, list_combiners
from ensemble.exceptions import ConfigError, LeakageError, UnknownNameError
from ensemble.experts import (
    EXPERTS,
    Expert,
    create_expert,
    list_experts,
    load_expert,
    register_expert,
)
from ensemble.fingerprints import dataset_fingerprint
from ensemble.labels import LabelSpace
from ensemble.logits import LogitSet
from ensemble.recipe import recipe_from_dict

KIND = "test_centroid"
CLASSES = ["red", "green", "blue"]
FILLER = ["circle", "square", "big", "small", "happy", "sad", "cat", "dog"]
_VOCABULARY = "vocabulary.json"
_CENTROIDS = "centroids.safetensors"


@pytest.fixture(scope="module", autouse=True)
def _one_openmp_thread() -> Iterator[None]:
    """HistGradientBoosting's OpenMP threads spin against each other on a busy 2-core
    machine (12 s instead of 0.2 s for 150 rows); tiny tables need one."""
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


def _define_kind() -> type[Expert]:
    """The plugin, as a user would write it in its own file."""

    @register_expert(KIND)
    class WordCentroidExpert(Expert):
        """Nearest centroid over L2-normalised word counts of a text column."""

        modality = "text"

        def __init__(self, *, column: str, labels: LabelSpace | Sequence[str],
                     scale: float = 8.0, seed: int = 0) -> None:
            super().__init__(column=column, labels=labels, seed=seed)
            self.scale = scale

        def _texts(self, data: Any) -> list[str | None]:
            if isinstance(data, (list, tuple)):
                return list(data)
            self.require_column(data)
            return list(data[self.column])

        def _bags(self, texts: Sequence[str | None]) -> np.ndarray:
            index = {word: i for i, word in enumerate(self.vocabulary_)}
            bags = np.zeros((len(texts), len(index)), dtype=np.float32)
            for row, text in enumerate(texts):
                for word in (text or "").split():
                    if word in index:
                        bags[row, index[word]] += 1.0
            return bags / np.maximum(np.linalg.norm(bags, axis=1, keepdims=True), 1e-12)

        def fit(self, train: Any, eval_dataset: Any | None = None, *, config: Any = None,
                label_column: str = "label", **train_args: Any) -> WordCentroidExpert:
            labels = self.encode_labels(train, label_column)
            texts = self._texts(train)
            keep = [i for i, text in enumerate(texts) if text is not None]
            self.vocabulary_ = sorted({w for i in keep for w in str(texts[i]).split()})
            bags = self._bags([texts[i] for i in keep])
            self.centroids_ = np.stack([bags[labels[keep] == k].mean(axis=0)
                                        for k in range(self.num_classes)]).astype(np.float32)
            self.trained_on_.append(dataset_fingerprint(train))  # the leakage guard reads it
            return self

        def predict_logits(self, data: Any, *, batch_size: int = 64,
                           return_features: bool = False, progress: bool = True
                           ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
            texts = self._texts(data)
            features = self._bags(texts)
            logits = (self.scale * features @ self.centroids_.T).astype(np.float32)
            logits[[text is None for text in texts]] = 0.0
            return (logits, features) if return_features else logits

        def fingerprint(self) -> str:
            digest = hashlib.sha256("\x1f".join([*self.class_names, *self.vocabulary_,
                                                 str(self.scale)]).encode())
            digest.update(self.centroids_.tobytes())
            return digest.hexdigest()

        def hyper_parameters(self) -> dict[str, Any]:
            return {"scale": self.scale}

        def save_pretrained(self, directory: str | Path) -> Path:
            directory = Path(directory)
            directory.mkdir(parents=True, exist_ok=True)
            (directory / _VOCABULARY).write_text(json.dumps(self.vocabulary_))
            save_file({"centroids": self.centroids_}, str(directory / _CENTROIDS))
            self.write_metadata(directory)
            return directory

        @classmethod
        def load_saved(cls, directory: Path, metadata: Mapping[str, Any],
                       **kwargs: Any) -> WordCentroidExpert:
            expert = cls(column=metadata["column"], labels=metadata["class_names"],
                         seed=metadata["seed"], **metadata["params"])
            expert.vocabulary_ = json.loads((directory / _VOCABULARY).read_text())
            expert.centroids_ = load_file(str(directory / _CENTROIDS))["centroids"]
            expert.check_loaded(directory, metadata)
            return expert

    return WordCentroidExpert


@pytest.fixture(scope="module")
def kind() -> Iterator[type[Expert]]:
    cls = _define_kind()
    yield cls
    EXPERTS.unregister(KIND)


def _split(n: int, seed: int, prefix: str) -> Dataset:
    """Titles name the colour 80% of the time; ``meta.x`` is the class index plus noise.
    Every 7th title and every 9th meta group is missing."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASSES), n)
    titles: list[str | None] = []
    metas: list[dict[str, Any] | None] = []
    for i, k in enumerate(labels):
        word = CLASSES[k] if rng.random() < 0.8 else str(rng.choice(CLASSES))
        titles.append(None if i % 7 == 3 else " ".join([word, *rng.choice(FILLER, 2)]))
        metas.append(None if i % 9 == 4 else {
            "x": float(k + rng.normal(0, 0.35)),
            "shape": ["round", "square", "flat"][k] if rng.random() < 0.7 else "round"})
    return Dataset.from_dict({"id": [f"{prefix}-{i}" for i in range(n)], "title": titles,
                              "meta": metas, "label": [CLASSES[k] for k in labels]})


@pytest.fixture(scope="module")
def data() -> dict[str, Dataset]:
    return {"train": _split(90, 0, "tr"), "validation": _split(60, 1, "va"),
            "test": _split(45, 2, "te")}


@pytest.fixture(scope="module")
def experts(kind: type[Expert], data: dict[str, Dataset]) -> dict[str, Expert]:
    return {
        "words": create_expert(KIND, column="title", labels=CLASSES).fit(data["train"]),
        "meta": create_expert("sklearn", column="meta", labels=CLASSES).fit(data["train"]),
    }


@pytest.fixture(scope="module")
def logits(experts: dict[str, Expert], data: dict[str, Dataset]) -> dict[str, LogitSet]:
    return {split: LogitSet.from_experts(experts, data[split], split=split, features=True)
            for split in ("validation", "test")}


def _combiner(name: str) -> Any:
    """A fresh combiner; one that selects among candidates gets the others as candidates."""
    if "candidates" not in inspect.signature(get_combiner_class(name).__init__).parameters:
        return create_combiner(name)
    pool = [n for n in list_combiners() if n != name and "candidates" not in
            inspect.signature(get_combiner_class(n).__init__).parameters]
    return create_combiner(name, candidates=[create_combiner(n) for n in pool])


def _labels(dataset: Dataset) -> np.ndarray:
    return LabelSpace(CLASSES).encode_column(dataset)


def test_the_kind_is_registered_and_created_by_name(kind: type[Expert]) -> None:
    assert KIND in list_experts()
    expert = create_expert(KIND, column="title", labels=CLASSES, scale=2.0)
    assert isinstance(expert, kind)
    assert (expert.registry_name, expert.column, expert.modality) == (KIND, "title", "text")
    with pytest.raises(ConfigError, match=r"no option\(s\) \['scal'\]"):
        create_expert(KIND, column="title", labels=CLASSES, scal=2.0)


def test_unregister_forgets_a_kind() -> None:
    register_expert("test_transient")(type("Transient", (Expert,), {}))
    EXPERTS.unregister("test_transient")
    assert "test_transient" not in list_experts()
    with pytest.raises(UnknownNameError, match="test_transient"):
        create_expert("test_transient", column="x", labels=CLASSES)


def test_logits_come_from_both_kinds_with_the_missing_rows_masked(
        logits: dict[str, LogitSet], data: dict[str, Dataset]) -> None:
    validation = logits["validation"]
    assert validation.expert_names == ("words", "meta")
    expected = np.stack([[t is not None for t in data["validation"]["title"]],
                         [m is not None for m in data["validation"]["meta"]]], axis=1)
    np.testing.assert_array_equal(validation.mask, expected)
    y = _labels(data["validation"])
    for j, name in enumerate(validation.expert_names):
        present = expected[:, j]
        accuracy = (validation.logits[name][present].argmax(axis=1) == y[present]).mean()
        assert accuracy > 0.6, (name, accuracy)
    validation.check_held_out()


def test_logits_on_the_training_split_are_refused_as_leakage(
        experts: dict[str, Expert], data: dict[str, Dataset]) -> None:
    in_sample = LogitSet.from_experts(experts, data["train"], split="train")
    with pytest.raises(LeakageError, match=r"\['words', 'meta'\]"):
        in_sample.check_held_out()


@pytest.mark.parametrize("name", list_combiners())
def test_every_combiner_fits_predicts_explains_saves_and_loads(
        name: str, experts: dict[str, Expert], logits: dict[str, LogitSet],
        data: dict[str, Dataset], tmp_path: Path) -> None:
    combiner = _combiner(name).fit(logits["validation"], _labels(data["validation"]))
    proba = combiner.predict_proba(logits["test"])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert (proba.argmax(axis=1) == _labels(data["test"])).mean() > 0.6

    predictor = FusionPredictor(experts, combiner)
    inputs = {"title": ["red big cat", None, "blue sad dog"],
              "meta": [None, {"x": 1.0, "shape": "square"}, {"x": 2.1, "shape": None}]}
    assert predictor.predict(inputs).tolist()[:2] == ["red", "green"]
    rows = predictor.explain(inputs)
    assert rows[0]["experts"]["meta"] == {"available": False}
    assert rows[1]["experts"]["words"] == {"available": False}
    assert rows[2]["experts"]["words"]["available"] and rows[2]["experts"]["meta"]["available"]
    explained = combiner.explain_weights(predictor.dataset_logits(data["test"]))
    assert rows[0]["weights_kind"] == (None if explained is None else explained[2])

    loaded = FusionPredictor.load(predictor.save(tmp_path / "bundle"))
    assert type(loaded.experts["words"]) is type(experts["words"])
    np.testing.assert_allclose(loaded.predict_proba(inputs), predictor.predict_proba(inputs),
                               rtol=0, atol=1e-6)


def test_a_saved_expert_of_the_kind_loads_by_its_metadata(
        experts: dict[str, Expert], data: dict[str, Dataset], tmp_path: Path) -> None:
    words = experts["words"]
    again = load_expert(words.save_pretrained(tmp_path / "words"))
    assert again.fingerprint() == words.fingerprint()
    np.testing.assert_array_equal(again.predict_logits(data["test"]),
                                  words.predict_logits(data["test"]))


def test_a_recipe_names_the_kind_by_type(kind: type[Expert]) -> None:
    recipe = recipe_from_dict({
        "name": "plugin",
        "data": {"source": "synthetic"},
        "experts": {"words": {"type": KIND, "column": "title", "options": {"scale": 4.0}}},
        "combiners": ["voting"],
    })
    assert (recipe.experts["words"].type, recipe.experts["words"].column) == (KIND, "title")
    with pytest.raises(ConfigError, match=r"experts\.words\.options\.scal.*'scale'"):
        recipe_from_dict({"name": "plugin", "data": {"source": "synthetic"},
                          "experts": {"words": {"type": KIND, "column": "title",
                                                "options": {"scal": 4.0}}},
                          "combiners": ["voting"]})
