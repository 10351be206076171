"""AudioExpert (kind ``transformers-audio``) through the public API: a tiny wav2vec2 built from
config, tones whose class is learnable, files / bytes / arrays / ``datasets.Audio`` columns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from _tiny_data import CLASSES, TONES, make_audio_dataset
from datasets import Audio, Dataset
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

from ensemble import create_expert, load_expert
from ensemble.exceptions import ConfigError, ExportError, InvalidAudioError, LeakageError
from ensemble.experts import AudioExpert, get_expert_class, list_experts
from ensemble.fingerprints import dataset_fingerprint
from ensemble.logits import LogitSet
from ensemble.testing import build_tiny_audio_checkpoint, tone_clip

FIT = {"epochs": 6, "batch_size": 8, "learning_rate": 3e-3, "head_learning_rate": 3e-3,
       "early_stopping_patience": None, "progress": False}


@pytest.fixture(scope="module", autouse=True)
def one_thread(one_torch_thread: None) -> None:
    """One torch thread for this module (tests/conftest.py)."""


def _expert(checkpoint: Path, **options: object) -> AudioExpert:
    options.setdefault("pretrained", False)
    options.setdefault("max_duration", 0.5)
    return create_expert("transformers-audio", str(checkpoint), column="clip", labels=CLASSES,
                         **options)


@pytest.fixture(scope="module")
def train() -> Dataset:
    return make_audio_dataset(36, seed=0, prefix="train")


@pytest.fixture(scope="module")
def validation() -> Dataset:
    return make_audio_dataset(12, seed=1, prefix="val", missing_audio=[4])


@pytest.fixture(scope="module")
def fitted(tiny_audio_checkpoint: Path, train: Dataset, validation: Dataset) -> AudioExpert:
    return _expert(tiny_audio_checkpoint).fit(train, validation, **FIT)


def _files(tmp_path: Path, dataset: Dataset) -> list[str]:
    """The clips of ``dataset`` as WAV and FLAC files (alternately); None stays None."""
    paths: list[str | None] = []
    for i, clip in enumerate(dataset["clip"]):
        if clip is None:
            paths.append(None)
            continue
        path = tmp_path / f"{i}.{'flac' if i % 2 else 'wav'}"
        sf.write(path, np.asarray(clip["array"], np.float32), clip["sampling_rate"],
                 subtype="PCM_24")
        paths.append(str(path))
    return paths


def test_the_kind_is_registered_with_its_modality_and_defaults() -> None:
    assert "transformers-audio" in list_experts()
    cls = get_expert_class("transformers-audio")
    assert cls is AudioExpert and cls.modality == "audio"
    assert cls.default_training_config().learning_rate == 3e-5


def test_fit_learns_tones_and_skips_missing_clips(fitted: AudioExpert, validation: Dataset
                                                  ) -> None:
    logits = fitted.predict_logits(validation, progress=False)
    assert logits.shape == (12, 3) and logits.dtype == np.float32
    assert not logits[4].any()  # missing clip: zero logits
    present = fitted.present_rows(validation)
    assert present.tolist() == [i != 4 for i in range(12)]
    accuracy = (logits.argmax(1) == np.asarray(validation["label"]))[present].mean()
    assert accuracy >= 0.9, fitted.history_
    assert fitted.best_epoch_ is not None and fitted.padding_ == "longest"
    assert fitted.sampling_rate == 16000


def test_files_bytes_arrays_and_audio_columns_give_the_same_logits(
        fitted: AudioExpert, validation: Dataset, tmp_path: Path) -> None:
    expected = fitted.predict_logits(validation, progress=False)
    paths = _files(tmp_path, validation)
    column = Dataset.from_dict({"id": validation["id"], "clip": paths,
                                "label": validation["label"]}).cast_column("clip", Audio())
    np.testing.assert_allclose(fitted.predict_logits(column, progress=False), expected,
                               atol=1e-4)
    raw = [paths[0], Path(paths[1]).read_bytes(), validation[2]["clip"], None]
    logits, features = fitted.predict_logits(raw, return_features=True, progress=False)
    np.testing.assert_allclose(logits[:3], expected[:3], atol=1e-4)
    assert not logits[3].any() and features.shape == (4, 16) and not features[3].any()
    np.testing.assert_allclose(fitted.embed(raw[:1], progress=False), features[:1], atol=1e-6)


def test_stereo_resampled_and_long_clips_are_read(fitted: AudioExpert) -> None:
    clip = tone_clip(TONES["blue"], seconds=0.4, sampling_rate=16000)
    mono = fitted.predict_logits([clip], progress=False)
    stereo = {"array": np.stack([clip["array"]] * 2, axis=1), "sampling_rate": 16000}
    np.testing.assert_allclose(fitted.predict_logits([stereo], progress=False), mono, atol=1e-5)
    slow = tone_clip(TONES["blue"], seconds=0.4, sampling_rate=44100)
    assert fitted.predict_logits([slow], progress=False).argmax() == CLASSES.index("blue")
    # cut at max_duration (0.5 s): a 3 s clip predicts as its first half second
    long = {"array": np.tile(clip["array"], 8)[: 3 * 16000], "sampling_rate": 16000}
    head = {"array": long["array"][:8000], "sampling_rate": 16000}
    np.testing.assert_allclose(fitted.predict_logits([long], progress=False),
                               fitted.predict_logits([head], progress=False), atol=1e-6)
    tiny = {"array": np.ones(10, np.float32) * 0.1, "sampling_rate": 16000}
    assert np.isfinite(fitted.predict_logits([tiny], progress=False)).all()  # padded up
    silent = {"array": np.zeros(4000, np.float32), "sampling_rate": 16000}
    assert np.isfinite(fitted.predict_logits([silent], progress=False)).all()


def test_a_clips_logits_do_not_depend_on_its_batch(fitted: AudioExpert, validation: Dataset
                                                   ) -> None:
    together = fitted.predict_logits(validation, batch_size=12, progress=False)
    alone = np.concatenate([fitted.predict_logits(validation.select([i]), progress=False)
                            for i in range(6)])
    np.testing.assert_allclose(alone, together[:6], atol=1e-5)


def test_without_attention_masks_every_clip_is_padded_to_max_duration(
        tmp_path: Path, train: Dataset, validation: Dataset) -> None:
    checkpoint = build_tiny_audio_checkpoint(tmp_path / "no-mask", return_attention_mask=False)
    expert = _expert(checkpoint)
    assert expert.padding_ == "max_duration"
    batch = expert.collate_inputs(validation["clip"][:3], ["a", "b", "c"], train=False)
    assert batch["inputs"]["input_values"].shape == (3, 8000)
    assert "attention_mask" not in batch["inputs"]
    together = expert.predict_logits(validation.select(range(4)), progress=False)
    alone = np.concatenate([expert.predict_logits([c], progress=False)
                            for c in validation["clip"][:4]])
    np.testing.assert_allclose(alone, together, atol=1e-5)
    longest = _expert(checkpoint, padding="longest")
    assert longest.collate_inputs(validation["clip"][:3], ["a", "b", "c"], train=False)[
        "inputs"]["input_values"].shape[1] < 8000


def test_a_spectrogram_model_pads_to_its_own_length(tmp_path: Path, train: Dataset) -> None:
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    config = ASTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=32, max_length=64, num_mel_bins=32,
                       frequency_stride=10, time_stride=10, num_labels=2)
    ASTForAudioClassification(config).save_pretrained(tmp_path / "ast")
    ASTFeatureExtractor(num_mel_bins=32, max_length=64).save_pretrained(tmp_path / "ast")
    expert = _expert(tmp_path / "ast")
    assert expert.padding_ == "fixed"
    batch = expert.collate_inputs(train["clip"][:2], ["a", "b"], train=False)
    assert batch["inputs"]["input_values"].shape == (2, 64, 32)  # frames x mel bins
    expert.fit(train.select(range(9)), **{**FIT, "epochs": 1})
    logits, features = expert.predict_logits([train[0]["clip"], None], return_features=True,
                                             progress=False)
    assert logits.shape == (2, 3) and features.shape == (2, 16) and not logits[1].any()


def test_save_and_load_give_identical_logits_without_pickle(
        fitted: AudioExpert, validation: Dataset, tmp_path: Path) -> None:
    folder = fitted.save_pretrained(tmp_path / "clip")
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json", "ensemble.json", "model.safetensors", "preprocessor_config.json"]
    again = load_expert(folder)
    assert isinstance(again, AudioExpert) and again.fingerprint() == fitted.fingerprint()
    assert again.max_duration == 0.5 and again.trained_on_ == fitted.trained_on_
    expected = fitted.predict_logits(validation, progress=False)
    np.testing.assert_array_equal(again.predict_logits(validation, progress=False), expected)
    # the folder is a plain transformers folder
    model = AutoModelForAudioClassification.from_pretrained(folder).eval()
    extractor = AutoFeatureExtractor.from_pretrained(folder)
    assert model.config.id2label == dict(enumerate(CLASSES))
    clip = validation[0]["clip"]
    inputs = extractor([np.asarray(clip["array"], np.float32)], sampling_rate=16000,
                       return_tensors="pt", return_attention_mask=True)
    with torch.inference_mode():
        plain = model(**inputs).logits.numpy()
    np.testing.assert_allclose(plain, expected[:1], atol=1e-5)


def test_the_leakage_guard_knows_an_audio_column_it_was_trained_on(
        tiny_audio_checkpoint: Path, train: Dataset, tmp_path: Path) -> None:
    column = Dataset.from_dict({"id": train["id"], "clip": _files(tmp_path, train),
                                "label": train["label"]}).cast_column("clip", Audio())
    expert = _expert(tiny_audio_checkpoint).fit(column, **{**FIT, "epochs": 1})
    assert expert.trained_on_ == [dataset_fingerprint(column)]
    held_in = LogitSet.from_experts({"clip": expert}, column, split="train")
    with pytest.raises(LeakageError):
        held_in.check_held_out()


def test_the_feature_encoder_is_frozen_unless_asked(tiny_audio_checkpoint: Path,
                                                    train: Dataset) -> None:
    def conv_moves(**options: object) -> bool:
        expert = _expert(tiny_audio_checkpoint, **options)
        conv = expert.model.wav2vec2.feature_extractor.conv_layers[0].conv.weight
        before = conv.detach().clone()
        expert.fit(train.select(range(12)), **{**FIT, "epochs": 1})
        return not torch.equal(before, conv.detach())

    assert not conv_moves()
    assert conv_moves(freeze_feature_encoder=False)


def test_mixed_precision_runs_through_the_loop(tiny_audio_checkpoint: Path, train: Dataset
                                               ) -> None:
    expert = _expert(tiny_audio_checkpoint).fit(train.select(range(12)), **{
        **FIT, "epochs": 1, "mixed_precision": "bf16"})
    assert expert.training_config_.mixed_precision == "bf16"
    assert np.isfinite(expert.predict_logits(train.select(range(3)), progress=False)).all()


def test_bad_options_and_inputs_are_typed_errors(tiny_audio_checkpoint: Path,
                                                 fitted: AudioExpert, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max_duration must be a positive number"):
        _expert(tiny_audio_checkpoint, max_duration=0).model  # noqa: B018
    with pytest.raises(ConfigError, match="padding is 'shortest'"):
        _expert(tiny_audio_checkpoint, padding="shortest").model  # noqa: B018
    with pytest.raises(ConfigError, match="has no option"):
        _expert(tiny_audio_checkpoint, sampling_rate=8000)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00")
    with pytest.raises(InvalidAudioError, match=r"broken\.wav' of example '1' cannot be read"):
        fitted.predict_logits([tone_clip(300.0), str(broken)], progress=False)
    with pytest.raises(ExportError, match="no audio preprocessing"):
        fitted.export_onnx(tmp_path / "export")
    assert not (tmp_path / "export").exists()
