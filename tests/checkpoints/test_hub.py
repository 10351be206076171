"""The Hugging Face cache and Hub: cached snapshots, one bounded probe, the offline switches."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ensemble import checkpoints
from ensemble.checkpoints import hub, resolve_image_checkpoint, resolve_text_checkpoint
from ensemble.exceptions import CheckpointNotFoundError, ConfigError

MINILM = "sentence-transformers/all-MiniLM-L6-v2"

Online = Callable[[hub.Probe], list[tuple[Any, ...]]]
FakeCache = Callable[[str, dict[str, str]], Path]


def test_cached_hub_snapshots_are_used_without_the_network(
    fake_hf_cache: FakeCache, online: Online
) -> None:
    text = fake_hf_cache("acme/bert", {"config.json": "{}", "model.safetensors": "",
                                       "tokenizer_config.json": "{}"})
    image = fake_hf_cache("acme/vit", {"config.json": "{}", "model.safetensors": ""})
    partial = fake_hf_cache("acme/partial", {"config.json": "{}",
                                             "model.safetensors": ""})  # no tokenizer
    sharded = fake_hf_cache("acme/sharded", {
        "config.json": "{}", "tokenizer.json": "{}",
        "model.safetensors.index.json": json.dumps({"weight_map": {"a": "part-1.safetensors"}}),
    })
    calls = online(hub.Probe.UNREACHABLE)

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
    online: Online, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = online(hub.Probe.FOUND)
    monkeypatch.setenv(checkpoints.HUB_TIMEOUT_ENV, "0.5")
    assert resolve_image_checkpoint("resnet18") == "resnet18"
    assert calls[-1] == ("timm/resnet18.a1_in1k", "config.json", None, 0.5)
    assert resolve_image_checkpoint("acme/vit") == "hf-hub:acme/vit"
    assert resolve_image_checkpoint("hf-hub:acme/vit@v2") == "hf-hub:acme/vit@v2"
    assert calls[-1][:3] == ("acme/vit", "config.json", "v2")
    assert resolve_text_checkpoint("acme/bert") == "acme/bert"
    assert resolve_text_checkpoint(MINILM) == MINILM  # the Hub wins over the mirror


def test_unreachable_hub_falls_back_to_the_mirror_once(converted: str, online: Online) -> None:
    calls = online(hub.Probe.UNREACHABLE)
    assert resolve_image_checkpoint("tf_efficientnet_lite0") == converted
    assert resolve_image_checkpoint("timm/tf_efficientnet_lite0.in1k") == converted
    assert len(calls) == 1  # the failed probe is remembered
    with pytest.raises(CheckpointNotFoundError, match="unreachable less than a minute ago"):
        resolve_text_checkpoint("acme/bert")
    checkpoints.clear_hub_memo()  # the network is back
    resolve_image_checkpoint("tf_efficientnet_lite0")
    assert len(calls) == 2


def test_missing_hub_repo_falls_back_to_the_mirror(online: Online) -> None:
    online(hub.Probe.MISSING)
    assert Path(resolve_text_checkpoint(MINILM), "config.json").is_file()


@pytest.mark.parametrize("variable", ["ENSEMBLE_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"])
def test_offline_switches_skip_the_hub(
    variable: str, online: Online, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = online(hub.Probe.FOUND)
    monkeypatch.setenv(variable, "1")
    with pytest.raises(CheckpointNotFoundError, match=f"{variable} is set"):
        resolve_text_checkpoint("acme/bert")
    assert calls == []


def test_transformers_offline_leaves_timm_online(
    online: Online, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = online(hub.Probe.FOUND)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    assert resolve_image_checkpoint("acme/vit") == "hf-hub:acme/vit"
    assert len(calls) == 1


def test_bad_hub_timeout_is_a_config_error(
    online: Online, monkeypatch: pytest.MonkeyPatch
) -> None:
    online(hub.Probe.FOUND)
    monkeypatch.setenv(checkpoints.HUB_TIMEOUT_ENV, "soon")
    with pytest.raises(ConfigError, match="ENSEMBLE_HUB_TIMEOUT"):
        resolve_text_checkpoint("acme/bert")


def test_probe_hub_makes_one_bounded_request(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    requests: list[tuple[str, float]] = []
    answer: list[BaseException | None] = [None]

    def metadata(url: str, *, timeout: float, **kwargs: Any) -> None:
        requests.append((url, timeout))
        if answer[0] is not None:
            raise answer[0]

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", metadata)
    assert hub.probe_hub("acme/vit", "config.json", "v2", 0.5) == (hub.Probe.FOUND, "found")
    assert requests == [("https://huggingface.co/acme/vit/resolve/v2/config.json", 0.5)]
    answer[0] = ConnectionError("no route to host")
    status, detail = hub.probe_hub("acme/vit", "config.json", None, 0.5)
    assert status is hub.Probe.UNREACHABLE
    assert "ConnectionError: no route to host" in detail
