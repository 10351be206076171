"""``TfidfExpert`` (kind ``tfidf``): TF-IDF n-grams of one text column + a linear classifier.

A cheap text expert that fits in seconds on a CPU and errs differently from a fine-tuned
transformer: scikit-learn's ``TfidfVectorizer`` (character n-grams within word boundaries
by default, sublinear term frequencies) feeding a classifier with ``predict_proba``
(``LogisticRegression`` by default). The column holds one string per row, ``None`` where the
text is missing; missing rows get zero logits.

Saved without pickle: the fitted ``Pipeline(tfidf, classifier)`` as one skops file, loaded
back only when its bytes match the fingerprint recorded next to it and every type in it is
trusted (:mod:`ensemble.experts.sklearn_estimators`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_directory
from ..exceptions import ArtifactError, ConfigError, DataError, InvalidTextError
from ..labels import LabelSpace, log_probabilities
from ..modalities.text import to_text
from .base import Expert
from .registry import register_expert
from .sklearn_estimators import (
    check_classifier,
    estimator_bytes,
    estimator_from_name,
    load_estimator,
)

__all__ = ["ANALYZERS", "DEFAULT_C", "TfidfExpert"]

_PIPELINE = "pipeline.skops"
#: The ``analyzer`` values of ``TfidfVectorizer`` this kind accepts.
ANALYZERS = ("char_wb", "char", "word")
#: ``C`` of the default ``LogisticRegression`` (chosen on the emoji dataset's validation
#: split; see docs/experts.md).
DEFAULT_C = 10.0
_STEPS = ("tfidf", "classifier")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _default_estimator(seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=DEFAULT_C, max_iter=2000, random_state=seed)


@register_expert("tfidf")
class TfidfExpert(Expert):
    """TF-IDF n-grams of a text column, classified by a scikit-learn linear model.

    ``analyzer`` is ``"char_wb"`` (character n-grams inside word boundaries: robust to
    spelling and word forms), ``"char"`` or ``"word"``; ``ngram_range`` the n-gram lengths;
    ``max_features`` keeps the most frequent n-grams (``None``: all). ``estimator`` is an
    unfitted classifier with ``predict_proba``, a dotted scikit-learn class path (with
    ``estimator_params``), or ``None`` for ``LogisticRegression(C=10, max_iter=2000)``.

    Example:
        >>> import datasets
        >>> expert = TfidfExpert(column="text", labels=["fruit", "sky"])
        >>> ds = datasets.Dataset.from_dict({"text": ["red apple", "blue sky"] * 5,
        ...                                  "label": ["fruit", "sky"] * 5})
        >>> expert.fit(ds).predict_logits(["an apple", None]).argmax(axis=1).tolist()
        [0, 0]
    """

    torch_free = True

    modality = "text"

    def __init__(self, *, column: str = "text", labels: LabelSpace | Sequence[str],
                 analyzer: str = "char_wb", ngram_range: Sequence[int] = (1, 4),
                 max_features: int | None = 50000, lowercase: bool = True,
                 estimator: Any = None, estimator_params: Mapping[str, Any] | None = None,
                 seed: int = 0) -> None:
        super().__init__(column=column, labels=labels, seed=seed)
        self.analyzer = analyzer
        self.ngram_range = ngram_range
        self.max_features = max_features
        self.lowercase = lowercase
        self.estimator = estimator
        self.estimator_params = dict(estimator_params or {})
        self._fingerprint: str | None = None
        self._blob: bytes | None = None

    # -- inputs ---------------------------------------------------------------------------

    def _text(self, value: Any, row: int) -> str:
        """``value`` as a non-empty string (bytes decoded as UTF-8), or a typed error."""
        if isinstance(value, (bytes, bytearray)):
            return to_text(value, ident=f"row {row} of column {self.column}")
        if not isinstance(value, str):
            raise InvalidTextError(
                f"row {row} of column {self.column!r} is a {type(value).__name__} "
                f"({_short(value)}), not a string; pass str, or None for a missing text."
            )
        if not value.strip():
            raise InvalidTextError(
                f"row {row} of column {self.column!r} is an empty text ({value!r}); fill it "
                "in, or pass None to mark the text as missing."
            )
        return value

    def _present_texts(self, values: list[Any]) -> tuple[list[int], list[str]]:
        present = [i for i, value in enumerate(values) if value is not None]
        return present, [self._text(values[i], i) for i in present]

    # -- fitting --------------------------------------------------------------------------

    def _check_options(self) -> tuple[int, int]:
        """Refuse bad options (named, with the fix); the n-gram range as a tuple."""
        if self.analyzer not in ANALYZERS:
            raise ConfigError(
                f"analyzer {self.analyzer!r} is not one of {list(ANALYZERS)!r}; use 'char_wb' "
                "(character n-grams within words, the default) or 'word'."
            )
        ngrams = self.ngram_range
        if (not isinstance(ngrams, (list, tuple)) or len(ngrams) != 2
                or not all(isinstance(n, int) and not isinstance(n, bool) for n in ngrams)
                or not 1 <= ngrams[0] <= ngrams[1]):
            raise ConfigError(
                f"ngram_range {ngrams!r} must be two integers (min_n, max_n) with "
                "1 <= min_n <= max_n, e.g. (1, 4) for 'char_wb' or (1, 2) for 'word'."
            )
        features = self.max_features
        if features is not None and (isinstance(features, bool) or not isinstance(features, int)
                                     or features < 1):
            raise ConfigError(
                f"max_features {features!r} must be a positive integer (the most frequent "
                "n-grams kept) or None to keep them all."
            )
        if not isinstance(self.lowercase, bool):
            raise ConfigError(f"lowercase {self.lowercase!r} must be True or False.")
        return int(ngrams[0]), int(ngrams[1])

    def _make_estimator(self) -> Any:
        from sklearn.base import clone

        if self.estimator is None:
            estimator = _default_estimator(self.seed)
            if self.estimator_params:
                estimator.set_params(**self.estimator_params)
        elif isinstance(self.estimator, str):
            estimator = estimator_from_name(self.estimator, self.estimator_params,
                                            example="sklearn.linear_model.LogisticRegression")
        else:
            estimator = clone(self.estimator)
            if self.estimator_params:
                estimator.set_params(**self.estimator_params)
        return check_classifier(
            estimator, suggestion="LogisticRegression, SGDClassifier(loss='log_loss') or "
                                  "ComplementNB")

    def _make_pipeline(self, ngrams: tuple[int, int]) -> Any:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import Pipeline

        vectorizer = TfidfVectorizer(analyzer=self.analyzer, ngram_range=ngrams,
                                     max_features=self.max_features, lowercase=self.lowercase,
                                     sublinear_tf=True, min_df=1)
        return Pipeline([(_STEPS[0], vectorizer), (_STEPS[1], self._make_estimator())])

    def fit(self, train: Any, eval_dataset: Any | None = None, *, config: Any = None,
            label_column: str = "label", **train_args: Any) -> TfidfExpert:
        """Fit the vectorizer and the classifier on the rows of ``train`` that have a text.

        ``eval_dataset`` is not used (the classifier has no epochs to pick from).
        """
        if train_args or config is not None:
            raise ConfigError(
                f"the tfidf expert takes no training arguments (got "
                f"{sorted(train_args) or ['config']!r}); pass its options (analyzer, "
                "ngram_range, estimator_params, ...) when creating it instead."
            )
        ngrams = self._check_options()
        labels = self.encode_labels(train, label_column)
        present, texts = self._present_texts(self.column_values(train))
        if not texts:
            raise DataError(
                f"no training example has a {self.column!r} text ({len(labels)} rows, all "
                "missing or none); nothing to fit. Check the column and the training split."
            )
        self.require_two_classes(labels[present])
        pipeline = self._make_pipeline(ngrams)
        try:
            pipeline.fit(texts, labels[present])
        except ValueError as err:
            if "empty vocabulary" not in str(err):
                raise
            raise DataError(
                f"the {self.analyzer!r} analyzer finds no n-gram in the {self.column!r} texts "
                f"(e.g. {texts[0]!r}): {err}. Use analyzer='char_wb', or a column of words."
            ) from None
        self.pipeline_ = pipeline
        self._fingerprint = None
        self._blob = None
        self.record_trained_on(train)
        return self

    def _check_fitted(self) -> None:
        self.require_fitted("pipeline_")

    @property
    def vocabulary_size_(self) -> int:
        """How many n-grams the fitted vectorizer keeps."""
        self._check_fitted()
        return len(self.pipeline_.named_steps[_STEPS[0]].vocabulary_)

    # -- inference ------------------------------------------------------------------------

    def predict_logits(self, data: Any, *, batch_size: int = 64, return_features: bool = False,
                       progress: bool = True) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Log-probabilities ``[N, C]`` as logits (zeros where the text is missing).

        The features (``return_features=True``) are the same log-probabilities: the TF-IDF
        vectors are sparse and tens of thousands wide, so feature stacking gets the
        classifier's class scores, ``[N, C]``, zeros where the text is missing.
        """
        self._check_fitted()
        values = self.column_values(data)
        present, texts = self._present_texts(values)
        logits = np.zeros((len(values), self.num_classes), dtype=np.float32)
        if present:
            proba = self.pipeline_.predict_proba(texts)
            full = np.zeros((len(present), self.num_classes), dtype=np.float64)
            full[:, np.asarray(self.pipeline_.classes_, dtype=np.int64)] = proba
            logits[present] = log_probabilities(full).astype(np.float32)
        return (logits, logits.copy()) if return_features else logits

    # -- identity and persistence ---------------------------------------------------------

    def _pipeline_bytes(self) -> bytes:
        if self._blob is None:
            self._blob = estimator_bytes(self.pipeline_)
        return self._blob

    def _digest(self, blob: bytes) -> str:
        digest = hashlib.sha256(b"TfidfExpert")
        digest.update("\x1f".join(self.class_names).encode())
        digest.update(blob)
        return digest.hexdigest()

    def fingerprint(self) -> str:
        """sha256 over the saved pipeline (vocabulary, weights, settings) and the label space."""
        self._check_fitted()
        if self._fingerprint is None:
            self._fingerprint = self._digest(self._pipeline_bytes())
        return self._fingerprint

    def hyper_parameters(self) -> dict[str, Any]:
        estimator = self.estimator
        name = (estimator if isinstance(estimator, str) or estimator is None
                else f"{type(estimator).__module__}.{type(estimator).__name__}")
        ngrams = self.ngram_range
        return {"analyzer": self.analyzer,
                "ngram_range": list(ngrams) if isinstance(ngrams, (list, tuple)) else ngrams,
                "max_features": self.max_features, "lowercase": self.lowercase,
                "estimator": name, "estimator_params": self.estimator_params}

    def save_pretrained(self, directory: str | Path) -> Path:
        """``pipeline.skops`` (the fitted ``Pipeline``) + ``ensemble.json``, atomically."""
        self._check_fitted()
        directory = Path(directory)
        with atomic_directory(directory) as tmp:
            (tmp / _PIPELINE).write_bytes(self._pipeline_bytes())
            self.write_metadata(tmp)
        return directory

    @classmethod
    def load_saved(cls, directory: Path, metadata: Mapping[str, Any], *,
                   trusted_types: Sequence[str] = (), **kwargs: Any) -> TfidfExpert:
        """Load with skops after checking the file against the recorded fingerprint,
        trusting only scikit-learn classes, numpy scalar types and ``trusted_types``."""
        params = dict(metadata.get("params") or {})
        try:
            expert = cls(column=str(metadata["column"]), labels=metadata["class_names"],
                         analyzer=str(params.get("analyzer", "char_wb")),
                         ngram_range=tuple(params.get("ngram_range") or (1, 4)),
                         max_features=params.get("max_features"),
                         lowercase=bool(params.get("lowercase", True)),
                         estimator=params.get("estimator"),
                         estimator_params=params.get("estimator_params") or {},
                         seed=int(metadata.get("seed", 0)))
        except (KeyError, TypeError, ValueError) as err:
            raise ArtifactError(f"{directory} is incomplete or damaged ({err}).") from err
        path = directory / _PIPELINE
        if not path.is_file():
            raise ArtifactError(f"{path} is missing; re-save the expert.")
        blob = path.read_bytes()
        recorded = metadata.get("fingerprint")
        if recorded and recorded != expert._digest(blob):
            # Checked before skops reads the file: nothing of a modified file is loaded.
            raise ArtifactError(
                f"{directory}: {_PIPELINE} does not match the fingerprint in ensemble.json; "
                "the folder was modified after saving. Re-save the expert."
            )
        pipeline = load_estimator(blob, path, trusted_types)
        steps = getattr(pipeline, "named_steps", None)
        if steps is None or list(steps) != list(_STEPS) or not hasattr(pipeline, "classes_"):
            raise ArtifactError(
                f"{path} holds a {type(pipeline).__name__}, not the fitted "
                f"Pipeline({', '.join(_STEPS)}) of a tfidf expert; re-save the expert."
            )
        expert.pipeline_ = pipeline
        expert._blob = blob
        expert.check_loaded(directory, metadata)
        return expert
