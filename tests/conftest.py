"""Shared fixtures: tiny models built from config and tiny generated data, all offline."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

# Under pytest-xdist (README: `pytest -n auto`) the workers share the cores: each gets its
# share of BLAS/torch threads (set before torch loads; subprocesses inherit it) instead of
# every worker starting one thread per core.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))

from ensemble import testing  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

WORDS = [
    "red",
    "green",
    "blue",
    "yellow",
    "circle",
    "square",
    "triangle",
    "star",
    "big",
    "small",
    "happy",
    "sad",
    "face",
    "cat",
    "dog",
    "apple",
    "banana",
    "car",
    "train",
    "flag",
    "heart",
    "hand",
    "sun",
    "moon",
]


def build_tiny_text_checkpoint(directory: Path) -> Path:
    """A 2-layer, 32-wide BERT with a word-level tokenizer over WORDS, saved like a Hub folder."""
    return testing.build_tiny_text_checkpoint(directory, WORDS)


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread for a module's tests (tiny models: threads only contend on a busy
    machine); the thread count is restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_text_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_text_checkpoint(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_audio_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-layer, 16-wide wav2vec2 classifier + feature extractor (16 kHz, attention masks)."""
    return testing.build_tiny_audio_checkpoint(tmp_path_factory.mktemp("tiny-wav2vec2"))


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered before running it: dataclasses look their module up in sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def benchmark_script() -> Callable[[str], ModuleType]:
    """``benchmark_script("combiners")`` imports ``benchmarks/combiners.py``."""
    return _load
