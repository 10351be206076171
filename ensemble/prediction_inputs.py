"""Reading a predictor's inputs: columns by name, row mappings, shortcuts, explanations.

Shared by :class:`~ensemble.predictor.FusionPredictor` (torch) and
:class:`~ensemble.runtime.OnnxPredictor` (ONNX Runtime), so both accept exactly the same
inputs and refuse bad ones with the same messages. Torch-free.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np

from .exceptions import DataError, ModalityError
from .labels import softmax
from .typed_values import did_you_mean

__all__ = ["SHORTCUTS", "PredictorInputs"]

#: ``predict`` shortcut keyword -> the modality whose (single) input column it feeds.
SHORTCUTS: dict[str, str] = {"images": "image", "texts": "text"}


def _as_batch(value: Any, modality: str) -> list[Any]:
    """One input or a batch of inputs as a list (a lone string/path/image/mapping is one
    example; an image array is one image unless it is a batch ``N x H x W x C``)."""
    from PIL import Image

    if isinstance(value, (str, bytes, bytearray, os.PathLike, Image.Image, Mapping)):
        return [value]
    if isinstance(value, np.ndarray):
        single = {"image": (2, 3)}.get(modality, (1,))
        if value.ndim in single:
            return [value]
        if value.ndim == max(single) + 1:
            return list(value)
        raise DataError(
            f"a {modality} array must have {' or '.join(str(n) for n in single)} dimensions "
            f"for one example, or one more for a batch; got shape {value.shape}."
        )
    if hasattr(value, "column_names"):
        raise DataError("got a datasets.Dataset; use predict_dataset(dataset) for datasets.")
    try:
        return list(value)
    except TypeError:
        raise DataError(
            f"cannot read a {type(value).__name__} as model input; give one input (PIL image, "
            "path, array, string or mapping) or a list of them, with None where it is missing."
        ) from None


class PredictorInputs:
    """Input handling for a predictor whose ``_experts`` maps expert names to objects with
    a ``column`` and a ``modality``, and whose ``class_names`` are its classes."""

    _experts: dict[str, Any]
    combiner: Any
    class_names: tuple[str, ...]
    batch_size: int
    progress: bool = False

    def _inference_context(self) -> contextlib.AbstractContextManager[Any]:
        """Entered around each expert's forward passes (e.g. autocast)."""
        return contextlib.nullcontext()

    def _column_order(self, expert: Any) -> list[int]:
        position = {name: i for i, name in enumerate(expert.class_names)}
        return [position[name] for name in self.class_names]

    def _logit_set(self, inputs: Mapping[str, list[Any]], ids: Sequence[str] | None = None
                   ) -> Any:
        from .logits import LogitSet

        logits, features, mask = {}, {}, {}
        n_rows = len(next(iter(inputs.values())))
        for name, expert in self._experts.items():
            values = inputs[expert.column]
            present = np.asarray(expert.present_rows(values), dtype=bool)
            with self._inference_context():
                raw, embedded = expert.predict_logits(values, batch_size=self.batch_size,
                                                      return_features=True,
                                                      progress=self.progress)
            logits[name] = raw[:, self._column_order(expert)]
            features[name] = embedded
            mask[name] = present
        stacked = np.stack([mask[name] for name in self._experts], axis=1)
        empty = np.flatnonzero(~stacked.any(axis=1))
        if empty.size:
            raise DataError(
                f"example(s) {empty[:5].tolist()!r} have no input for any expert; give at "
                f"least one input per example (inputs: {self._describe_columns()})."
            )
        return LogitSet(logits, self.class_names, ids=ids if ids is not None
                        else [str(i) for i in range(n_rows)], mask=mask, features=features)

    @property
    def experts(self) -> Mapping[str, Any]:
        """The experts by name (read-only mapping)."""
        return MappingProxyType(self._experts)

    @property
    def expert_names(self) -> tuple[str, ...]:
        return tuple(self._experts)

    @property
    def columns(self) -> dict[str, str]:
        """Input column -> its modality, for every column some expert reads."""
        return {e.column: e.modality for e in self._experts.values()}

    # -- inputs -> logits -----------------------------------------------------------------

    def _describe_columns(self) -> str:
        readers: dict[str, list[str]] = {}
        for name, expert in self._experts.items():
            readers.setdefault(expert.column, []).append(name)
        return "; ".join(f"{column} ({self.columns[column]}: read by {', '.join(names)})"
                         for column, names in readers.items())

    def _shortcut_column(self, keyword: str) -> str:
        modality = SHORTCUTS[keyword]
        columns = sorted({e.column for e in self._experts.values() if e.modality == modality})
        if len(columns) == 1:
            return columns[0]
        if not columns:
            raise ModalityError(
                f"{keyword}= was given but no expert reads {modality} inputs (inputs: "
                f"{self._describe_columns()}); pass predict({{column: [...]}})."
            )
        raise ModalityError(
            f"{keyword}= is ambiguous: {len(columns)} columns hold {modality} inputs "
            f"({columns!r}); pass them by column name, e.g. predict({{{columns[0]!r}: [...]}}) "
            f"(CLI: --input {columns[0]}=...)."
        )

    def _rows_to_columns(self, rows: Sequence[Any]) -> dict[str, list[Any]]:
        known = self.columns
        columns: dict[str, list[Any]] = {c: [] for c in known}
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise DataError(
                    f"row {i} is a {type(row).__name__}; give rows as mappings {{column: value}} "
                    f"(columns: {sorted(known)!r})."
                )
            self._check_names(row)
            for column in known:
                columns[column].append(row.get(column))
        return columns

    def _check_names(self, given: Mapping[str, Any]) -> None:
        for name in given:
            if name in self.columns:
                continue
            if name in self._experts:
                raise ModalityError(
                    f"{name!r} is an expert, not an input column; inputs are keyed by the column "
                    f"the expert reads ({self._experts[name].column!r})."
                )
            hint = did_you_mean(str(name), self.columns)
            raise ModalityError(
                f"unknown input column {name!r}.{hint} This predictor reads: "
                f"{self._describe_columns()}."
            )

    def _inputs(self, inputs: Any, images: Any, texts: Any) -> dict[str, list[Any]]:
        """Per input column, one value per example (``None`` where it is missing)."""
        given: dict[str, Any] = {}
        if inputs is not None:
            if hasattr(inputs, "column_names"):
                raise DataError("got a datasets.Dataset; use predict_dataset(dataset) for "
                                "datasets.")
            if isinstance(inputs, Mapping):
                self._check_names(inputs)
                given.update(inputs)
            elif isinstance(inputs, Sequence) and not isinstance(inputs, (str, bytes)):
                given.update(self._rows_to_columns(inputs))
            else:
                raise DataError(
                    f"inputs must be a mapping {{column: values}} or a list of row mappings, got "
                    f"{type(inputs).__name__}."
                )
        for keyword, value in (("images", images), ("texts", texts)):
            if value is not None:
                column = self._shortcut_column(keyword)
                if column in given:
                    raise DataError(f"column {column!r} was given twice (as {keyword}= and by "
                                    "name); give it once.")
                given[column] = value
        if not given:
            raise DataError(f"no inputs given; pass predict({{column: [...]}}) with columns "
                            f"{sorted(self.columns)!r} (or images=/texts= shortcuts).")
        batches = {column: _as_batch(value, self.columns[column])
                   for column, value in given.items()}
        sizes = {column: len(batch) for column, batch in batches.items()}
        if len(set(sizes.values())) != 1:
            raise DataError(
                f"every input column needs one entry per example (None where it is missing); "
                f"got {sizes}."
            )
        n_rows = next(iter(sizes.values()))
        if n_rows == 0:
            raise DataError("the inputs are empty; give at least one example.")
        return {column: batches.get(column, [None] * n_rows) for column in self.columns}

    def explain(self, inputs: Any = None, *, images: Any = None,
                texts: Any = None) -> list[dict[str, Any]]:
        """Per example: the fused prediction, each expert's probabilities and how the
        combiner weighed its inputs (its own ``explain_weights``)."""
        return self._explain(self._logit_set(self._inputs(inputs, images, texts)))

    def _explain(self, logit_set: Any) -> list[dict[str, Any]]:
        explained = self.combiner.explain_weights(logit_set)
        weights, kind = (None, None) if explained is None else (explained[:2], explained[2])
        return self._explain_rows(self.combiner.predict_proba(logit_set), logit_set,
                                  weights, kind)

    def _explain_rows(self, fused: np.ndarray, logit_set: Any,
                      weights: tuple[np.ndarray, tuple[str, ...]] | None,
                      kind: str | None) -> list[dict[str, Any]]:
        """Per example: the fused prediction, each expert's own probabilities and how the
        combiner weighed its inputs (``weights``: ``[N, K]`` and the K names, or None)."""
        mask = np.asarray(logit_set.mask)
        combiner = {k: v for k, v in self.combiner.summary().items() if k != "cv"}
        rows = []
        for i in range(logit_set.n_rows):
            experts = {}
            for j, name in enumerate(logit_set.expert_names):
                if not mask[i, j]:
                    experts[name] = {"available": False}
                    continue
                proba = softmax(logit_set.logits[name][i : i + 1])[0]
                experts[name] = {"available": True, **self._distribution(proba)}
            rows.append({
                "id": str(logit_set.ids[i]),
                **self._distribution(fused[i]),
                "experts": experts,
                "weights": None if weights is None else dict(zip(weights[1], weights[0][i].tolist(),
                                                                 strict=True)),
                "weights_kind": kind,
                "combiner": combiner,
            })
        return rows

    def _distribution(self, proba: np.ndarray) -> dict[str, Any]:
        best = int(np.argmax(proba))
        return {"label": self.class_names[best], "confidence": float(proba[best]),
                "probabilities": dict(zip(self.class_names, map(float, proba), strict=True))}
