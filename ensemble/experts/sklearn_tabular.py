"""``TabularExpert`` (kind ``sklearn``): any scikit-learn classifier over a tabular column group.

The input column holds one dict per row (``{field: number | string | None}``, the struct
column :func:`~ensemble.data.load_multimodal` builds from a tabular group), or ``None``
when the whole group is missing. Numbers stay numbers (missing -> NaN), strings are
categories coded from the training rows (unseen -> NaN). HistGradientBoosting, the
default, handles NaN and categories natively; for estimators that do not, missing numbers
are imputed with the training median and categories one-hot encoded.

Saved without pickle: the feature encoding as JSON, the estimator with ``skops``. It is
loaded back only when its bytes match the fingerprint recorded next to it and every type in
the file that skops does not trust by default is a scikit-learn *class* (or one of
:data:`TRUSTED_EXTRA`, or listed by the caller in ``trusted_types``); see
:mod:`ensemble.experts.sklearn_estimators`, which both scikit-learn kinds use.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_directory, read_json, write_json
from ..exceptions import ArtifactError, ConfigError, DataError, InvalidTabularError
from ..labels import LabelSpace, log_probabilities
from ..modalities.tabular import TabularModality
from .base import Expert
from .registry import register_expert
from .sklearn_estimators import (
    TRUSTED_EXTRA,
    check_classifier,
    estimator_bytes,
    estimator_from_name,
    load_estimator,
)

__all__ = ["TRUSTED_EXTRA", "TabularExpert"]

_ESTIMATOR = "estimator.skops"
_ENCODING = "encoding.json"


def _default_estimator(seed: int, categorical: list[bool]) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    mask = np.asarray(categorical, dtype=bool)
    return HistGradientBoostingClassifier(
        random_state=seed, categorical_features=mask if mask.any() else None)


def _absent(value: Any) -> bool:
    """A missing group: ``None``, or a mapping whose fields are all missing (the data layer
    stores such a row as ``None``)."""
    return value is None or (isinstance(value, Mapping) and TabularModality().is_missing(value))


def _allows_nan(estimator: Any) -> bool:
    try:
        from sklearn.utils import get_tags

        return bool(get_tags(estimator).input_tags.allow_nan)
    except (ImportError, AttributeError):
        return False


@register_expert("sklearn")
class TabularExpert(Expert):
    """A scikit-learn classifier with ``predict_proba`` over one tabular column group.

    ``estimator`` is an unfitted classifier instance, a dotted scikit-learn class path
    (with ``estimator_params``), or ``None`` for ``HistGradientBoostingClassifier``.

    Example:
        >>> expert = TabularExpert(column="meta", labels=["a", "b"],
        ...                        estimator_params={"min_samples_leaf": 2})
        >>> rows = [{"x": 0.0}, {"x": 1.0}] * 10
        >>> import datasets
        >>> ds = datasets.Dataset.from_dict({"meta": rows, "label": ["a", "b"] * 10})
        >>> expert.fit(ds).predict_logits([{"x": 1.0}]).argmax(axis=1).tolist()
        [1]
    """

    torch_free = True

    modality = "tabular"

    def __init__(self, *, column: str, labels: LabelSpace | Sequence[str],
                 estimator: Any = None, estimator_params: Mapping[str, Any] | None = None,
                 seed: int = 0) -> None:
        super().__init__(column=column, labels=labels, seed=seed)
        self.estimator = estimator
        self.estimator_params = dict(estimator_params or {})
        self._fingerprint: str | None = None
        self._blob: bytes | None = None

    # -- encoding -------------------------------------------------------------------------

    def present_rows(self, data: Any) -> np.ndarray:
        """Boolean ``[N]``: rows whose group is given and has at least one field."""
        return np.array([not _absent(value) for value in self.column_values(data)], dtype=bool)

    def _check_row(self, value: Any, row: int) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise InvalidTabularError(
                f"row {row} of column {self.column!r} is a {type(value).__name__} ({value!r}); "
                "a tabular input is a mapping {field: value} (None for a missing row)."
            )
        return value

    def _learn_encoding(self, rows: list[Mapping[str, Any]]) -> None:
        fields: list[str] = []
        for row in rows:
            fields.extend(k for k in row if k not in fields)
        if not fields:
            raise DataError(f"column {self.column!r} has no fields to learn from.")
        kinds: dict[str, str] = {}
        categories: dict[str, list[str]] = {}
        for name in fields:
            values = [row.get(name) for row in rows]
            texts = [v for v in values if isinstance(v, str)]
            numbers = [v for v in values if isinstance(v, (int, float, np.number, np.bool_))]
            if texts and numbers:
                raise InvalidTabularError(
                    f"field {name!r} of column {self.column!r} mixes numbers and strings (e.g. "
                    f"{texts[0]!r}); make it all numbers or all categories."
                )
            kinds[name] = "categorical" if texts else "numeric"
            if texts:
                categories[name] = sorted(set(texts))
        self.fields_ = fields
        self.kinds_ = kinds
        self.categories_ = categories

    def _raw_matrix(self, rows: list[Mapping[str, Any]],
                    positions: Sequence[int] | None = None) -> np.ndarray:
        """Numbers as float (NaN missing), categories as codes (NaN missing/unseen);
        ``positions`` are the rows' indices in the caller's data (for messages)."""
        matrix = np.full((len(rows), len(self.fields_)), np.nan, dtype=np.float64)
        codes = {n: {c: i for i, c in enumerate(cats)} for n, cats in self.categories_.items()}
        for i, row in enumerate(rows):
            for j, name in enumerate(self.fields_):
                value = row.get(name)
                if value is None:
                    continue
                if self.kinds_[name] == "categorical":
                    code = codes[name].get(str(value))
                    matrix[i, j] = np.nan if code is None else code
                    continue
                if isinstance(value, str):
                    row = i if positions is None else positions[i]
                    raise InvalidTabularError(
                        f"field {name!r} of column {self.column!r}, row {row}, is {value!r}, but "
                        "the expert was fitted on numbers there; give a number or None."
                    )
                matrix[i, j] = float(value)
        return matrix

    def _model_matrix(self, raw: np.ndarray) -> np.ndarray:
        """What the estimator reads: ``raw`` itself, or imputed and one-hot encoded."""
        if self.native_nan_:
            return raw
        columns = []
        for j, name in enumerate(self.fields_):
            values = raw[:, j]
            if self.kinds_[name] == "categorical":
                width = len(self.categories_[name])
                onehot = np.zeros((len(raw), width), dtype=np.float64)
                known = ~np.isnan(values)
                onehot[np.flatnonzero(known), values[known].astype(np.int64)] = 1.0
                columns.append(onehot)
            else:
                filled = np.where(np.isnan(values), self.medians_[j], values)
                columns.append(filled[:, None])
                columns.append(np.isnan(values).astype(np.float64)[:, None])
        return np.concatenate(columns, axis=1)

    def _features(self, raw: np.ndarray) -> np.ndarray:
        """Pre-logit features for feature stacking: the inputs, NaN filled with medians."""
        return np.where(np.isnan(raw), np.asarray(self.medians_)[None, :], raw).astype(np.float32)

    # -- fitting --------------------------------------------------------------------------

    def _make_estimator(self) -> Any:
        from sklearn.base import clone

        categorical = [self.kinds_[n] == "categorical" for n in self.fields_]
        if isinstance(self.estimator, str):
            return check_classifier(estimator_from_name(self.estimator, self.estimator_params))
        estimator = (_default_estimator(self.seed, categorical) if self.estimator is None
                     else clone(self.estimator))
        if self.estimator_params:
            estimator.set_params(**self.estimator_params)
        return check_classifier(estimator)

    def fit(self, train: Any, eval_dataset: Any | None = None, *, config: Any = None,
            label_column: str = "label", **train_args: Any) -> TabularExpert:
        """Fit the estimator on the rows of ``train`` whose group is present.

        ``eval_dataset`` is not used for fitting (scikit-learn estimators do their own
        internal validation, e.g. HistGradientBoosting's early stopping).
        """
        if train_args or config is not None:
            raise ConfigError(
                f"the sklearn expert takes no training arguments (got "
                f"{sorted(train_args) or ['config']!r}); pass estimator_params= instead."
            )
        labels = self.encode_labels(train, label_column)
        values = self.column_values(train)
        keep = [i for i, v in enumerate(values) if not _absent(v)]
        if not keep:
            raise DataError(f"no training example has a {self.column!r} input; nothing to fit.")
        rows = [self._check_row(values[i], i) for i in keep]
        self._learn_encoding(rows)
        raw = self._raw_matrix(rows, keep)
        self.medians_ = [float(np.nanmedian(raw[:, j])) if np.isfinite(raw[:, j]).any() else 0.0
                         for j in range(raw.shape[1])]
        self.require_two_classes(labels[keep])
        estimator = self._make_estimator()
        self.native_nan_ = _allows_nan(estimator)
        estimator.fit(self._model_matrix(raw), labels[keep])
        self.estimator_ = estimator
        self._fingerprint = None
        self._blob = None
        self.record_trained_on(train)
        return self

    def _check_fitted(self) -> None:
        self.require_fitted("estimator_")

    # -- inference ------------------------------------------------------------------------

    def predict_logits(self, data: Any, *, batch_size: int = 64, return_features: bool = False,
                       progress: bool = True) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Log-probabilities ``[N, C]`` as logits (zeros where the group is missing: ``None``
        or every field missing)."""
        self._check_fitted()
        values = self.column_values(data)
        present = [i for i, v in enumerate(values) if not _absent(v)]
        logits = np.zeros((len(values), self.num_classes), dtype=np.float32)
        features = np.zeros((len(values), len(self.fields_)), dtype=np.float32)
        if present:
            raw = self._raw_matrix([self._check_row(values[i], i) for i in present], present)
            proba = self.estimator_.predict_proba(self._model_matrix(raw))
            full = np.zeros((len(present), self.num_classes), dtype=np.float64)
            full[:, np.asarray(self.estimator_.classes_, dtype=np.int64)] = proba
            logits[present] = log_probabilities(full).astype(np.float32)
            features[present] = self._features(raw)
        return (logits, features) if return_features else logits

    # -- identity and persistence ---------------------------------------------------------

    def _estimator_bytes(self) -> bytes:
        if self._blob is None:
            self._blob = estimator_bytes(self.estimator_)
        return self._blob

    def _encoding(self) -> dict[str, Any]:
        return {"fields": self.fields_, "kinds": self.kinds_, "categories": self.categories_,
                "medians": self.medians_, "native_nan": self.native_nan_}

    def _digest(self, encoding: Mapping[str, Any], blob: bytes) -> str:
        digest = hashlib.sha256(b"TabularExpert")
        digest.update("\x1f".join(self.class_names).encode())
        digest.update(json.dumps(encoding, sort_keys=True).encode())
        digest.update(blob)
        return digest.hexdigest()

    def fingerprint(self) -> str:
        """sha256 over the saved estimator, the feature encoding and the label space."""
        self._check_fitted()
        if self._fingerprint is None:
            self._fingerprint = self._digest(self._encoding(), self._estimator_bytes())
        return self._fingerprint

    def hyper_parameters(self) -> dict[str, Any]:
        estimator = self.estimator
        name = (estimator if isinstance(estimator, str) or estimator is None
                else f"{type(estimator).__module__}.{type(estimator).__name__}")
        return {"estimator": name, "estimator_params": self.estimator_params}

    def save_pretrained(self, directory: str | Path) -> Path:
        """``estimator.skops`` + ``encoding.json`` + ``ensemble.json``, written atomically."""
        self._check_fitted()
        directory = Path(directory)
        with atomic_directory(directory) as tmp:
            (tmp / _ESTIMATOR).write_bytes(self._estimator_bytes())
            write_json(tmp / _ENCODING, self._encoding())
            self.write_metadata(tmp)
        return directory

    @classmethod
    def load_saved(cls, directory: Path, metadata: Mapping[str, Any], *,
                   trusted_types: Sequence[str] = (), **kwargs: Any) -> TabularExpert:
        """Load with skops after checking the file against the recorded fingerprint,
        trusting only scikit-learn classes, :data:`TRUSTED_EXTRA` and ``trusted_types``."""
        params = metadata.get("params") or {}
        expert = cls(column=str(metadata["column"]), labels=metadata["class_names"],
                     estimator=params.get("estimator"),
                     estimator_params=params.get("estimator_params") or {},
                     seed=int(metadata.get("seed", 0)))
        blob = (directory / _ESTIMATOR).read_bytes() if (directory / _ESTIMATOR).is_file() \
            else None
        if blob is None:
            raise ArtifactError(f"{directory / _ESTIMATOR} is missing; re-save the expert.")
        try:
            encoding = read_json(directory / _ENCODING)
            expert.fields_ = [str(f) for f in encoding["fields"]]
            expert.kinds_ = {str(k): str(v) for k, v in encoding["kinds"].items()}
            expert.categories_ = {str(k): [str(c) for c in v]
                                  for k, v in encoding["categories"].items()}
            expert.medians_ = [float(m) for m in encoding["medians"]]
            expert.native_nan_ = bool(encoding["native_nan"])
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ArtifactError(f"{directory} is incomplete or damaged ({err}).") from err
        if any(math.isnan(m) for m in expert.medians_):
            raise ArtifactError(f"{directory / _ENCODING}: medians hold NaN; re-save the expert.")
        recorded = metadata.get("fingerprint")
        if recorded and recorded != expert._digest(expert._encoding(), blob):
            # Checked before skops reads the file: nothing of a modified file is loaded.
            raise ArtifactError(
                f"{directory}: {_ESTIMATOR} or {_ENCODING} does not match the fingerprint in "
                "ensemble.json; the folder was modified after saving. Re-save the expert."
            )
        expert.estimator_ = load_estimator(blob, directory / _ESTIMATOR, trusted_types)
        expert._blob = blob
        expert.check_loaded(directory, metadata)
        return expert
