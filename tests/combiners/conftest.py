"""Generated expert logits for combiner tests.

Each of the ``M`` experts is reliable on its own third of the classes (``y % M == m``):
there it names the true class with high confidence; elsewhere it is usually confidently
wrong. Which expert to trust therefore depends on the example, and every expert carries
information the others lack. Embeddings are a noisy linear map of the expert's logits.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from ensemble.combiners import create_combiner
from ensemble.combiners.base import Combiner
from ensemble.logits import LogitSet

MODALITIES = ("image", "text", "audio")
CLASS_NAMES = [f"class_{i}" for i in range(6)]

# Small, fast settings for every registered combiner (keeps the suite quick).
FAST_PARAMS: dict[str, dict[str, object]] = {
    # auto's own tests (test_combiners_each.py) try its whole menu with 5 folds
    "auto": {"cv": 3, "choices": ("experts", "average", "voting", "stacking")},
    "gating": {"max_epochs": 6},
    "selection": {"n_iterations": 10},
    "stacking": {"Cs": (1.0,)},
}


def make_logits(
    n: int,
    *,
    seed: int = 0,
    n_modalities: int = 3,
    missing: float = 0.0,
    n_features: int = 12,
) -> tuple[LogitSet, np.ndarray]:
    """A LogitSet of ``n`` rows (with features) and integer labels."""
    rng = np.random.default_rng(seed)
    n_classes = len(CLASS_NAMES)
    y = rng.integers(0, n_classes, n)
    logits, features = {}, {}
    projection = np.random.default_rng(1234).normal(size=(n_modalities, n_classes, n_features))
    for m, name in enumerate(MODALITIES[:n_modalities]):
        good = (y % n_modalities) == m
        wrong = (y + rng.integers(1, n_classes, n)) % n_classes
        lucky = rng.random(n) < np.where(good, 0.95, 0.35)
        target = np.where(lucky, y, wrong)
        boost = np.where(good, rng.normal(3.0, 1.0, n), rng.normal(2.0, 0.7, n))
        scores = rng.normal(0.0, 1.0, (n, n_classes))
        scores[np.arange(n), target] += boost
        logits[name] = scores
        features[name] = scores @ projection[m] + rng.normal(0.0, 0.3, (n, n_features))
    mask = None
    if missing:
        mask = rng.random((n, n_modalities)) >= missing
        mask[~mask.any(axis=1), rng.integers(0, n_modalities)] = True
    return LogitSet(logits, CLASS_NAMES, mask=mask, features=features), y


def fast_combiner(name: str, **params: object) -> Combiner:
    """``create_combiner`` with the suite's fast settings."""
    return create_combiner(name, **{**FAST_PARAMS.get(name, {}), **params})


@pytest.fixture(scope="session")
def train_set() -> tuple[LogitSet, np.ndarray]:
    return make_logits(3000, seed=0)


@pytest.fixture(scope="session")
def test_set() -> tuple[LogitSet, np.ndarray]:
    return make_logits(3000, seed=1)


@pytest.fixture(scope="session")
def small_set() -> tuple[LogitSet, np.ndarray]:
    return make_logits(300, seed=2)


@pytest.fixture(scope="session")
def make() -> Callable[..., tuple[LogitSet, np.ndarray]]:
    return make_logits


@pytest.fixture(scope="session")
def combiner_factory() -> Callable[..., Combiner]:
    return fast_combiner
