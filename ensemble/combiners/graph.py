"""Fitted combiners as torch modules: what :mod:`ensemble.export` turns into ONNX graphs.

A combiner's prediction, ``Combiner.predict_logits``, is numpy code around each combiner's
``_log_proba``. :class:`CombinerGraph` is the same computation as one torch module: the
base class's temperature scaling, zero-filling of absent experts and final normalisation
(uniform rows, single-expert rows) here, and each combiner's own step from its
``fusion_module()`` hook. The exporter checks the graph against ``predict_logits`` on
sample rows before it writes anything, so the two cannot drift apart unnoticed.

Every fusion module takes ``(log_probs [N, M, C], mask [N, M] bool, logits [N, M, C],
features)`` (``features``: one ``[N, D_m]`` tensor per expert, empty unless the combiner
reads pre-logit features) and returns unnormalised fused scores ``[N, C]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ..exceptions import ExportError
from ._sklearn_io import SUPPORTED_ESTIMATORS

if TYPE_CHECKING:
    from .base import Combiner

__all__ = [
    "CombinerGraph",
    "LinearScores",
    "SklearnLinearProba",
    "torch_masked_weights",
    "torch_stacking_blocks",
    "torch_stacking_features",
]


def torch_masked_weights(weights: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Torch twin of :func:`ensemble.combiners._math.masked_weights`: per-row weights over
    the present experts, renormalised; equal weights when all present ones weigh zero."""
    present = mask.to(weights.dtype)
    per_row = weights * present
    total = per_row.sum(dim=1, keepdim=True)
    fallback = present / present.sum(dim=1, keepdim=True).clamp_min(1.0)
    safe = torch.where(total > 0, total, torch.ones_like(total))
    return torch.where(total > 0, per_row / safe, fallback)


def _meta_feature(kind: str, log_probs: torch.Tensor) -> torch.Tensor:
    """One per-expert meta-feature of :mod:`._design` (``[N, M, C]`` or ``[N, M, 1]``)."""
    if kind == "log_proba":
        return log_probs
    if kind == "entropy":
        return -(log_probs.exp() * log_probs).sum(dim=-1, keepdim=True)
    if kind == "max_proba":
        return log_probs.amax(dim=-1, keepdim=True).exp()
    raise ExportError(f"meta-feature {kind!r} has no graph; known: log_proba, entropy, "
                      "max_proba.")


def torch_stacking_blocks(log_probs: torch.Tensor, mask: torch.Tensor, kinds: Sequence[str]
                          ) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Torch twin of :func:`._design.stacking_blocks`."""
    present = mask.to(log_probs.dtype)
    blocks = log_probs * present.unsqueeze(-1) if "log_proba" in kinds else None
    scalars = [_meta_feature(kind, log_probs).squeeze(-1) * present
               for kind in kinds if kind != "log_proba"]
    return blocks, torch.cat([*scalars, 1.0 - present], dim=1)


def torch_stacking_features(log_probs: torch.Tensor, mask: torch.Tensor,
                            kinds: Sequence[str]) -> torch.Tensor:
    """Torch twin of :func:`._design.stacking_features`."""
    present = mask.to(log_probs.dtype)
    stacked = torch.cat([_meta_feature(kind, log_probs) * present.unsqueeze(-1)
                         for kind in kinds], dim=2)
    return torch.cat([stacked.flatten(1), 1.0 - present], dim=1)


def _buffer(array: Any) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.asarray(array, dtype=np.float32)))


class LinearScores(nn.Module):
    """The scores of a :class:`~ensemble.combiners._torch_linear.TorchLinear` model."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.structure = model.structure
        self.register_buffer("block_coef", _buffer(model.block_coef))
        self.register_buffer("scalar_coef", _buffer(model.scalar_coef))
        self.register_buffer("intercept", _buffer(model.intercept))

    def forward(self, blocks: torch.Tensor | None, scalars: torch.Tensor) -> torch.Tensor:
        scores = scalars @ self.scalar_coef + self.intercept
        if blocks is None or self.block_coef.shape[0] == 0:
            return scores
        if self.structure == "classwise":
            return scores + (blocks * self.block_coef).sum(dim=1)
        return scores + blocks.flatten(1) @ self.block_coef


