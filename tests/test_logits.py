"""The logit store: validation, alignment, persistence, caching and the leakage guard."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from _tiny_data import CLASSES, make_dataset

from ensemble.exceptions import (
    AlignmentError,
    ArtifactError,
    ClassMismatchError,
    InvalidLogitsError,
    LeakageError,
)
from ensemble.logits import LogitCache, LogitSet, Provenance

NAMES = ["a", "b", "c"]


def _random(rows: int, cols: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, cols)).astype(np.float32)


def _full_set() -> LogitSet:
    return LogitSet(
        {"image": _random(4, seed=1), "text": _random(4, seed=2)},
        NAMES,
        ids=["w", "x", "y", "z"],
        mask={"text": np.array([True, False, True, True])},
        features={"image": _random(4, 5, seed=3)},
        provenance={"image": Provenance(expert="ImageExpert", checkpoint="test_resnet",
                                        fingerprint="f" * 64, split="validation",
                                        dataset_fingerprint="d1", trained_on=("d0", "d2"))},
    )


# -- construction ---------------------------------------------------------------------------


def test_construction_exposes_shapes_and_defaults() -> None:
    ls = LogitSet({"image": np.zeros((2, 3)), "text": np.ones((2, 3))}, NAMES)
    assert ls.expert_names == ("image", "text")
    assert (ls.n_rows, ls.n_classes, len(ls)) == (2, 3, 2)
    assert ls.logits["image"].dtype == np.float32
    assert ls.stacked().shape == (2, 2, 3)
    assert list(ls.ids) == ["0", "1"]
    assert ls.mask.all()


@pytest.mark.parametrize(
    ("logits", "error", "words"),
    [
        ({"text": np.zeros(3)}, InvalidLogitsError, ["text", "2-D"]),
        ({"image": np.zeros((2, 3)), "text": np.zeros((3, 3))}, InvalidLogitsError,
         ["text", "3 rows"]),
        ({"image": np.zeros((2, 3)), "text": np.zeros((2, 4))}, ClassMismatchError,
         ["text", "4 columns"]),
    ],
)
def test_bad_shapes_raise_typed_errors_naming_the_modality(logits, error, words) -> None:
    with pytest.raises(error) as info:
        LogitSet(logits, NAMES)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_present_row_names_modality_and_example_id(bad: float) -> None:
    text = np.zeros((3, 3), dtype=np.float32)
    text[1, 2] = bad
    with pytest.raises(InvalidLogitsError, match=r"'text'.*'ex-b'"):
        LogitSet({"image": np.zeros((3, 3)), "text": text}, NAMES, ids=["ex-a", "ex-b", "ex-c"])


def test_non_finite_values_in_missing_rows_are_stored_as_zeros() -> None:
    text = np.ones((3, 3), dtype=np.float32)
    text[1] = np.nan
    features = np.ones((3, 2))
    features[1] = np.inf
    ls = LogitSet({"text": text}, NAMES, mask=np.array([[True], [False], [True]]),
                  features={"text": features})
    np.testing.assert_array_equal(ls.logits["text"][1], np.zeros(3))
    np.testing.assert_array_equal(ls.features["text"][1], np.zeros(2))
    np.testing.assert_array_equal(ls.present("text"), [True, False, True])
    assert np.isnan(text[1]).all(), "the caller's array must not be modified"


def test_duplicate_ids_raise_alignment_error() -> None:
    with pytest.raises(AlignmentError, match="dup"):
        LogitSet({"text": np.zeros((3, 3))}, NAMES, ids=["dup", "other", "dup"])


def test_wrong_number_of_ids_raises_alignment_error() -> None:
    with pytest.raises(AlignmentError):
        LogitSet({"text": np.zeros((3, 3))}, NAMES, ids=["a", "b"])


# -- alignment ------------------------------------------------------------------------------


def test_align_reorders_rows_by_id_and_columns_by_class_name() -> None:
    ls = _full_set()
    aligned = ls.align(ids=["z", "w", "y", "x"], class_names=["c", "a", "b"])
    assert list(aligned.ids) == ["z", "w", "y", "x"]
    assert aligned.class_names == ("c", "a", "b")
    rows, cols = [3, 0, 2, 1], [2, 0, 1]
    for modality in ls.expert_names:
        np.testing.assert_array_equal(aligned.logits[modality],
                                      ls.logits[modality][rows][:, cols])
    np.testing.assert_array_equal(aligned.mask, ls.mask[rows])
    np.testing.assert_array_equal(aligned.features["image"], ls.features["image"][rows])


def test_align_to_a_different_class_set_or_unknown_ids_fails() -> None:
    ls = _full_set()
    with pytest.raises(ClassMismatchError, match="'d'"):
        ls.align(class_names=["a", "b", "d"])
    with pytest.raises(ClassMismatchError):
        ls.align(class_names=["a", "b"])
    with pytest.raises(AlignmentError, match="'nope'"):
        ls.align(ids=["w", "nope"])


def test_merge_aligns_ids_in_a_different_order_and_classes_by_name() -> None:
    image = _random(3, seed=4)
    text = _random(3, seed=5)
    a = LogitSet({"image": image}, NAMES, ids=["1", "2", "3"])
    # Same examples and classes, both listed in another order.
    b = LogitSet({"text": text[[2, 0, 1]][:, [1, 2, 0]]}, ["b", "c", "a"], ids=["3", "1", "2"],
                 mask={"text": np.array([True, True, False])})
    merged = a.merge(b)
    assert merged.expert_names == ("image", "text")
    assert list(merged.ids) == ["1", "2", "3"]
    np.testing.assert_array_equal(merged.logits["image"], image)
    expected = text.copy()
    expected[1] = 0.0  # id "2" is missing for text
    np.testing.assert_array_equal(merged.logits["text"], expected)
    np.testing.assert_array_equal(merged.mask, [[True, True], [True, False], [True, True]])


def test_merge_of_different_examples_fails() -> None:
    a = LogitSet({"image": np.zeros((2, 3))}, NAMES, ids=["1", "2"])
    b = LogitSet({"text": np.zeros((2, 3))}, NAMES, ids=["1", "3"])
    with pytest.raises(AlignmentError):
        a.merge(b)


# -- persistence ----------------------------------------------------------------------------


def test_save_load_round_trip_is_bit_identical(tmp_path: Path) -> None:
    ls = _full_set()
    loaded = LogitSet.load(ls.save(tmp_path / "set"))
    assert loaded.expert_names == ls.expert_names
    assert loaded.class_names == ls.class_names
    assert list(loaded.ids) == list(ls.ids)
    for modality in ls.expert_names:
        assert loaded.logits[modality].tobytes() == ls.logits[modality].tobytes()
    assert loaded.features.keys() == ls.features.keys()
    assert loaded.features["image"].tobytes() == ls.features["image"].tobytes()
    np.testing.assert_array_equal(loaded.mask, ls.mask)
    assert loaded.provenance == ls.provenance
    assert loaded.allow_in_sample is False
    assert LogitSet.load(ls.allow_leakage().save(tmp_path / "allowed")).allow_in_sample


def _tamper_tensors(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # one logit byte: the header still parses
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garble_header(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[8:16] = b"\x00garbage"
    path.write_bytes(bytes(data))


def _edit_config(change):
    def edit(path: Path) -> None:
        config = json.loads(path.read_text())
        change(config)
        path.write_text(json.dumps(config))

    return edit


@pytest.mark.parametrize(
    ("name", "damage"),
    [
        ("logits.safetensors", _tamper_tensors),
        ("logits.safetensors", _truncate),
        ("logits.safetensors", _garble_header),
        ("logits.safetensors", Path.unlink),
        ("config.json", _truncate),
        ("config.json", Path.unlink),
        ("config.json", _edit_config(lambda c: c.update(format_version=99))),
        ("config.json", _edit_config(lambda c: c.update(kind="Combiner"))),
        ("config.json", _edit_config(lambda c: c.update(ids=c["ids"][:-1]))),
        ("config.json", _edit_config(lambda c: c.update(ids=["w"] * len(c["ids"])))),
        ("config.json", _edit_config(lambda c: c.update(class_names=["a", "b"]))),
        ("config.json", _edit_config(lambda c: c.update(experts=["image", "audio"]))),
        ("config.json", _edit_config(lambda c: c.pop("class_names"))),
    ],
    ids=["tensor-bytes", "tensors-truncated", "tensor-header", "tensors-missing",
         "config-truncated", "config-missing", "newer-format", "wrong-kind", "ids-short",
         "ids-duplicate", "classes-changed", "unknown-modality", "classes-missing"],
)
def test_damaged_artifact_raises_artifact_error(tmp_path: Path, name, damage) -> None:
    directory = _full_set().save(tmp_path / "set")
    damage(directory / name)
    with pytest.raises(ArtifactError):
        LogitSet.load(directory)


class _Planted:
    """Unpickling this writes a marker file: proof that a loader ran pickle."""

    marker: Path

    def __reduce__(self):
        return (Path.write_text, (self.marker, "unpickled"))


def test_planted_pickle_is_refused_and_never_unpickled(tmp_path: Path) -> None:
    directory = _full_set().save(tmp_path / "set")
    planted = _Planted()
    planted.marker = tmp_path / "marker"
    (directory / "logits.safetensors").write_bytes(pickle.dumps(planted))
    with pytest.raises(ArtifactError):
        LogitSet.load(directory)
    assert not planted.marker.exists()


# -- computing from experts, the cache and the leakage guard --------------------------------


class FakeExpert:
    """The part of the expert API that LogitSet.from_experts uses, counting predictions."""

    input_column = "text"

    def __init__(self, class_names=CLASSES, *, weights: str = "w1", trained_on=()) -> None:
        self.class_names = list(class_names)
        self.weights = weights
        self.trained_on_ = list(trained_on)
        self.calls = 0
        self.progress: list[bool] = []

    def fingerprint(self) -> str:
        return f"fake-{self.weights}"

    def present_rows(self, dataset) -> np.ndarray:
        return np.array([value is not None for value in dataset[self.input_column]])

    def predict_logits(self, dataset, *, batch_size=32, return_features=False, progress=True):
        self.calls += 1
        self.progress.append(progress)
        present = self.present_rows(dataset)
        logits = np.zeros((len(dataset), len(self.class_names)), dtype=np.float32)
        logits[present] = np.arange(present.sum() * len(self.class_names)).reshape(-1, 3)
        return (logits, logits[:, :2] * 2) if return_features else logits


@pytest.fixture(scope="module")
def dataset():
    return make_dataset(6, missing_text=[2])


def test_from_experts_masks_missing_inputs_and_records_provenance(dataset) -> None:
    expert = FakeExpert()
    ls = LogitSet.from_experts({"text": expert}, dataset, split="validation", features=True)
    assert list(ls.ids) == dataset["id"]
    np.testing.assert_array_equal(ls.present("text"), [True, True, False, True, True, True])
    np.testing.assert_array_equal(ls.logits["text"][2], np.zeros(3))
    assert ls.features["text"].shape == (6, 2)
    provenance = ls.provenance["text"]
    assert provenance.fingerprint == "fake-w1"
    assert provenance.split == "validation"
    assert provenance.dataset_fingerprint == dataset._fingerprint
    assert not provenance.in_sample
    ls.check_held_out()


def test_from_experts_passes_progress_to_the_experts(dataset) -> None:
    """``ensemble run -q`` shows no progress bars: the pipeline passes progress=False."""
    expert = FakeExpert()
    LogitSet.from_experts({"text": expert}, dataset, progress=False)
    LogitSet.from_experts({"text": expert}, dataset)
    assert expert.progress == [False, True]


def test_from_experts_realigns_an_expert_with_another_class_order(dataset) -> None:
    first = FakeExpert(CLASSES)
    second = FakeExpert(CLASSES[::-1])
    ls = LogitSet.from_experts({"a": first, "b": second}, dataset)
    assert ls.class_names == tuple(CLASSES)
    raw = second.predict_logits(dataset)
    np.testing.assert_array_equal(ls.logits["b"], raw[:, ::-1])


def test_from_experts_with_disagreeing_class_names_fails(dataset) -> None:
    experts = {"a": FakeExpert(CLASSES), "b": FakeExpert(["red", "green", "yellow"])}
    with pytest.raises(ClassMismatchError, match="'b'"):
        LogitSet.from_experts(experts, dataset)


def test_cache_reuses_logits_and_recomputes_for_new_weights(dataset, tmp_path: Path) -> None:
    cache = LogitCache(tmp_path / "cache")
    expert = FakeExpert()
    first = LogitSet.from_experts({"text": expert}, dataset, split="validation", cache=cache)
    second = LogitSet.from_experts({"text": expert}, dataset, split="validation",
                                   cache=tmp_path / "cache")
    assert expert.calls == 1
    np.testing.assert_array_equal(second.logits["text"], first.logits["text"])
    np.testing.assert_array_equal(second.mask, first.mask)
    assert second.provenance == first.provenance

    LogitSet.from_experts({"text": expert}, dataset, split="test", cache=cache)
    assert expert.calls == 2, "another split is another cache entry"
    retrained = FakeExpert(weights="w2")
    LogitSet.from_experts({"text": retrained}, dataset, split="validation", cache=cache)
    assert retrained.calls == 1, "different weights must not reuse the old logits"


def test_unreadable_cache_entry_is_recomputed(dataset, tmp_path: Path) -> None:
    cache = LogitCache(tmp_path / "cache")
    expert = FakeExpert()
    LogitSet.from_experts({"text": expert}, dataset, split="validation", cache=cache)
    (entry,) = (tmp_path / "cache").iterdir()
    _truncate(entry / "logits.safetensors")
    LogitSet.from_experts({"text": expert}, dataset, split="validation", cache=cache)
    assert expert.calls == 2


def test_logits_on_the_training_data_are_flagged_as_leakage(dataset) -> None:
    held_out = FakeExpert(trained_on=["another-split"])
    leaky = FakeExpert(trained_on=[dataset._fingerprint])
    ls = LogitSet.from_experts({"image": held_out, "text": leaky}, dataset, split="train")
    assert ls.provenance["text"].in_sample
    assert not ls.provenance["image"].in_sample
    with pytest.raises(LeakageError, match="'text'"):
        ls.check_held_out()
    ls.allow_leakage().check_held_out()
    with pytest.raises(LeakageError):
        ls.select(["text", "image"]).check_held_out()
    ls.select(["image"]).check_held_out()
