"""ImageExpert and TextExpert through the public API, on tiny models and tiny data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from _tiny_data import (
    CLASSES,
    FILLER,
    colour_image,
    colour_text,
    make_dataset,
)
from datasets import Value

from ensemble.exceptions import (
    ArtifactError,
    ClassMismatchError,
    ConfigError,
    DataError,
    LabelError,
)
from ensemble.experts import Expert, ImageExpert, TextExpert, load_expert, torch_expert
from ensemble.logits import LogitSet

FIT_ARGS = {"epochs": 1, "batch_size": 4, "eval_batch_size": 4, "learning_rate": 1e-3,
            "progress": False}


@pytest.fixture(scope="module")
def train():
    return make_dataset(12, seed=0, prefix="train")


@pytest.fixture(scope="module")
def validation():
    return make_dataset(6, seed=1, prefix="val", missing_image=[1], missing_text=[2])


def _image(checkpoint: str = "test_resnet", names=CLASSES) -> ImageExpert:
    return ImageExpert(checkpoint, names, pretrained=False, image_size=32)


def _text(checkpoint: Path, names=CLASSES) -> TextExpert:
    return TextExpert(str(checkpoint), names)


@pytest.fixture(params=["test_resnet", "test_vit", "text"])
def expert(request, tiny_text_checkpoint) -> Expert:
    if request.param == "text":
        return _text(tiny_text_checkpoint)
    return _image(request.param)


@pytest.fixture(scope="module")
def fitted(train, validation, tiny_text_checkpoint, tmp_path_factory):
    """Both experts fitted for one epoch, each with its saved directory."""
    experts = {"image": _image(), "text": _text(tiny_text_checkpoint)}
    before = {m: e.fingerprint() for m, e in experts.items()}
    for e in experts.values():
        e.fit(train, validation, **FIT_ARGS)
    saved = {m: e.save_pretrained(tmp_path_factory.mktemp(m) / "expert")
             for m, e in experts.items()}
    return experts, before, saved


# -- fit, save and load ---------------------------------------------------------------------


def test_each_kind_starts_from_its_own_training_defaults(
        train, tiny_text_checkpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    """timm bodies default to 1e-3, transformers to TrainingConfig's 5e-5; a recipe's or
    the caller's value wins over the kind's."""
    from ensemble.experts import TrainingConfig

    assert ImageExpert.default_training_config().learning_rate == 1e-3
    assert TextExpert.default_training_config() == TrainingConfig()
    assert ImageExpert.training_config({"epochs": 2}).learning_rate == 1e-3
    assert ImageExpert.training_config({"learning_rate": "3e-4"}).learning_rate == 3e-4
    image = _image()
    assert image.fold_config(None, None).learning_rate == 1e-3
    seen: list[TrainingConfig] = []

    class Stop(Exception):
        pass

    def record(*args: object, config: TrainingConfig, **kwargs: object) -> None:
        seen.append(config)
        raise Stop

    monkeypatch.setattr(torch_expert, "train_classifier", record)
    for expert, expected in ((image, 1e-3), (_text(tiny_text_checkpoint), 5e-5)):
        with pytest.raises(Stop):
            expert.fit(train, epochs=1)
        assert (seen[-1].learning_rate, seen[-1].epochs) == (expected, 1)
    with pytest.raises(Stop):
        image.fit(train, learning_rate=2e-4)
    assert seen[-1].learning_rate == 2e-4


@pytest.mark.parametrize("modality", ["image", "text"])
def test_fit_records_history_and_changes_the_fingerprint(fitted, train, validation,
                                                         modality) -> None:
    experts, before, _ = fitted
    expert = experts[modality]
    (record,) = expert.history_
    expected_eval = 5  # six validation rows, one of them without this modality's input
    assert record.eval_examples == expected_eval
    assert record.eval_accuracy is not None
    assert expert.fingerprint() != before[modality]
    assert expert.trained_on_ == [train._fingerprint]


@pytest.mark.parametrize("modality", ["image", "text"])
def test_save_and_load_give_identical_logits_and_fingerprint(fitted, validation,
                                                             modality) -> None:
    experts, _, saved = fitted
    expert = experts[modality]
    for loader in (type(expert).from_pretrained, Expert.from_pretrained, load_expert):
        loaded = loader(saved[modality])
        assert type(loaded) is type(expert)
        assert loaded.class_names == expert.class_names
        assert loaded.fingerprint() == expert.fingerprint()
        assert loaded.trained_on_ == expert.trained_on_
        assert loaded.history_ == expert.history_
        assert loaded.best_epoch_ == expert.best_epoch_
        assert loaded.training_config_ == expert.training_config_
    np.testing.assert_array_equal(loaded.predict_logits(validation, progress=False),
                                  expert.predict_logits(validation, progress=False))


def test_loading_as_the_wrong_expert_type_fails(fitted) -> None:
    _, _, saved = fitted
    with pytest.raises(ArtifactError, match="ImageExpert"):
        TextExpert.from_pretrained(saved["image"])
    with pytest.raises(ArtifactError, match="TextExpert"):
        ImageExpert.from_pretrained(saved["text"])


def test_loading_a_directory_with_mismatched_weights_fails(fitted, tmp_path: Path) -> None:
    _, _, saved = fitted
    other = ImageExpert("test_vit", CLASSES, pretrained=False, image_size=32)
    directory = other.save_pretrained(tmp_path / "vit")
    (directory / "model.safetensors").write_bytes(
        (saved["image"] / "model.safetensors").read_bytes())
    with pytest.raises(ArtifactError, match="does not match"):
        load_expert(directory)


def test_held_out_logits_pass_and_in_sample_logits_are_flagged(fitted, train,
                                                               validation) -> None:
    experts, _, _ = fitted
    held_out = LogitSet.from_experts(experts, validation, split="validation")
    held_out.check_held_out()
    np.testing.assert_array_equal(held_out.present("image"), [1, 0, 1, 1, 1, 1])
    np.testing.assert_array_equal(held_out.present("text"), [1, 1, 0, 1, 1, 1])
    in_sample = LogitSet.from_experts(experts, train, split="train")
    assert all(p.in_sample for p in in_sample.provenance.values())


# -- inference ------------------------------------------------------------------------------


def test_embeddings_are_the_classifier_input(expert: Expert, validation) -> None:
    logits, features = expert.predict_logits(validation, return_features=True,
                                             progress=False)
    embedded = expert.embed(validation, progress=False)
    assert logits.shape == (6, 3) and logits.dtype == np.float32
    assert features.shape[0] == 6 and features.shape[1] > 3
    np.testing.assert_array_equal(embedded, features)
    classifier = (expert.model.classifier if isinstance(expert, TextExpert)
                  else expert.model.get_classifier())
    present = expert.present_rows(validation)
    with torch.inference_mode():
        recomputed = classifier(torch.from_numpy(features[present])).numpy()
    np.testing.assert_allclose(recomputed, logits[present], rtol=1e-5, atol=1e-5)


def test_rows_without_input_get_zero_logits(expert: Expert, validation) -> None:
    logits, features = expert.predict_logits(validation, return_features=True,
                                             progress=False)
    present = expert.present_rows(validation)
    assert present.sum() == 5
    assert not logits[~present].any() and not features[~present].any()
    assert np.abs(logits[present]).sum(axis=1).all()


def test_raw_image_inputs_of_every_kind_agree(tmp_path: Path) -> None:
    expert = _image()
    images = [colour_image(name) for name in CLASSES]
    paths = []
    for i, image in enumerate(images):
        paths.append(tmp_path / f"{i}.png")
        image.save(paths[-1])
    reference = expert.predict_logits(images, progress=False)
    assert reference.shape == (3, 3)
    for inputs in ([str(p) for p in paths], paths, [np.asarray(i) for i in images],
                   tuple(images), [{"bytes": p.read_bytes()} for p in paths]):
        np.testing.assert_allclose(expert.predict_logits(inputs, progress=False), reference,
                                   atol=1e-6)
    single = expert.predict_logits(images[0], progress=False)
    np.testing.assert_allclose(single, reference[:1], atol=1e-6)
    assert expert.predict_proba(images, progress=False).sum(axis=1) == pytest.approx(1.0)


def test_raw_text_inputs_work_and_a_single_string_is_one_row(tiny_text_checkpoint) -> None:
    expert = _text(tiny_text_checkpoint)
    texts = [colour_text(name) for name in CLASSES]
    batch = expert.predict_logits(texts, progress=False)
    assert batch.shape == (3, 3)
    single = expert.predict_logits(texts[1], progress=False)
    assert single.shape == (1, 3)
    np.testing.assert_allclose(single[0], batch[1], atol=1e-5)
    with_missing = expert.predict_logits([texts[0], None], progress=False)
    assert not with_missing[1].any()


def test_tiny_texts_use_only_words_the_tiny_tokenizer_knows(tiny_text_checkpoint) -> None:
    tokenizer = _text(tiny_text_checkpoint).tokenizer
    ids = tokenizer.convert_tokens_to_ids([*CLASSES, *FILLER])
    assert tokenizer.unk_token_id not in ids


@pytest.mark.parametrize("batch_size", [0, -1, True, 2.0])
def test_invalid_batch_size_raises_config_error(batch_size) -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        _image().predict_logits([colour_image("red")], batch_size=batch_size)


# -- labels and columns ---------------------------------------------------------------------


def test_class_label_names_in_another_order_are_mapped_by_name(
    train, monkeypatch: pytest.MonkeyPatch
) -> None:
    shuffled = make_dataset(12, label_names=["blue", "red", "green"])
    captured = {}

    def capture(*args, **kwargs):
        captured.update(kwargs)
        raise KeyboardInterrupt  # stop before training: only the labels matter here

    monkeypatch.setattr(torch_expert, "train_classifier", capture)
    for dataset in (train, shuffled):
        with pytest.raises(KeyboardInterrupt):
            _image().fit(dataset, **FIT_ARGS)
        names = dataset.features["label"].int2str(dataset["label"])
        assert captured["train_labels"] == [CLASSES.index(n) for n in names]
    assert shuffled["label"] != train["label"]


def test_a_label_outside_the_label_space_names_the_example(train) -> None:
    labels = [CLASSES[i % 3] for i in range(len(train))]
    labels[4] = "purple"
    strings = train.remove_columns("label").add_column("label", labels)
    with pytest.raises(LabelError, match=r"'purple'.*'train-4'"):
        _image().fit(strings, **FIT_ARGS)
    with pytest.raises(LabelError, match="'train-7'"):
        _image().fit(train.cast_column("label", Value("int64")).map(
            lambda row: {"label": 9 if row["id"] == "train-7" else row["label"]}), **FIT_ARGS)


def test_a_dataset_with_extra_classes_is_refused(train) -> None:
    with pytest.raises(ClassMismatchError, match="'blue'"):
        _image(names=["red", "green", "yellow"]).fit(train, **FIT_ARGS)


def test_a_missing_column_names_the_column(train, tiny_text_checkpoint) -> None:
    expert = _text(tiny_text_checkpoint)
    no_text = train.remove_columns("text")
    with pytest.raises(DataError, match="'text'"):
        expert.fit(no_text, **FIT_ARGS)
    with pytest.raises(DataError, match="'text'"):
        expert.predict_logits(no_text)
    with pytest.raises(DataError, match="'label'"):
        expert.fit(train.remove_columns("label"), **FIT_ARGS)


def test_experts_with_different_class_names_cannot_be_combined(validation) -> None:
    experts = {"a": _image(), "b": _image(names=["red", "green", "yellow"])}
    with pytest.raises(ClassMismatchError, match="'b'"):
        LogitSet.from_experts(experts, validation)


def test_class_names_must_be_distinct() -> None:
    with pytest.raises(ConfigError, match="more than once"):
        _image(names=["red", "red"])


def test_text_expert_warns_only_when_backbone_weights_are_missing(
    tiny_text_checkpoint: Path, tmp_path: Path
) -> None:
    import shutil
    import warnings

    from safetensors.torch import load_file, save_file

    # The tiny checkpoint's 2-class head is replaced by a new head: no warning for that.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _text(tiny_text_checkpoint).model  # noqa: B018 - the model loads on first use
    # A checkpoint missing a body layer is loaded, but the gap is named.
    broken = tmp_path / "broken"
    shutil.copytree(tiny_text_checkpoint, broken)
    weights = load_file(str(broken / "model.safetensors"))
    dropped = next(k for k in weights if "encoder.layer.1.output.dense.weight" in k)
    del weights[dropped]
    save_file(weights, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with pytest.warns(UserWarning, match="encoder.layer.1.output.dense.weight"):
        _text(broken).model  # noqa: B018