class SklearnLinearProba(nn.Module):
    """Log-probabilities ``[N, n_classes]`` of an allow-listed scikit-learn linear
    classifier, as :func:`~ensemble.combiners._sklearn_io.full_log_proba` computes them."""

    def __init__(self, estimator: Any, n_classes: int) -> None:
        super().__init__()
        if type(estimator).__name__ not in SUPPORTED_ESTIMATORS or not hasattr(estimator,
                                                                                "coef_"):
            raise ExportError(
                f"a {type(estimator).__name__} meta-learner has no ONNX graph here; the "
                f"export supports the linear classifiers {sorted(SUPPORTED_ESTIMATORS)!r}. "
                "Refit the combiner with one of them."
            )
        self.register_buffer("coef", _buffer(estimator.coef_).t().contiguous())
        self.register_buffer("intercept", _buffer(np.atleast_1d(estimator.intercept_)))
        classes = np.asarray(estimator.classes_, dtype=np.int64)
        scatter = np.zeros((classes.size, n_classes), dtype=np.float32)
        scatter[np.arange(classes.size), classes] = 1.0
        self.register_buffer("scatter", torch.from_numpy(scatter))
        self.mode = _probability_mode(estimator)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        scores = features @ self.coef + self.intercept
        if scores.shape[1] == 1:  # binary: one decision value
            scores = torch.cat([-scores / 2, scores / 2], dim=1)
            proba = torch.softmax(scores, dim=1)
        elif self.mode == "ovr":
            proba = torch.sigmoid(scores)
            proba = proba / proba.sum(dim=1, keepdim=True)
        else:
            proba = torch.softmax(scores, dim=1)
        full = proba @ self.scatter + 1e-12
        return torch.log(full / full.sum(dim=1, keepdim=True))


def _probability_mode(estimator: Any) -> str:
    """``"softmax"`` or ``"ovr"``: how ``predict_proba`` normalises multiclass scores."""
    name = type(estimator).__name__
    if name in ("LogisticRegression", "LogisticRegressionCV"):
        ovr = (getattr(estimator, "solver", "") == "liblinear"
               or getattr(estimator, "multi_class", "auto") == "ovr")
        return "ovr" if ovr else "softmax"
    if name == "SGDClassifier":
        loss = getattr(estimator, "loss", "hinge")
        if loss == "log_loss":
            return "ovr"
        if loss == "modified_huber":
            raise ExportError(
                "an SGDClassifier(loss='modified_huber') meta-learner has no ONNX export here; "
                "refit the combiner with loss='log_loss' or a LogisticRegression."
            )
    return "softmax"  # no predict_proba: a softmax of decision_function


class CombinerGraph(nn.Module):
    """One fitted combiner as a module: raw logits ``[N, M, C]`` (the combiner's class
    order), presence ``mask [N, M]`` (bool) and, when the combiner reads them, one feature
    tensor per expert -> fused log-probabilities ``[N, C]`` (what ``predict_logits``
    returns)."""

    def __init__(self, combiner: Combiner) -> None:
        super().__init__()
        if not combiner.__sklearn_is_fitted__():
            raise ExportError(f"the {type(combiner).__name__} combiner is not fitted; fit it "
                              "before exporting.")
        self.fusion = combiner.fusion_module()
        self.register_buffer("temperatures", _buffer(combiner.temperatures_))
        self.log_uniform = -math.log(combiner.n_classes_)
        routes = getattr(combiner, "pattern_routes_", None)
        self.routed = routes is not None
        if self.routed:
            n_experts = len(combiner.expert_names_)
            self.register_buffer("routes", torch.as_tensor(np.asarray(routes, dtype=np.int64)))
            self.register_buffer("bits", torch.pow(2, torch.arange(n_experts)))

    def forward(self, logits: torch.Tensor, mask: torch.Tensor,
                *features: torch.Tensor) -> torch.Tensor:
        scaled = logits / self.temperatures[None, :, None]
        present = mask.unsqueeze(-1)
        log_probs = torch.where(present, torch.log_softmax(scaled, dim=2),
                                torch.zeros_like(scaled))
        scores = self.fusion(log_probs, mask, logits, list(features))
        fused = torch.log_softmax(scores, dim=1)
        count = mask.to(torch.int64).sum(dim=1, keepdim=True)
        if self.routed:
            fused = self._routed(fused, log_probs, mask)
        else:
            single = torch.log_softmax(log_probs.sum(dim=1), dim=1)  # absent experts are 0
            fused = torch.where(count == 1, single, fused)
        return torch.where(count == 0, torch.full_like(fused, self.log_uniform), fused)

    def _routed(self, fused: torch.Tensor, log_probs: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        """Torch twin of :func:`.pattern_routes.apply_routes`."""
        n_experts = mask.shape[1]
        route = self.routes[(mask.to(torch.int64) * self.bits).sum(dim=1)].unsqueeze(1)
        index = route.clamp(0, n_experts - 1).unsqueeze(-1).expand(-1, 1, log_probs.shape[2])
        alone = torch.log_softmax(log_probs.gather(1, index).squeeze(1), dim=1)
        # -1e30 rather than -inf: a row with no expert stays finite (it is replaced anyway).
        average = torch.log_softmax(
            torch.logsumexp(log_probs.masked_fill(~mask.unsqueeze(-1), -1e30), dim=1), dim=1)
        return torch.where(route == n_experts, average,
                           torch.where(route >= 0, alone, fused))
