"""Classification metrics on predicted distributions, and a small report table.

Every function takes integer labels ``y [N]`` and probabilities ``proba [N, C]``.

Example:
    >>> import numpy as np
    >>> y = np.array([0, 1, 1])
    >>> proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    >>> round(accuracy(y, proba), 3), round(nll(y, proba), 3)
    (0.667, 0.415)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .exceptions import InvalidLogitsError, LabelError

__all__ = [
    "METRICS",
    "accuracy",
    "brier",
    "ece",
    "evaluate",
    "format_report",
    "macro_f1",
    "nll",
    "oracle_accuracy",
    "oracle_hits",
]


def _checked(y: Any, proba: Any) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(y)
    probs = np.asarray(proba, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] == 0:
        raise InvalidLogitsError(f"proba must be a non-empty [N, C] array, got {probs.shape}.")
    if labels.shape != (probs.shape[0],) or labels.dtype.kind not in "iu":
        raise LabelError(
            f"y must hold {probs.shape[0]} integer labels, got shape {labels.shape} "
            f"of dtype {labels.dtype}."
        )
    if labels.min() < 0 or labels.max() >= probs.shape[1]:
        raise LabelError(
            f"labels must lie in [0, {probs.shape[1]}), got {labels.min()}..{labels.max()}."
        )
    if not np.isfinite(probs).all():
        raise InvalidLogitsError("proba holds NaN/inf values.")
    return labels, probs


def accuracy(y: Any, proba: Any) -> float:
    """Fraction of rows whose most probable class is the label."""
    labels, probs = _checked(y, proba)
    return float((probs.argmax(axis=1) == labels).mean())


def macro_f1(y: Any, proba: Any) -> float:
    """Unweighted mean over classes of the F1 score of ``argmax(proba)``.

    Classes that never occur and are never predicted are left out of the mean.
    """
    labels, probs = _checked(y, proba)
    predicted = probs.argmax(axis=1)
    n_classes = probs.shape[1]
    true_pos = np.bincount(labels[predicted == labels], minlength=n_classes)
    support = np.bincount(labels, minlength=n_classes)
    chosen = np.bincount(predicted, minlength=n_classes)
    denominator = support + chosen
    used = denominator > 0
    return float((2 * true_pos[used] / denominator[used]).mean())


def nll(y: Any, proba: Any, eps: float = 1e-12) -> float:
    """Mean negative log-likelihood of the labels (natural log)."""
    labels, probs = _checked(y, proba)
    return float(-np.log(np.clip(probs[np.arange(labels.size), labels], eps, 1.0)).mean())


def brier(y: Any, proba: Any) -> float:
    """Mean over rows of the squared distance between ``proba`` and the one-hot label."""
    labels, probs = _checked(y, proba)
    target = np.zeros_like(probs)
    target[np.arange(labels.size), labels] = 1.0
    return float(((probs - target) ** 2).sum(axis=1).mean())


def ece(y: Any, proba: Any, n_bins: int = 15) -> float:
    """Expected calibration error of the top-1 confidence over ``n_bins`` equal-width bins."""
    labels, probs = _checked(y, proba)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    bins = np.minimum((confidence * n_bins).astype(np.int64), n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    gap = np.abs(
        np.bincount(bins, weights=correct, minlength=n_bins)
        - np.bincount(bins, weights=confidence, minlength=n_bins)
    )
    return float(gap.sum() / counts.sum())


def oracle_hits(
    y: Any, expert_probas: Mapping[str, Any], mask: Mapping[str, Any] | None = None
) -> np.ndarray:
    """Boolean ``[N]``: rows where at least one (present) expert's top class is the label."""
    if not expert_probas:
        raise InvalidLogitsError("the oracle needs at least one expert's probabilities.")
    hits = np.zeros(np.shape(y), dtype=bool)
    for name, proba in expert_probas.items():
        labels, probs = _checked(y, proba)
        right = probs.argmax(axis=1) == labels
        if mask is not None and name in mask:
            right &= np.asarray(mask[name], dtype=bool)
        hits |= right
    return hits


def oracle_accuracy(
    y: Any, expert_probas: Mapping[str, Any], mask: Mapping[str, Any] | None = None
) -> float:
    """Fraction of rows where at least one (present) expert's top class is the label.

    An upper bound for any combiner that picks one expert per example.
    """
    return float(oracle_hits(y, expert_probas, mask).mean())


METRICS: dict[str, Callable[[Any, Any], float]] = {
    "accuracy": accuracy,
    "macro_f1": macro_f1,
    "nll": nll,
    "brier": brier,
    "ece": ece,
}


def evaluate(y: Any, proba: Any) -> dict[str, float]:
    """Every metric of :data:`METRICS` for one predicted distribution."""
    return {name: fn(y, proba) for name, fn in METRICS.items()}


def format_report(results: Mapping[str, Mapping[str, float]], digits: int = 4) -> str:
    """A Markdown table with one row per model and one column per metric.

    Example:
        >>> print(format_report({"soft": {"accuracy": 0.9, "nll": 0.31}}))
        | model | accuracy | nll |
        | --- | --- | --- |
        | soft | 0.9000 | 0.3100 |
    """
    columns: list[str] = []
    for row in results.values():
        columns.extend(c for c in row if c not in columns)
    lines = ["| model | " + " | ".join(columns) + " |", "| --- " * (len(columns) + 1) + "|"]
    for name, row in results.items():
        cells = [f"{row[c]:.{digits}f}" if c in row else "" for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
