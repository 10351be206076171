"""Pickle-free persistence of scikit-learn classifiers used inside combiners.

Linear classifiers are stored through their learned arrays (``coef_``, ``intercept_``,
``classes_``) plus their JSON hyper-parameters and rebuilt from an explicit allow-list of
classes; any other estimator raises :class:`ArtifactError` at save time naming the
supported types (nothing is ever unpickled).
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import (
    LogisticRegression,
    LogisticRegressionCV,
    RidgeClassifier,
    SGDClassifier,
)
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from ..exceptions import ArtifactError, ConfigError

__all__ = [
    "SUPPORTED_ESTIMATORS",
    "check_classifier",
    "decode_estimator",
    "encode_estimator",
    "estimator_arrays",
    "fit_quietly",
    "full_log_proba",
    "restore_estimator",
    "restore_scaler",
    "scaler_arrays",
]

SUPPORTED_ESTIMATORS: dict[str, type[BaseEstimator]] = {
    cls.__name__: cls
    for cls in (LogisticRegression, LogisticRegressionCV, RidgeClassifier, SGDClassifier,
                LinearSVC)
}
_FITTED = ("coef_", "intercept_", "classes_")


def check_classifier(estimator: Any, param: str) -> None:
    """Raise :class:`ConfigError` unless ``estimator`` is a scikit-learn classifier."""
    if not (isinstance(estimator, BaseEstimator) and isinstance(estimator, ClassifierMixin)):
        raise ConfigError(
            f"{param} must be a scikit-learn classifier (e.g. LogisticRegression()), "
            f"got {type(estimator).__name__}."
        )


def fit_quietly(model: BaseEstimator, features: np.ndarray, labels: np.ndarray) -> BaseEstimator:
    """Fit ``model`` on float64 ``features`` without convergence warnings; store linear
    weights C-contiguous.

    float64 keeps scikit-learn's solvers from stopping at float32 precision; a fixed memory
    layout makes predictions bit-identical after a save/load round trip. BLAS runs on one
    thread: a meta-learner's design is small, and scikit-learn's L-BFGS issues many small
    BLAS calls that multi-threaded BLAS makes tens of times slower on a busy machine (55 s
    instead of about 1 s for one cross-validated fit inside ``auto`` on 1,524 rows).
    """
    from threadpoolctl import threadpool_limits

    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(np.asarray(features, dtype=np.float64), labels)
    for name in ("coef_", "intercept_"):
        if isinstance(getattr(model, name, None), np.ndarray):
            setattr(model, name, np.ascontiguousarray(getattr(model, name)))
    return model


def _unsupported(estimator: Any) -> ArtifactError:
    return ArtifactError(
        f"cannot save a {type(estimator).__name__} without pickle; combiners store "
        f"scikit-learn models through their learned arrays, supported: "
        f"{sorted(SUPPORTED_ESTIMATORS)!r}. Use one of these to save, or keep the model "
        "in memory."
    )


def encode_estimator(estimator: Any) -> dict[str, Any]:
    """A JSON description (class name + hyper-parameters) of an allow-listed estimator."""
    if type(estimator).__name__ not in SUPPORTED_ESTIMATORS or not isinstance(
        estimator, tuple(SUPPORTED_ESTIMATORS.values())
    ):
        raise _unsupported(estimator)
    params = estimator.get_params(deep=False)
    try:
        json.dumps(params)
    except TypeError as err:
        raise ArtifactError(
            f"{type(estimator).__name__} parameters are not JSON-serialisable ({err})."
        ) from err
    return {"__estimator__": type(estimator).__name__, "params": params}


def decode_estimator(spec: Any) -> BaseEstimator:
    """Rebuild an unfitted estimator from :func:`encode_estimator` output (allow-list only)."""
    if not isinstance(spec, dict) or spec.get("__estimator__") not in SUPPORTED_ESTIMATORS:
        raise ArtifactError(
            f"unknown estimator description {spec!r}; supported: {sorted(SUPPORTED_ESTIMATORS)!r}."
        )
    cls = SUPPORTED_ESTIMATORS[spec["__estimator__"]]
    try:
        return cls(**dict(spec.get("params", {})))
    except TypeError as err:
        raise ArtifactError(f"invalid parameters for {cls.__name__}: {err}.") from err


def estimator_arrays(estimator: Any, prefix: str) -> dict[str, np.ndarray]:
    """The learned arrays of a fitted allow-listed linear classifier."""
    encode_estimator(estimator)
    return {f"{prefix}.{name}": np.asarray(getattr(estimator, name)) for name in _FITTED}


def restore_estimator(
    spec: Any, arrays: dict[str, np.ndarray], prefix: str
) -> BaseEstimator:
    """A fitted estimator rebuilt from its description and learned arrays."""
    estimator = decode_estimator(spec)
    try:
        values = {name: arrays[f"{prefix}.{name}"] for name in _FITTED}
    except KeyError as err:
        raise ArtifactError(f"model.safetensors lacks {err}; the artifact is incomplete.") from err
    coef = values["coef_"]
    if coef.ndim != 2 or values["intercept_"].shape != (coef.shape[0],):
        raise ArtifactError(f"inconsistent shapes for {prefix}: coef {coef.shape}.")
    for name, value in values.items():
        setattr(estimator, name, np.ascontiguousarray(value))
    estimator.n_features_in_ = int(coef.shape[1])
    return estimator


def full_log_proba(estimator: Any, features: np.ndarray, n_classes: int) -> np.ndarray:
    """Log-probabilities ``[N, n_classes]`` from any fitted classifier.

    Uses ``predict_proba`` when available, else a softmax of ``decision_function``; classes
    the estimator never saw in training get probability ~0.
    """
    if hasattr(estimator, "predict_proba") and _has_proba(estimator):
        proba = np.asarray(estimator.predict_proba(features), dtype=np.float64)
    else:
        scores = np.asarray(estimator.decision_function(features), dtype=np.float64)
        if scores.ndim == 1:
            scores = np.stack([-scores / 2, scores / 2], axis=1)
        scores -= scores.max(axis=1, keepdims=True)
        proba = np.exp(scores)
        proba /= proba.sum(axis=1, keepdims=True)
    full = np.full((features.shape[0], n_classes), 1e-12)
    full[:, np.asarray(estimator.classes_, dtype=np.int64)] += proba
    full /= full.sum(axis=1, keepdims=True)
    return np.log(full)


def _has_proba(estimator: Any) -> bool:
    try:
        return callable(estimator.predict_proba)
    except AttributeError:
        return False


def scaler_arrays(scaler: StandardScaler, prefix: str) -> dict[str, np.ndarray]:
    """The learned arrays of a fitted :class:`StandardScaler`."""
    return {f"{prefix}.mean_": scaler.mean_, f"{prefix}.scale_": scaler.scale_}


def restore_scaler(arrays: dict[str, np.ndarray], prefix: str) -> StandardScaler:
    """A fitted :class:`StandardScaler` rebuilt from its arrays."""
    scaler = StandardScaler()
    try:
        scaler.mean_ = arrays[f"{prefix}.mean_"]
        scaler.scale_ = arrays[f"{prefix}.scale_"]
    except KeyError as err:
        raise ArtifactError(f"model.safetensors lacks {err}; the artifact is incomplete.") from err
    scaler.var_ = scaler.scale_**2
    scaler.n_features_in_ = int(scaler.mean_.shape[0])
    return scaler
