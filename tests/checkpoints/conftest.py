"""Checkpoint tests run offline, with a private cache, a clean mirror registry and Hub memo."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ensemble import checkpoints
from ensemble.checkpoints import hub


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Every test starts offline, with a private cache and no memory of earlier Hub probes.

    Mirrors a test registers are dropped afterwards and the registry is restored as it was.
    """
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv(checkpoints.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(checkpoints.OFFLINE_ENV, raising=False)
    monkeypatch.delenv(checkpoints.HUB_TIMEOUT_ENV, raising=False)
    registered = checkpoints.list_mirrors()
    checkpoints.clear_hub_memo()
    yield
    checkpoints.clear_hub_memo()
    for mirror in checkpoints.list_mirrors():
        checkpoints.unregister_mirror(mirror)
    for mirror in registered:
        checkpoints.register_mirror(mirror)


@pytest.fixture(scope="session")
def converted_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real conversion of the EfficientNet-Lite0 mirror, shared by the session."""
    root = tmp_path_factory.mktemp("ensemble-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv(checkpoints.CACHE_ENV, str(root))
        checkpoints.resolve_image_checkpoint("tf_efficientnet_lite0")
    return root


@pytest.fixture
def converted(converted_cache: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """``resolve_image_checkpoint("tf_efficientnet_lite0")`` served from the shared cache."""
    monkeypatch.setenv(checkpoints.CACHE_ENV, str(converted_cache))
    return checkpoints.resolve_image_checkpoint("tf_efficientnet_lite0")


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> Callable[[hub.Probe], list[tuple[Any, ...]]]:
    """``online(status)`` pretends the Hub is allowed and answers ``status``.

    Returns the list of probes made, as ``(repo_id, filename, revision, timeout)``.
    """

    def pretend(status: hub.Probe) -> list[tuple[Any, ...]]:
        from huggingface_hub import constants

        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", checkpoints.OFFLINE_ENV):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        calls: list[tuple[Any, ...]] = []

        def probe(repo_id: str, filename: str, revision: str | None, timeout: float
                  ) -> tuple[hub.Probe, str]:
            calls.append((repo_id, filename, revision, timeout))
            return status, status.value

        monkeypatch.setattr(hub, "probe_hub", probe)
        return calls

    return pretend


@pytest.fixture
def fake_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                  ) -> Callable[[str, dict[str, str]], Path]:
    """``fake_hf_cache(repo_id, {file: text})`` writes a Hub cache snapshot; returns its folder.

    The Hugging Face cache is pointed at ``tmp_path / "hub"`` for the test.
    """
    from huggingface_hub import constants

    root = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(root))

    def write(repo_id: str, files: dict[str, str]) -> Path:
        repo = root / f"models--{repo_id.replace('/', '--')}"
        snapshot = repo / "snapshots" / "0123abcd"
        snapshot.mkdir(parents=True)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text("0123abcd")
        for name, content in files.items():
            (snapshot / name).write_text(content)
        return snapshot

    return write
