"""Stacking: a meta-learner over the experts' log-probabilities.

The default meta-learner is a torch multinomial logistic regression (full-batch LBFGS, see
:mod:`._torch_linear`), stored as plain arrays; any scikit-learn classifier is accepted too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import KFold

from ..exceptions import ConfigError
from ._checks import check_choice, check_positive_ints, check_rate
from ._design import META_FEATURES, modality_dropout, stacking_blocks, stacking_features
from ._sklearn_io import (
    check_classifier,
    encode_estimator,
    estimator_arrays,
    fit_quietly,
    full_log_proba,
)
from ._sklearn_io import restore_estimator as _restore_estimator
from ._torch_linear import STRUCTURES, TorchLinear, fit_torch_linear
from .base import PREDICT_CHUNK_ROWS, Combiner, FusionData
from .graph import (
    LinearScores,
    SklearnLinearProba,
    torch_stacking_blocks,
    torch_stacking_features,
)
from .registry import register_combiner

__all__ = ["StackingCombiner"]

_HOLDOUT_DENOMINATOR = 3  # C is chosen on a 1/3 holdout of at most cv_rows rows
_TORCH = "torch"
Design = tuple[np.ndarray, np.ndarray] | np.ndarray


@register_combiner("stacking")
class StackingCombiner(Combiner):
    """A classifier fitted on the per-expert log-probabilities (and optional meta-features).

    ``meta_learner=None`` (default) is a torch multinomial logistic regression:
    ``structure="classwise"`` (StackingC, Seewald 2002: the score of class ``c`` reads each
    expert's log-probability of ``c``, plus the scalar meta-features and missing indicators;
    ``O(M * C)`` weights) or ``"full"`` (every column feeds every class, the classical
    stacker; ``O(M * C^2)`` weights). Its inverse L2 strength ``C`` (scikit-learn's
    convention) is picked from ``Cs`` by the NLL on a 1/3 holdout of at most ``cv_rows`` rows
    (``C_`` holds the choice), warm-starting along ``Cs``; the final model is fitted on at
    most ``max_rows`` random rows (``None``: all), warm-started from the selection run.
    ``meta_learner`` may also be any scikit-learn classifier, fitted on the concatenated
    columns (per expert its ``meta_features``, then the missing indicators).
    ``meta_features`` adds per-expert ``"entropy"`` / ``"max_proba"`` columns.
    ``cv=k`` also stores ``oof_proba_``: out-of-fold predictions of the whole stacker on
    the training rows, for an honest estimate of its own quality.

    Missing experts: their columns are zero-filled and a per-expert missing indicator column
    is added; ``modality_dropout`` appends copies of training rows with experts randomly
    dropped so the meta-learner learns every missing pattern.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> y = rng.integers(0, 3, 300)
        >>> logits = {"image": 3 * np.eye(3)[y] + rng.normal(size=(300, 3)),
        ...           "text": 2 * np.eye(3)[y] + rng.normal(size=(300, 3))}
        >>> stacker = StackingCombiner().fit(logits, y)
        >>> stacker.predict_proba(logits).shape
        (300, 3)
    """

    _predict_chunk_rows = PREDICT_CHUNK_ROWS

    def __init__(
        self,
        *,
        meta_learner: BaseEstimator | None = None,
        structure: str = "classwise",
        Cs: Sequence[float] = (0.01, 0.1, 1.0, 10.0),
        meta_features: Sequence[str] = ("log_proba",),
        modality_dropout: float = 0.15,
        cv: int | None = None,
        cv_rows: int = 5000,
        max_rows: int | None = 10_000,
        max_iter: int = 100,
        calibrate: bool = False,
        pattern_guard: bool = True,
        random_state: int | None = 0,
    ) -> None:
        self.meta_learner = meta_learner
        self.structure = structure
        self.Cs = Cs
        self.meta_features = meta_features
        self.modality_dropout = modality_dropout
        self.cv = cv
        self.cv_rows = cv_rows
        self.max_rows = max_rows
        self.max_iter = max_iter
        self.calibrate = calibrate
        self.pattern_guard = pattern_guard
        self.random_state = random_state

    def _check_params(self) -> None:
        if self.meta_learner is not None:
            check_classifier(self.meta_learner, "meta_learner")
        check_choice("structure", self.structure, STRUCTURES)
        unknown = [f for f in self.meta_features if f not in META_FEATURES]
        if unknown or not self.meta_features:
            raise ConfigError(
                f"meta_features must be a non-empty subset of {META_FEATURES!r}, "
                f"got {list(self.meta_features)!r}."
            )
        if not self.Cs or any(not float(c) > 0 for c in self.Cs):
            raise ConfigError(f"Cs must be positive numbers, got {self.Cs!r}.")
        check_rate("modality_dropout", self.modality_dropout)
        if self.cv is not None and (not isinstance(self.cv, int) or self.cv < 2):
            raise ConfigError(f"cv must be None or an integer >= 2, got {self.cv!r}.")
        if not isinstance(self.cv_rows, int) or self.cv_rows < 10:
            raise ConfigError(f"cv_rows must be an integer >= 10, got {self.cv_rows!r}.")
        if self.max_rows is not None and (not isinstance(self.max_rows, int)
                                          or self.max_rows < 10):
            raise ConfigError(f"max_rows must be None or an integer >= 10, got {self.max_rows!r}.")
        check_positive_ints(self, ("max_iter",))

    @property
    def _uses_torch(self) -> bool:
        return self.meta_learner is None

    # -- design -----------------------------------------------------------------------------

    def _features(self, log_probs: np.ndarray, mask: np.ndarray) -> Design:
        kinds = list(self.meta_features)
        if self._uses_torch:
            return stacking_blocks(log_probs, mask, kinds)
        return stacking_features(log_probs, mask, kinds)

    def _training_set(
        self, data: FusionData, y: np.ndarray, rows: np.ndarray, rng: np.random.Generator
    ) -> tuple[Design, np.ndarray]:
        mask = data.mask[rows]
        changed, reduced = modality_dropout(mask, self.modality_dropout, rng)
        log_probs = data.log_probs[rows]
        parts = [self._features(log_probs, mask), self._features(log_probs[changed], reduced)]
        labels = np.concatenate([y[rows], y[rows][changed]])
        if self._uses_torch:
            return (np.concatenate([p[0] for p in parts]),
                    np.concatenate([p[1] for p in parts])), labels
        return np.concatenate(parts), labels

    # -- fitting ----------------------------------------------------------------------------

    def _fit_model(self, design: Design, labels: np.ndarray, C: float,
                   init: TorchLinear | None = None) -> Any:
        if self._uses_torch:
            blocks, scalars = design
            return fit_torch_linear(self.structure, blocks, scalars, labels, C,
                                    n_classes=self.n_classes_, max_iter=self.max_iter,
                                    init=init)
        return fit_quietly(clone(self.meta_learner), design, labels)

    def _model_log_proba(self, model: Any, design: Design) -> np.ndarray:
        if isinstance(model, TorchLinear):
            return model.log_proba(*design)
        return full_log_proba(model, design, self.n_classes_)

    def _sample(self, n_rows: int, limit: int | None, rng: np.random.Generator) -> np.ndarray:
        if limit is None or n_rows <= limit:
            return np.arange(n_rows)
        return np.sort(rng.choice(n_rows, limit, replace=False))

    def _fit(self, data: FusionData, y: np.ndarray) -> None:
        rng = np.random.default_rng(self.random_state)
        warm: TorchLinear | None = None
        if self._uses_torch:
            self.C_, warm = self._select_C(data, y, rng)
        else:
            self.C_ = None
        rows = self._sample(data.n_rows, self.max_rows if self._uses_torch else None, rng)
        design, labels = self._training_set(data, y, rows, rng)
        self.meta_learner_ = self._fit_model(design, labels, self.C_ or 1.0, warm)
        if self.cv is not None:
            self.oof_proba_ = self._out_of_fold(data, y, rng, self.cv)

    def _select_C(self, data: FusionData, y: np.ndarray,
                  rng: np.random.Generator) -> tuple[float, TorchLinear | None]:
        """Cross-validated choice of ``C`` (warm-started along ``Cs``) and a warm start."""
        if len(self.Cs) == 1:
            return float(self.Cs[0]), None
        rows = rng.permutation(self._sample(data.n_rows, self.cv_rows, rng))
        n_held_out = max(1, rows.size // _HOLDOUT_DENOMINATOR)
        test, train = np.sort(rows[:n_held_out]), np.sort(rows[n_held_out:])
        design, labels = self._training_set(data, y, train, rng)
        held_out = self._features(data.log_probs[test], data.mask[test])
        losses, models = np.zeros(len(self.Cs)), {}
        model = None
        for i in np.argsort([float(c) for c in self.Cs]):  # strongest penalty first
            model = self._fit_model(design, labels, float(self.Cs[i]), model)
            models[int(i)] = model
            losses[i] = -self._model_log_proba(model, held_out)[np.arange(test.size), y[test]].sum()
        best = int(np.argmin(losses))
        return float(self.Cs[best]), models[best]

    def _out_of_fold(self, data: FusionData, y: np.ndarray, rng: np.random.Generator,
                     n_folds: int) -> np.ndarray:
        proba = np.zeros((data.n_rows, self.n_classes_))
        folds = KFold(n_folds, shuffle=True, random_state=int(rng.integers(1 << 31)))
        for train, test in folds.split(np.arange(data.n_rows)):
            design, labels = self._training_set(data, y, train, rng)
            model = self._fit_model(design, labels, self.C_ or 1.0)
            held_out = self._features(data.log_probs[test], data.mask[test])
            proba[test] = np.exp(self._model_log_proba(model, held_out))
        return proba

    def _log_proba(self, data: FusionData) -> np.ndarray:
        return self._model_log_proba(self.meta_learner_,
                                     self._features(data.log_probs, data.mask))

    def fusion_module(self) -> torch.nn.Module:
        return _StackingModule(self.meta_learner_, tuple(self.meta_features), self.n_classes_)

    # -- persistence ------------------------------------------------------------------------

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if isinstance(self.meta_learner_, TorchLinear):
            return self.meta_learner_.arrays("meta"), {"meta_learner": _TORCH, "C": self.C_}
        arrays = estimator_arrays(self.meta_learner_, "meta")
        return arrays, {"meta_learner": encode_estimator(self.meta_learner_), "C": self.C_}

    def _restore(self, arrays: dict[str, np.ndarray], state: dict[str, Any],
                 directory: Any) -> None:
        self.C_ = state["C"]
        n_modalities = len(self.expert_names_)
        n_scalars = n_modalities * (len(set(self.meta_features) - {"log_proba"}) + 1)
        n_blocks = n_modalities * ("log_proba" in self.meta_features)
        if state["meta_learner"] == _TORCH:
            if not self._uses_torch:
                raise ValueError("the artifact holds a torch meta-learner but params name one")
            model = TorchLinear.from_arrays(self.structure, arrays, "meta")
            if (model.n_blocks, model.n_scalars, model.intercept.shape[0]) != (
                n_blocks, n_scalars, self.n_classes_
            ):
                raise ValueError(f"meta-learner arrays do not fit {n_modalities} experts")
            self.meta_learner_ = model
            return
        self.meta_learner_ = _restore_estimator(state["meta_learner"], arrays, "meta")
        expected = n_blocks * self.n_classes_ + n_scalars
        if self.meta_learner_.n_features_in_ != expected:
            raise ValueError(
                f"meta-learner reads {self.meta_learner_.n_features_in_} features, "
                f"expected {expected}"
            )


class _StackingModule(torch.nn.Module):
    """:meth:`StackingCombiner._log_proba` as a module (see :mod:`.graph`)."""

    def __init__(self, model: Any, kinds: tuple[str, ...], n_classes: int) -> None:
        super().__init__()
        self.kinds = kinds
        self.split = isinstance(model, TorchLinear)
        self.model = (LinearScores(model) if self.split
                      else SklearnLinearProba(model, n_classes))

    def forward(self, log_probs: torch.Tensor, mask: torch.Tensor, logits: torch.Tensor,
                features: list[torch.Tensor]) -> torch.Tensor:
        if self.split:
            return self.model(*torch_stacking_blocks(log_probs, mask, self.kinds))
        return self.model(torch_stacking_features(log_probs, mask, self.kinds))
