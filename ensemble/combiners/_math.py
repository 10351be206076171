"""Small numerically stable helpers on ``[N, M, C]`` log-probability stacks."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch

from ..labels import log_softmax, softmax

__all__ = [
    "entropy", "expert_log_probs", "log_softmax", "margin", "masked_weights", "mix", "softmax",
]


def expert_log_probs(
    logits: Sequence[np.ndarray], temperatures: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """The ``[N, M, C]`` float32 stack of ``log_softmax(logits[m] / temperatures[m])``, zero
    where ``mask`` is false (one fused, multi-threaded torch pass per expert)."""
    n_rows, n_classes = logits[0].shape
    out = np.empty((n_rows, len(logits), n_classes), dtype=np.float32)
    target = torch.from_numpy(out)
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        for j, array in enumerate(logits):
            scores = torch.from_numpy(np.asarray(array, dtype=np.float32))
            if float(temperatures[j]) != 1.0:
                scores = scores / float(temperatures[j])
            target[:, j] = torch.log_softmax(scores, dim=1)
    out[~mask] = 0.0
    return out


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


def mix(weights: np.ndarray, values: np.ndarray, *, exp: bool = False) -> np.ndarray:
    """Per-row weighted sum over experts, ``sum_m weights[n, m] * values[n, m, :]`` (float64).

    With ``exp=True`` the values are log-probabilities and the probabilities are mixed. One
    accumulation per expert in the dtype of ``values``, no ``[N, M, C]`` temporary.
    """
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        stack = torch.from_numpy(values)
        row_weights = torch.from_numpy(np.asarray(weights)).to(stack.dtype)
        total = torch.zeros(stack.shape[0], stack.shape[2], dtype=stack.dtype)
        for j in range(stack.shape[1]):
            column = stack[:, j].exp() if exp else stack[:, j]
            total.addcmul_(row_weights[:, j, None], column)
        return total.double().numpy()
