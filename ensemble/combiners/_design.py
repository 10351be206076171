"""Design matrices for learned combiners: modality dropout and missing-indicator features."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ._math import entropy

__all__ = ["META_FEATURES", "modality_dropout", "stacking_blocks", "stacking_features"]

_FEATURES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "log_proba": lambda log_probs: log_probs,
    "entropy": lambda log_probs: entropy(log_probs)[:, :, None],
    "max_proba": lambda log_probs: np.exp(log_probs.max(axis=2, keepdims=True)),
}
META_FEATURES = tuple(_FEATURES)


def modality_dropout(
    mask: np.ndarray, rate: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Extra training rows with experts dropped, to teach a model to handle missing ones.

    Each present expert of each row is dropped with probability ``rate`` (a row always keeps
    at least one expert). Returns the indices of the rows that changed and their new masks,
    to be appended to the original rows.
    """
    if rate <= 0:
        return np.empty(0, dtype=np.int64), np.empty((0, mask.shape[1]), dtype=bool)
    reduced = mask & (rng.random(mask.shape) >= rate)
    emptied = ~reduced.any(axis=1)
    reduced[emptied] = mask[emptied]
    changed = np.flatnonzero((reduced != mask).any(axis=1))
    return changed, reduced[changed]


def stacking_features(
    log_probs: np.ndarray, mask: np.ndarray, kinds: Sequence[str]
) -> np.ndarray:
    """``[N, F]`` features: per expert the chosen ``kinds``, zero when absent, then ``1 - mask``.

    Zero-filling an absent expert's block removes its contribution to a linear model; the
    indicator columns let the model shift its bias for each missing pattern.
    """
    present = mask[:, :, None].astype(np.float32)
    blocks = [_FEATURES[kind](log_probs) * present for kind in kinds]
    stacked = np.concatenate(blocks, axis=2)
    per_expert = stacked.reshape(mask.shape[0], stacked.shape[1] * stacked.shape[2])
    return np.concatenate([per_expert, 1.0 - mask.astype(np.float32)], axis=1)


def stacking_blocks(
    log_probs: np.ndarray, mask: np.ndarray, kinds: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """The same columns as :func:`stacking_features`, split for a classwise model.

    Returns ``blocks`` ``[N, B, C]`` (each expert's log-probabilities, zero when absent;
    ``B = 0`` without ``"log_proba"``) and ``scalars`` ``[N, K]`` (the per-expert scalar
    kinds, zero when absent, then ``1 - mask``).
    """
    present = mask.astype(np.float32)
    if "log_proba" not in kinds:
        blocks = np.zeros((mask.shape[0], 0, log_probs.shape[2]), dtype=np.float32)
    elif mask.all() or not (log_probs[~mask] != 0).any():
        blocks = log_probs  # absent experts are already zero-filled
    else:
        blocks = log_probs * present[:, :, None]
    scalars = [_FEATURES[kind](log_probs)[:, :, 0] * present for kind in kinds
               if kind != "log_proba"]
    return blocks, np.concatenate([*scalars, 1.0 - present], axis=1).astype(np.float32)
