"""Stacking: a scikit-learn meta-learner over the experts' log-probabilities."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold

from ..exceptions import ConfigError
from ._checks import check_rate
from ._design import META_FEATURES, modality_dropout, stacking_features
from ._registry import register_combiner
from ._sklearn_io import (
    check_classifier,
    encode_estimator,
    estimator_arrays,
    fit_quietly,
    full_log_proba,
)
from ._sklearn_io import restore_estimator as _restore_estimator
from .base import Combiner, FusionData

__all__ = ["StackingCombiner"]

_INNER_FOLDS = 3


@register_combiner("stacking")
class StackingCombiner(Combiner):
    """A classifier fitted on the concatenated per-expert log-probabilities.

    ``meta_learner``: any scikit-learn classifier; ``None`` means a multinomial
    ``LogisticRegression`` whose inverse strength ``C`` is picked from ``Cs`` by 3-fold
    cross-validated NLL on at most ``cv_rows`` rows (``C_`` holds the choice).
    ``meta_features`` adds per-expert ``"entropy"`` / ``"max_proba"`` columns.
    ``cv=k`` also stores ``oof_proba_``: out-of-fold predictions of the whole stacker on
    the training rows, for an honest estimate of its own quality.

    Missing experts: their block is zero-filled and a per-expert missing indicator column
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

    def __init__(
        self,
        *,
        meta_learner: BaseEstimator | None = None,
        Cs: Sequence[float] = (0.01, 0.1, 1.0, 10.0),
        meta_features: Sequence[str] = ("log_proba",),
        modality_dropout: float = 0.15,
        cv: int | None = None,
        cv_rows: int = 5000,
        calibrate: bool = False,
        random_state: int | None = 0,
    ) -> None:
        self.meta_learner = meta_learner
        self.Cs = Cs
        self.meta_features = meta_features
        self.modality_dropout = modality_dropout
        self.cv = cv
        self.cv_rows = cv_rows
        self.calibrate = calibrate
        self.random_state = random_state

    def _check_params(self) -> None:
        if self.meta_learner is not None:
            check_classifier(self.meta_learner, "meta_learner")
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

    # -- design -----------------------------------------------------------------------------

    def _features(self, log_probs: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return stacking_features(log_probs, mask, list(self.meta_features))

    def _training_set(
        self, data: FusionData, y: np.ndarray, rows: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        mask = data.mask[rows]
        changed, reduced = modality_dropout(mask, self.modality_dropout, rng)
        log_probs = data.log_probs[rows]
        features = np.concatenate([
            self._features(log_probs, mask),
            self._features(log_probs[changed], reduced),
        ])
        return features, np.concatenate([y[rows], y[rows][changed]])

    # -- fitting ----------------------------------------------------------------------------

    def _base_learner(self, C: float) -> BaseEstimator:
        if self.meta_learner is not None:
            return clone(self.meta_learner)
        return LogisticRegression(C=C, max_iter=200)

    def _fit(self, data: FusionData, y: np.ndarray) -> None:
        rng = np.random.default_rng(self.random_state)
        self.C_ = self._select_C(data, y, rng) if self.meta_learner is None else None
        everything = np.arange(data.n_rows)
        features, labels = self._training_set(data, y, everything, rng)
        self.meta_learner_ = fit_quietly(self._base_learner(self.C_ or 1.0), features, labels)
        if self.cv is not None:
            self.oof_proba_ = self._out_of_fold(data, y, rng, self.cv)

    def _select_C(self, data: FusionData, y: np.ndarray, rng: np.random.Generator) -> float:
        if len(self.Cs) == 1:
            return float(self.Cs[0])
        rows = np.arange(data.n_rows)
        if rows.size > self.cv_rows:
            rows = np.sort(rng.choice(rows, self.cv_rows, replace=False))
        folds = KFold(min(_INNER_FOLDS, rows.size), shuffle=True,
                      random_state=int(rng.integers(1 << 31)))
        losses = np.zeros(len(self.Cs))
        for train, test in folds.split(rows):
            features, labels = self._training_set(data, y, rows[train], rng)
            held_out = self._features(data.log_probs[rows[test]], data.mask[rows[test]])
            for i, C in enumerate(self.Cs):
                model = fit_quietly(self._base_learner(float(C)), features, labels)
                log_proba = full_log_proba(model, held_out, self.n_classes_)
                losses[i] -= log_proba[np.arange(test.size), y[rows[test]]].sum()
        return float(self.Cs[int(np.argmin(losses))])

    def _out_of_fold(self, data: FusionData, y: np.ndarray, rng: np.random.Generator,
                     n_folds: int) -> np.ndarray:
        proba = np.zeros((data.n_rows, self.n_classes_))
        folds = KFold(n_folds, shuffle=True, random_state=int(rng.integers(1 << 31)))
        for train, test in folds.split(np.arange(data.n_rows)):
            features, labels = self._training_set(data, y, train, rng)
            model = fit_quietly(self._base_learner(self.C_ or 1.0), features, labels)
            held_out = self._features(data.log_probs[test], data.mask[test])
            proba[test] = np.exp(full_log_proba(model, held_out, self.n_classes_))
        return proba

    def _log_proba(self, data: FusionData) -> np.ndarray:
        features = self._features(data.log_probs, data.mask)
        return full_log_proba(self.meta_learner_, features, self.n_classes_)

    # -- persistence ------------------------------------------------------------------------

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays = estimator_arrays(self.meta_learner_, "meta")
        return arrays, {"meta_learner": encode_estimator(self.meta_learner_), "C": self.C_}

    def _restore(self, arrays: dict[str, np.ndarray], state: dict[str, Any],
                 directory: Any) -> None:
        self.C_ = state["C"]
        self.meta_learner_ = _restore_estimator(state["meta_learner"], arrays, "meta")
        expected = len(self.modalities_) * (
            self.n_classes_ * ("log_proba" in self.meta_features)
            + len(set(self.meta_features) - {"log_proba"}) + 1
        )
        if self.meta_learner_.n_features_in_ != expected:
            raise ValueError(
                f"meta-learner reads {self.meta_learner_.n_features_in_} features, "
                f"expected {expected}"
            )

