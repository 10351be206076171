"""Bad input and tampered artifacts raise typed errors with clear messages."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ensemble.combiners import StackingCombiner, VotingCombiner, load_combiner
from ensemble.exceptions import (
    ArtifactError,
    ClassMismatchError,
    ConfigError,
    InvalidLogitsError,
    LabelError,
    ModalityError,
)

RNG = np.random.default_rng(0)
Y = RNG.integers(0, 3, 40)
GOOD = {"image": RNG.normal(size=(40, 3)), "text": RNG.normal(size=(40, 3))}


def test_nan_and_inf_logits() -> None:
    for bad in (np.nan, np.inf):
        logits = {**GOOD, "text": GOOD["text"].copy()}
        logits["text"][5, 1] = bad
        with pytest.raises(InvalidLogitsError, match=r"'text'.*NaN/inf"):
            VotingCombiner().fit(logits, Y)


def test_nan_on_absent_rows_is_fine() -> None:
    logits = {**GOOD, "text": GOOD["text"].copy()}
    logits["text"][5] = np.nan
    mask = {"text": np.arange(40) != 5}
    proba = VotingCombiner().fit(logits, Y, mask=mask).predict_proba(logits, mask=mask)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_wrong_shapes() -> None:
    with pytest.raises(InvalidLogitsError, match="2-D"):
        VotingCombiner().fit({"image": np.zeros(40), "text": GOOD["text"]}, Y)
    with pytest.raises(InvalidLogitsError, match="rows"):
        VotingCombiner().fit({"image": GOOD["image"][:30], "text": GOOD["text"]}, Y)
    with pytest.raises(InvalidLogitsError, match="LogitSet or a mapping"):
        VotingCombiner().fit(np.zeros((40, 3)), Y)


def test_mismatched_class_counts() -> None:
    with pytest.raises(ClassMismatchError, match="'text' have 4 columns"):
        VotingCombiner().fit({"image": GOOD["image"], "text": np.zeros((40, 4))}, Y)


@pytest.mark.parametrize(("labels", "shown"), [
    (np.where(np.arange(40) == 3, 7, Y), "7"),
    (np.where(np.arange(40) == 3, -1, Y), "-1"),
    (np.array(["a", "b", "zebra"] * 13 + ["a"]), "zebra"),
    (Y + 0.5, "label 2.5 is not an integer"),
])
def test_labels_outside_the_classes(labels, shown) -> None:
    names = ["a", "b", "c"]
    with pytest.raises(LabelError, match=shown):
        VotingCombiner().fit(GOOD, labels, class_names=names)


def test_label_count_mismatch() -> None:
    with pytest.raises(LabelError, match="39 labels"):
        VotingCombiner().fit(GOOD, Y[:39])


def test_empty_input() -> None:
    with pytest.raises(InvalidLogitsError, match="no rows"):
        VotingCombiner().fit({"image": np.zeros((0, 3)), "text": np.zeros((0, 3))}, [])
    with pytest.raises(InvalidLogitsError, match="empty mapping"):
        VotingCombiner().fit({}, Y)


def test_declared_missing_modality_is_filled_and_undeclared_is_an_error() -> None:
    voter = VotingCombiner().fit(GOOD, Y)
    only_image = {"image": GOOD["image"]}
    proba = voter.predict_proba(only_image, mask={"text": np.zeros(40, dtype=bool)})
    np.testing.assert_allclose(proba, VotingCombiner().fit(only_image, Y).predict_proba(only_image))
    with pytest.raises(ModalityError, match=r"missing \['text'\]"):
        voter.predict_proba(only_image)


def test_invalid_hyper_parameters() -> None:
    with pytest.raises(ConfigError, match="method"):
        VotingCombiner(method="median").fit(GOOD, Y)
    with pytest.raises(ModalityError, match="unexpected \\['audio'\\]"):
        VotingCombiner(weights={"image": 1, "text": 1, "audio": 1}).fit(GOOD, Y)
    with pytest.raises(ConfigError, match="meta_learner"):
        StackingCombiner(meta_learner="logistic").fit(GOOD, Y)


@pytest.fixture
def saved(tmp_path):
    directory = tmp_path / "voter"
    VotingCombiner(weights="fit").fit(GOOD, Y).save(directory)
    return directory


def _edit_config(directory, **changes) -> None:
    config = json.loads((directory / "config.json").read_text())
    for key, value in changes.items():
        config[key] = value
    (directory / "config.json").write_text(json.dumps(config))


def test_tampered_config_json(saved) -> None:
    (saved / "config.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_combiner(saved)


@pytest.mark.parametrize(("changes", "message"), [
    ({"name": "votng"}, "Did you mean"),
    ({"format_version": 99}, "format version 99"),
    ({"kind": "LogitSet"}, "not a combiner"),
    ({"params": {"method": "median", "weights": None, "calibrate": False}}, "method"),
    ({"params": {"unknown": 1}}, "tampered"),
    ({"experts": ["image", "text", "audio"]}, "tampered"),
    ({"labels": "floats"}, "tampered"),
])
def test_tampered_config_values(saved, changes, message) -> None:
    _edit_config(saved, **changes)
    with pytest.raises((ArtifactError, ConfigError, LookupError), match=message):
        load_combiner(saved)


def test_tampered_safetensors(saved) -> None:
    path = saved / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="checksum"):
        load_combiner(saved)
    path.write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match="safetensors"):
        load_combiner(saved)
    path.unlink()
    with pytest.raises(ArtifactError, match="missing"):
        load_combiner(saved)


def test_loading_with_the_wrong_class(saved) -> None:
    with pytest.raises(ArtifactError, match="not 'stacking'"):
        StackingCombiner.load(saved)
