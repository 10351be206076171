"""Temperature scaling (Guo et al., 2017): one scalar per expert, fitted on held-out NLL."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator

from ..exceptions import ConfigError, InvalidLogitsError, LabelError, NotFittedError
from ._math import log_softmax

__all__ = ["TemperatureScaler", "fit_temperatures"]


class TemperatureScaler(BaseEstimator):
    """Divide logits by a temperature ``T`` chosen to minimise NLL (LBFGS on ``log T``).

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> y = rng.integers(0, 3, 500)
        >>> logits = 8.0 * np.eye(3)[y] + rng.normal(0, 4, (500, 3))
        >>> scaler = TemperatureScaler().fit(logits, y)
        >>> bool(scaler.temperature_ > 1.0)  # over-confident logits are softened
        True
    """

    def __init__(self, *, max_iter: int = 50) -> None:
        self.max_iter = max_iter

    def fit(self, logits: Any, y: Any) -> TemperatureScaler:
        """Fit ``temperature_`` on ``logits [N, C]`` and integer labels ``y [N]``."""
        scores = np.asarray(logits, dtype=np.float64)
        labels = np.asarray(y)
        if scores.ndim != 2 or scores.shape[0] == 0:
            raise InvalidLogitsError(
                f"logits must be a non-empty [N, C] array, got {scores.shape}."
            )
        if not np.isfinite(scores).all():
            raise InvalidLogitsError(
                "logits hold NaN/inf values; temperature scaling needs finite logits."
            )
        if labels.shape != (scores.shape[0],) or labels.dtype.kind not in "iu":
            raise LabelError(f"y must be {scores.shape[0]} integer labels, got {labels.shape}.")
        if labels.min() < 0 or labels.max() >= scores.shape[1]:
            raise LabelError(f"labels must lie in [0, {scores.shape[1]}).")
        if self.max_iter < 1:
            raise ConfigError(f"max_iter must be >= 1, got {self.max_iter!r}.")
        self.temperature_ = _fit_temperature(scores, labels, self.max_iter)
        return self

    def transform(self, logits: Any) -> np.ndarray:
        """``logits / temperature_``."""
        if not hasattr(self, "temperature_"):
            raise NotFittedError("TemperatureScaler is not fitted yet; call fit(logits, y).")
        return np.asarray(logits, dtype=np.float32) / np.float32(self.temperature_)

    def predict_proba(self, logits: Any) -> np.ndarray:
        """Calibrated class probabilities ``softmax(logits / T)``."""
        return np.exp(log_softmax(self.transform(logits)))


def _fit_temperature(scores: np.ndarray, labels: np.ndarray, max_iter: int) -> float:
    logits = torch.as_tensor(scores, dtype=torch.float64)
    target = torch.as_tensor(labels, dtype=torch.long)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), target)
        loss.backward()
        return loss

    optimiser.step(closure)
    value = float(log_t.detach().clamp(-5.0, 5.0).exp())
    return value if np.isfinite(value) else 1.0


def fit_temperatures(
    logits: np.ndarray, mask: np.ndarray, y: np.ndarray, *, max_iter: int = 50
) -> np.ndarray:
    """One temperature per expert of a ``[N, M, C]`` stack, each fitted on its present rows.

    An expert present on no row keeps ``T = 1``.
    """
    temperatures = np.ones(logits.shape[1], dtype=np.float32)
    for j in range(logits.shape[1]):
        rows = mask[:, j]
        if rows.any():
            temperatures[j] = _fit_temperature(
                logits[rows, j].astype(np.float64), y[rows], max_iter
            )
    return temperatures
