"""Small numerically stable helpers on ``[N, M, C]`` log-probability stacks."""

from __future__ import annotations

import numpy as np

__all__ = ["entropy", "log_softmax", "margin", "masked_weights", "softmax"]


def log_softmax(scores: np.ndarray, axis: int = -1) -> np.ndarray:
    """``log(softmax(scores))`` along ``axis``, stable for large values."""
    shifted = scores - scores.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def softmax(scores: np.ndarray, axis: int = -1) -> np.ndarray:
    """``softmax(scores)`` along ``axis``."""
    return np.exp(log_softmax(scores, axis=axis))


def entropy(log_probs: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) over the last axis of log-probabilities."""
    return -(np.exp(log_probs) * log_probs).sum(axis=-1)


def margin(log_probs: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 probability over the last axis."""
    top2 = np.partition(np.exp(log_probs), -2, axis=-1)[..., -2:]
    return top2[..., 1] - top2[..., 0]


def masked_weights(weights: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-row expert weights ``[N, M]``: ``weights`` zeroed where absent, renormalised.

    A row whose present experts all have zero weight falls back to equal weights over the
    present experts; a row with no expert present gets all zeros (callers then return the
    uniform distribution).
    """
    per_row = np.broadcast_to(weights, mask.shape) * mask
    total = per_row.sum(axis=1, keepdims=True)
    fallback = mask / np.maximum(mask.sum(axis=1, keepdims=True), 1)
    safe = np.where(total > 0, total, 1.0)
    return np.where(total > 0, per_row / safe, fallback)
