"""Voting: hard (majority), soft (mean probability) or geometric (product of experts)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import torch

from ..exceptions import ConfigError, ModalityError
from ._checks import check_choice
from ._inputs import LogitsLike, MaskLike
from ._math import masked_weights, mix
from .base import PREDICT_CHUNK_ROWS, Combiner, FusionData
from .graph import torch_masked_weights
from .registry import register_combiner

__all__ = ["VotingCombiner"]

_METHODS = ("hard", "soft", "geometric")
_MAX_WEIGHT_ROWS = 50_000


@register_combiner("voting")
class VotingCombiner(Combiner):
    """Weighted vote over experts.

    ``method``: ``"soft"`` averages probabilities, ``"geometric"`` averages log-probabilities
    (a product of experts, renormalised), ``"hard"`` counts each expert's top class (ties
    broken by summed probability; ``predict_proba`` is half vote share, half soft mean).
    ``weights``: ``None`` (equal), ``{modality: weight}``, or ``"fit"`` for simplex weights
    minimising the held-out NLL of the fused distribution.

    Missing experts: each row renormalises the weights over the experts present.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> y = rng.integers(0, 3, 300)
        >>> logits = {"image": 3 * np.eye(3)[y] + rng.normal(size=(300, 3)),
        ...           "text": rng.normal(size=(300, 3))}
        >>> voter = VotingCombiner(weights="fit").fit(logits, y)
        >>> bool(voter.weights_[0] > voter.weights_[1])  # the informative expert dominates
        True
    """

    _predict_chunk_rows = PREDICT_CHUNK_ROWS

    def __init__(
        self,
        *,
        method: Literal["hard", "soft", "geometric"] = "soft",
        weights: Mapping[str, float] | Literal["fit"] | None = None,
        calibrate: bool = False,
        pattern_guard: bool = True,
    ) -> None:
        self.method = method
        self.weights = weights
        self.calibrate = calibrate
        self.pattern_guard = pattern_guard

    def _check_params(self) -> None:
        check_choice("method", self.method, _METHODS)
        if not (self.weights is None or self.weights == "fit" or isinstance(self.weights, Mapping)):
            raise ConfigError(
                "weights must be None, 'fit' or a mapping {modality: weight}, "
                f"got {self.weights!r}."
            )

    def _fit(self, data: FusionData, y: np.ndarray) -> None:
        modalities = self.expert_names_
        if self.weights is None:
            weights = np.ones(len(modalities))
        elif self.weights == "fit":
            weights = _fit_simplex_weights(data, y, geometric=self.method == "geometric")
        else:
            weights = _named_weights(self.weights, modalities)  # type: ignore[arg-type]
        self.weights_ = (weights / weights.sum()).astype(np.float64)

    def _row_weights(self, data: FusionData) -> np.ndarray:
        return masked_weights(self.weights_, data.mask)

    def _log_proba(self, data: FusionData) -> np.ndarray:
        row_weights = self._row_weights(data)
        if self.method == "geometric":
            return mix(row_weights, data.log_probs)
        soft = mix(row_weights, data.log_probs, exp=True)
        if self.method == "hard":
            soft = 0.5 * soft + 0.5 * _votes(data, row_weights)
        return np.log(np.maximum(soft, 1e-300))

    def predict(self, logits: LogitsLike, *, mask: MaskLike = None) -> np.ndarray:
        """Predicted labels; for ``method="hard"`` the weighted majority, ties by probability."""
        if self.method != "hard":
            return super().predict(logits, mask=mask)
        data = self._validated(logits, mask)
        row_weights = self._row_weights(data)
        votes = _votes(data, row_weights)
        soft = mix(row_weights, data.log_probs, exp=True)
        tied = votes >= votes.max(axis=1, keepdims=True) - 1e-9
        return self.classes_[np.where(tied, soft, -1.0).argmax(axis=1)]

    def fusion_module(self) -> torch.nn.Module:
        return _VotingModule(self.weights_, self.method, self.n_classes_)

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return {"weights": self.weights_}, {}

    def _restore(self, arrays: dict[str, np.ndarray], state: dict[str, Any],
                 directory: Any) -> None:
        weights = np.asarray(arrays["weights"], dtype=np.float64)
        if weights.shape != (len(self.expert_names_),):
            raise ValueError(f"weights have shape {weights.shape}")
        self.weights_ = weights


class _VotingModule(torch.nn.Module):
    """:meth:`VotingCombiner._log_proba` as a module (see :mod:`.graph`)."""

    def __init__(self, weights: np.ndarray, method: str, n_classes: int) -> None:
        super().__init__()
        self.register_buffer("weights", torch.as_tensor(weights, dtype=torch.float32))
        self.method = method
        self.n_classes = n_classes

    def forward(self, log_probs: torch.Tensor, mask: torch.Tensor, logits: torch.Tensor,
                features: list[torch.Tensor]) -> torch.Tensor:
        weights = torch_masked_weights(self.weights, mask).unsqueeze(-1)
        if self.method == "geometric":
            return (weights * log_probs).sum(dim=1)
        soft = (weights * log_probs.exp()).sum(dim=1)
        if self.method == "hard":
            top = torch.nn.functional.one_hot(log_probs.argmax(dim=2), self.n_classes)
            soft = 0.5 * soft + 0.5 * (weights * top.to(weights.dtype)).sum(dim=1)
        return torch.log(soft.clamp_min(1e-30))


def _votes(data: FusionData, row_weights: np.ndarray) -> np.ndarray:
    top = data.log_probs.argmax(axis=2)
    n_classes = data.log_probs.shape[2]
    flat = (np.arange(data.n_rows)[:, None] * n_classes + top).ravel()
    votes = np.bincount(flat, weights=row_weights.ravel(), minlength=data.n_rows * n_classes)
    return votes.reshape(data.n_rows, n_classes)


def _named_weights(weights: Mapping[str, float], modalities: tuple[str, ...]) -> np.ndarray:
    missing = [m for m in modalities if m not in weights]
    extra = [m for m in weights if m not in modalities]
    if missing or extra:
        raise ModalityError(
            f"weights must name exactly the modalities {list(modalities)!r}; "
            f"missing {missing!r}, unexpected {extra!r}."
        )
    values = np.array([float(weights[m]) for m in modalities])
    if not np.isfinite(values).all() or (values < 0).any() or values.sum() <= 0:
        raise ConfigError(f"weights must be finite, >= 0 and not all zero, got {dict(weights)!r}.")
    return values


def _fit_simplex_weights(data: FusionData, y: np.ndarray, *, geometric: bool) -> np.ndarray:
    """Simplex weights (softmax-parametrised) minimising the NLL of the fused distribution."""
    rows = np.arange(data.n_rows)
    if data.n_rows > _MAX_WEIGHT_ROWS:
        rows = np.random.default_rng(0).choice(data.n_rows, _MAX_WEIGHT_ROWS, replace=False)
    mask = torch.as_tensor(data.mask[rows], dtype=torch.float64)
    target = torch.as_tensor(y[rows])
    if geometric:
        log_probs = torch.as_tensor(data.log_probs[rows], dtype=torch.float64)
    else:
        true_log_p = data.log_probs[rows, :, :][np.arange(rows.size), :, y[rows]]
        true_p = torch.as_tensor(np.exp(true_log_p), dtype=torch.float64)
    theta = torch.zeros(data.mask.shape[1], dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([theta], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        per_row = torch.softmax(theta, 0) * mask
        per_row = per_row / per_row.sum(1, keepdim=True).clamp_min(1e-12)
        if geometric:
            scores = torch.einsum("nm,nmc->nc", per_row, log_probs)
            loss = torch.nn.functional.cross_entropy(scores, target)
        else:
            loss = -torch.log((per_row * true_p).sum(1).clamp_min(1e-12)).mean()
        loss.backward()
        return loss

    optimiser.step(closure)
    return torch.softmax(theta.detach(), 0).numpy()
