"""The resolver: local folders, names nothing has, and one resolver for every model library."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import ensemble
from ensemble import checkpoints
from ensemble.checkpoints import (
    MODEL_LIBRARIES,
    ModelLibrary,
    resolve_checkpoint_for,
    resolve_image_checkpoint,
    resolve_text_checkpoint,
)
from ensemble.checkpoints.libraries import WEIGHT_FILES, transformers_hub_target
from ensemble.exceptions import (
    ArtifactError,
    CheckpointNotFoundError,
    ConfigError,
    UnknownNameError,
)

INSTALL_HINT = "pip install 'late-fusion[offline-models]'"

# ---------------------------------------------------------------------------- local folders


def test_local_folder_resolves_for_both_modalities(tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert resolve_image_checkpoint(str(folder)) == f"local-dir:{folder.resolve()}"
    assert resolve_image_checkpoint(f"local-dir:{folder}") == f"local-dir:{folder.resolve()}"
    assert resolve_text_checkpoint(str(folder)) == str(folder.resolve())
    assert resolve_text_checkpoint(folder) == str(folder.resolve())  # type: ignore[arg-type]


def test_relative_local_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "org" / "model").mkdir(parents=True)
    (tmp_path / "org" / "model" / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    # a folder wins over a Hub id of the same spelling
    assert resolve_text_checkpoint("org/model") == str((tmp_path / "org" / "model").resolve())


def test_local_folder_without_config_is_an_artifact_error(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"config\.json"):
        resolve_image_checkpoint(str(tmp_path))
    weights = tmp_path / "weights.pth"
    weights.write_bytes(b"x")
    with pytest.raises(ArtifactError, match="is a file"):
        resolve_text_checkpoint(str(weights))


@pytest.mark.parametrize("name", ["local-dir:/no/such/folder", "/no/such/folder", "./missing"])
def test_missing_explicit_path_fails_without_fallback(name: str) -> None:
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        resolve_image_checkpoint(name)


@pytest.mark.parametrize("name", ["", "   ", None, 3])
def test_bad_names_are_config_errors(name: Any) -> None:
    with pytest.raises(ConfigError):
        resolve_image_checkpoint(name)
    with pytest.raises(ConfigError):
        resolve_text_checkpoint(name)


# ---------------------------------------------------------------------------- not found


def test_unknown_names_name_the_extra_and_what_was_tried() -> None:
    with pytest.raises(CheckpointNotFoundError) as info:
        resolve_image_checkpoint("nobody/no-such-model")
    message = str(info.value)
    assert "'nobody/no-such-model'" in message
    assert INSTALL_HINT in message
    assert "HF_HUB_OFFLINE is set" in message
    assert "local folder" in message

    with pytest.raises(CheckpointNotFoundError, match=r"late-fusion\[offline-models\]"):
        resolve_text_checkpoint("nobody/no-such-model")
    assert isinstance(info.value, FileNotFoundError)


def test_unknown_timm_names_suggest_close_matches() -> None:
    with pytest.raises(CheckpointNotFoundError, match="resnet18"):
        resolve_image_checkpoint("resnt18")
    with pytest.raises(CheckpointNotFoundError, match=r"Known: tf_efficientnet_lite0\.in1k"):
        resolve_image_checkpoint("tf_efficientnet_lite0.bogus")
    with pytest.raises(CheckpointNotFoundError, match="did you mean 'tf_efficientnet_lite0'"):
        resolve_image_checkpoint("efficientnet_lite0")  # a different timm model: not mirrored


def test_timm_model_without_weights_says_use_pretrained_false() -> None:
    with pytest.raises(CheckpointNotFoundError, match="pretrained=False"):
        resolve_image_checkpoint("resnet50_mlp.untrained")


# ---------------------------------------------------------------------------- one resolver


def test_the_wrappers_are_the_generic_resolver(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert set(MODEL_LIBRARIES) == {"timm", "transformers", "transformers-audio"}
    assert resolve_checkpoint_for("timm", str(tmp_path)) == resolve_image_checkpoint(
        str(tmp_path))
    assert resolve_checkpoint_for("transformers", str(tmp_path)) == resolve_text_checkpoint(
        str(tmp_path))
    with pytest.raises(CheckpointNotFoundError, match="Cannot find the text checkpoint"):
        resolve_checkpoint_for(MODEL_LIBRARIES["transformers"], "nobody/none")


def test_unknown_library_suggests_a_close_name() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'timm'") as info:
        resolve_checkpoint_for("timn", "resnet18")
    assert "'transformers'" in str(info.value)


def test_another_library_is_one_more_instance(
    fake_hf_cache: Callable[[str, dict[str, str]], Path],
) -> None:
    """An audio library (feature extractor instead of a tokenizer) needs no resolver change."""
    audio = ModelLibrary(
        name="transformers-audio", modality="audio",  # type: ignore[arg-type]
        hub_target=transformers_hub_target,
        snapshot_files=(("config.json",), WEIGHT_FILES, ("preprocessor_config.json",)),
        folder_hint="a transformers folder with a feature extractor",
    )
    complete = fake_hf_cache("acme/wav", {
        "config.json": "{}", "model.safetensors": "", "preprocessor_config.json": "{}"})
    fake_hf_cache("acme/bert", {
        "config.json": "{}", "model.safetensors": "", "tokenizer.json": "{}"})

    assert resolve_checkpoint_for(audio, "acme/wav") == str(complete)
    with pytest.raises(CheckpointNotFoundError) as info:
        resolve_checkpoint_for(audio, "acme/bert")  # a text snapshot: no feature extractor
    message = str(info.value)
    assert "Cannot find the audio checkpoint 'acme/bert'" in message
    assert "'acme/bert' is not fully cached" in message
    assert "mirrored audio names: none" in message


@pytest.mark.parametrize(
    "kwargs",
    [{"name": ""}, {"modality": None}, {"hub_target": "not callable"}, {"snapshot_files": ()},
     {"snapshot_files": ((),)}, {"snapshot_files": (("config.json", 3),)},
     {"offline_switches": 3}, {"folder_hint": ""}, {"folder_prefix": None}],
)
def test_model_library_validates_its_fields(kwargs: dict[str, Any]) -> None:
    fields: dict[str, Any] = {"name": "x", "modality": "text", "hub_target": lambda n, a: None,
                              "snapshot_files": (("config.json",),), "folder_hint": "a folder"}
    ModelLibrary(**fields)
    with pytest.raises(ConfigError):
        ModelLibrary(**{**fields, **kwargs})


def test_model_library_normalises_file_groups() -> None:
    library = ModelLibrary(name="x", modality="text", hub_target=lambda n, a: None,
                           snapshot_files=[["config.json"], "model.safetensors"],  # type: ignore[arg-type]
                           offline_switches=["X_OFFLINE"],  # type: ignore[arg-type]
                           folder_hint="a folder")
    assert library.snapshot_files == (("config.json",), ("model.safetensors",))
    assert library.offline_switches == ("X_OFFLINE",)


# ---------------------------------------------------------------------------- public names


def test_every_public_name_is_importable() -> None:
    for name in checkpoints.__all__:
        assert getattr(checkpoints, name) is not None, name
    before_the_split = {  # public in ensemble/checkpoints.py before it became a package
        "CACHE_ENV", "HUB_TIMEOUT_ENV", "OFFLINE_ENV", "OfflineMirror", "cache_dir",
        "convert_timm_state_dict", "import_mirror_module", "list_mirrors", "register_mirror",
        "resolve_image_checkpoint", "resolve_text_checkpoint", "Modality", "MODALITIES",
        "DISTRIBUTION", "OFFLINE_EXTRA", "LOCAL_PREFIX", "HUB_PREFIX",
    }
    assert before_the_split <= set(checkpoints.__all__)
    assert checkpoints.MODALITIES == ("image", "text", "audio")
    assert ensemble.resolve_text_checkpoint is resolve_text_checkpoint

