"""Feature stacking: a classifier on the concatenated pre-logit embeddings of the experts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, clone
from sklearn.preprocessing import StandardScaler

from ..exceptions import ConfigError, InvalidLogitsError
from ._checks import check_rate
from ._design import modality_dropout
from ._sklearn_io import (
    check_classifier,
    encode_estimator,
    estimator_arrays,
    fit_quietly,
    full_log_proba,
    restore_estimator,
    restore_scaler,
    scaler_arrays,
)
from ._torch_linear import TorchLinear, fit_along_Cs, fit_torch_linear
from .base import Combiner, FusionData
from .graph import LinearScores, SklearnLinearProba
from .registry import register_combiner

__all__ = ["FeatureStacking"]

_TORCH = "torch"  # format of earlier saves: a "full" model on the features alone
_TORCH_CLASSWISE = "torch_classwise"
_HOLDOUT_SHARE = 1 / 3
_MIN_SELECTION_ROWS = 30
_MAX_ITER = 200


@register_combiner("feature_stacking")
class FeatureStacking(Combiner):
    """The classical recipe: standardise each expert's embedding, concatenate, classify.

    Reads ``LogitSet.features`` (compute them with ``LogitSet.from_experts(...,
    features=True)``). ``classifier=None`` (default) is a torch multinomial logistic
    regression that reads the standardised features and, classwise, each expert's
    log-probabilities: its expert weights are pulled toward pooling the experts (geometric
    voting) and its feature weights toward zero, with the inverse strength ``C`` chosen
    from ``Cs`` by NLL on a 1/3 holdout (``C_``; the smallest below 30 rows), so with few
    rows it degrades into pooling the experts instead of overfitting thousands of feature
    columns. ``classifier`` may also be any scikit-learn classifier;
    ``sklearn.svm.SVC(probability=True)`` is the classical option (it cannot be saved
    without pickle; linear models can). ``include_log_proba`` appends the experts'
    (optionally calibrated) log-probabilities to a scikit-learn classifier's columns.

    Missing experts: their standardised features are zero-filled (the training mean) and a
    missing-indicator column is added; ``modality_dropout`` appends training copies with
    experts randomly dropped.

    Example:
        >>> import numpy as np
        >>> from ensemble.logits import LogitSet
        >>> rng = np.random.default_rng(0)
        >>> y = rng.integers(0, 3, 300)
        >>> emb = {m: np.eye(3)[y] @ rng.normal(size=(3, 8)) + rng.normal(size=(300, 8))
        ...        for m in ("image", "text")}
        >>> logits = LogitSet({m: rng.normal(size=(300, 3)) for m in emb}, ["a", "b", "c"],
        ...                   features=emb)
        >>> FeatureStacking().fit(logits, y).predict_proba(logits).shape
        (300, 3)
    """

    def __init__(
        self,
        *,
        classifier: BaseEstimator | None = None,
        Cs: Sequence[float] = (0.01, 0.1, 1.0),
        include_log_proba: bool = False,
        modality_dropout: float = 0.15,
        calibrate: bool = False,
        pattern_guard: bool = True,
        random_state: int | None = 0,
    ) -> None:
        self.classifier = classifier
        self.Cs = Cs
        self.include_log_proba = include_log_proba
        self.modality_dropout = modality_dropout
        self.calibrate = calibrate
        self.pattern_guard = pattern_guard
        self.random_state = random_state

    def _check_params(self) -> None:
        if self.classifier is not None:
            check_classifier(self.classifier, "classifier")
        check_rate("modality_dropout", self.modality_dropout)
        if not self.Cs or any(not float(c) > 0 for c in self.Cs):
            raise ConfigError(f"Cs must be positive numbers, got {self.Cs!r}.")

    def _embeddings(self, data: FusionData) -> list[np.ndarray]:
        features = data.logits.features or {}
        missing = [m for m in self.expert_names_ if m not in features]
        if missing:
            raise InvalidLogitsError(
                f"FeatureStacking needs pre-logit features for every modality; {missing!r} "
                "have none. Build the LogitSet with LogitSet.from_experts(..., features=True) "
                "or pass features={modality: [N, D]}."
            )
        arrays = [np.asarray(features[m]) for m in self.expert_names_]
        dims = getattr(self, "feature_dims_", None)
        if dims is not None:
            for modality, array, dim in zip(self.expert_names_, arrays, dims, strict=True):
                if array.shape[1] != dim:
                    raise InvalidLogitsError(
                        f"features for {modality!r} have {array.shape[1]} columns, the "
                        f"combiner was fitted on {dim}."
                    )
        return arrays

    def _blocks(self, data: FusionData, rows: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The experts' log-probabilities ``[N, M, C]``, zero where absent (classwise)."""
        return data.log_probs[rows] * mask[:, :, None]

    @property
    def _classwise(self) -> bool:
        return self.classifier is None

    def _design(self, data: FusionData, rows: np.ndarray, mask: np.ndarray) -> np.ndarray:
        blocks = [
            _standardise(scaler, array[rows]) * mask[:, [j]]
            for j, (scaler, array) in enumerate(
                zip(self.scalers_, self._embeddings(data), strict=True)
            )
        ]
        blocks.append(1.0 - mask.astype(np.float32))
        if self.include_log_proba and not self._classwise:
            log_probs = data.log_probs[rows] * mask[:, :, None]
            blocks.append(log_probs.reshape(rows.size, -1) if rows.size else
                          np.zeros((0, log_probs.shape[1] * log_probs.shape[2]), np.float32))
        return np.concatenate(blocks, axis=1)

    def _fit(self, data: FusionData, y: np.ndarray) -> None:
        embeddings = self._embeddings(data)
        self.scalers_ = []
        for j, array in enumerate(embeddings):
            present = data.mask[:, j]
            self.scalers_.append(StandardScaler().fit(array[present] if present.any() else array))
        self.feature_dims_ = tuple(int(a.shape[1]) for a in embeddings)
        rng = np.random.default_rng(self.random_state)
        if not self._classwise:
            design, _, labels = self._training_set(data, y, np.arange(data.n_rows), rng)
            self.classifier_ = fit_quietly(clone(self.classifier), design, labels)
            return
        self.C_, start = self._select_C(data, y, rng)
        design, blocks, labels = self._training_set(data, y, np.arange(data.n_rows), rng)
        self.classifier_ = fit_torch_linear("classwise", blocks, design, labels, self.C_,
                                            n_classes=self.n_classes_, max_iter=_MAX_ITER,
                                            init=start)

    def _training_set(self, data: FusionData, y: np.ndarray, rows: np.ndarray,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Design, log-probability blocks and labels of ``rows`` plus their copies with
        experts dropped (modality dropout)."""
        mask = data.mask[rows]
        changed, reduced = modality_dropout(mask, self.modality_dropout, rng)
        design = np.concatenate([self._design(data, rows, mask),
                                 self._design(data, rows[changed], reduced)])
        blocks = np.concatenate([self._blocks(data, rows, mask),
                                 self._blocks(data, rows[changed], reduced)])
        return design, blocks, np.concatenate([y[rows], y[rows][changed]])

    def _select_C(self, data: FusionData, y: np.ndarray, rng: np.random.Generator
                  ) -> tuple[float, TorchLinear | None]:
        """``C`` with the lowest NLL on a 1/3 holdout (the data choose how far the model
        may move from pooling the experts; the smallest ``C`` below 30 rows), fitted from
        the strongest penalty up, each fit warm-started from the last; and that model, to
        warm-start the final fit."""
        if data.n_rows < _MIN_SELECTION_ROWS or len(self.Cs) == 1:
            return float(min(self.Cs)) if data.n_rows < _MIN_SELECTION_ROWS else float(
                self.Cs[0]), None
        rows = rng.permutation(data.n_rows)
        n_held = int(rows.size * _HOLDOUT_SHARE)
        test, train = np.sort(rows[:n_held]), np.sort(rows[n_held:])
        design, blocks, labels = self._training_set(data, y, train, rng)
        held_out = (self._blocks(data, test, data.mask[test]),
                    self._design(data, test, data.mask[test]), y[test])
        return fit_along_Cs("classwise", blocks, design, labels, self.Cs, held_out,
                            n_classes=self.n_classes_, max_iter=_MAX_ITER)

    def _log_proba(self, data: FusionData) -> np.ndarray:
        rows = np.arange(data.n_rows)
        design = self._design(data, rows, data.mask)
        if isinstance(self.classifier_, TorchLinear):
            blocks = (self._blocks(data, rows, data.mask)
                      if self.classifier_.structure == "classwise" else None)
            return self.classifier_.log_proba(blocks, design)
        return full_log_proba(self.classifier_, design, self.n_classes_)

    def fusion_module(self) -> torch.nn.Module:
        return _FeatureStackingModule(self)

    def reads_features(self) -> bool:
        return True

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if isinstance(self.classifier_, TorchLinear):
            arrays = self.classifier_.arrays("classifier")
            spec = _TORCH_CLASSWISE if self.classifier_.structure == "classwise" else _TORCH
        else:
            arrays = estimator_arrays(self.classifier_, "classifier")
            spec = encode_estimator(self.classifier_)
        for modality, scaler in zip(self.expert_names_, self.scalers_, strict=True):
            arrays.update(scaler_arrays(scaler, f"scaler.{modality}"))
        return arrays, {"classifier": spec, "feature_dims": list(self.feature_dims_),
                        "C": getattr(self, "C_", None)}

    def _restore(self, arrays: dict[str, np.ndarray], state: dict[str, Any],
                 directory: Any) -> None:
        self.feature_dims_ = tuple(int(d) for d in state["feature_dims"])
        if state.get("C") is not None:
            self.C_ = float(state["C"])
        self.scalers_ = [restore_scaler(arrays, f"scaler.{m}") for m in self.expert_names_]
        if tuple(s.n_features_in_ for s in self.scalers_) != self.feature_dims_:
            raise ValueError("scaler sizes do not match the recorded feature dimensions")
        n_experts = len(self.expert_names_)
        appended = self.include_log_proba and state["classifier"] != _TORCH_CLASSWISE
        expected = sum(self.feature_dims_) + n_experts * (1 + self.n_classes_ * appended)
        if state["classifier"] in (_TORCH, _TORCH_CLASSWISE):
            if self.classifier is not None:
                raise ValueError("the artifact holds a torch classifier but params name one")
            structure = "classwise" if state["classifier"] == _TORCH_CLASSWISE else "full"
            self.classifier_ = TorchLinear.from_arrays(structure, arrays, "classifier")
            n_features = self.classifier_.n_scalars
            blocks = self.classifier_.n_blocks if structure == "classwise" else 0
            if blocks not in (0, n_experts) or (structure == "classwise") != (blocks > 0):
                raise ValueError(f"classifier reads {blocks} expert blocks, expected {n_experts}")
        else:
            self.classifier_ = restore_estimator(state["classifier"], arrays, "classifier")
            n_features = self.classifier_.n_features_in_
        if n_features != expected:
            raise ValueError(f"classifier reads {n_features} features, expected {expected}")


class _FeatureStackingModule(torch.nn.Module):
    """:meth:`FeatureStacking._log_proba` as a module (see :mod:`.graph`)."""

    def __init__(self, combiner: FeatureStacking) -> None:
        super().__init__()
        self.include_log_proba = (combiner.include_log_proba
                                  and not isinstance(combiner.classifier_, TorchLinear))
        for j, scaler in enumerate(combiner.scalers_):
            self.register_buffer(f"mean_{j}", torch.as_tensor(scaler.mean_, dtype=torch.float32))
            self.register_buffer(f"scale_{j}",
                                 torch.as_tensor(scaler.scale_, dtype=torch.float32))
        model = combiner.classifier_
        self.linear = isinstance(model, TorchLinear)
        self.model = (LinearScores(model) if self.linear
                      else SklearnLinearProba(model, combiner.n_classes_))

    def forward(self, log_probs: torch.Tensor, mask: torch.Tensor, logits: torch.Tensor,
                features: list[torch.Tensor]) -> torch.Tensor:
        present = mask.to(log_probs.dtype)
        blocks = [(array - getattr(self, f"mean_{j}")) / getattr(self, f"scale_{j}")
                  * present[:, j : j + 1] for j, array in enumerate(features)]
        blocks.append(1.0 - present)
        if self.include_log_proba:
            blocks.append((log_probs * present.unsqueeze(-1)).flatten(1))
        design = torch.cat(blocks, dim=1)
        if not self.linear:
            return self.model(design)
        classwise = self.model.structure == "classwise"
        return self.model(log_probs * present.unsqueeze(-1) if classwise else None, design)


def _standardise(scaler: StandardScaler, array: np.ndarray) -> np.ndarray:
    """``(x - mean) / scale`` in float64, as float32 (same result for a restored scaler)."""
    mean = np.asarray(scaler.mean_, dtype=np.float64)
    scale = np.asarray(scaler.scale_, dtype=np.float64)
    return ((array.astype(np.float64) - mean) / scale).astype(np.float32)
