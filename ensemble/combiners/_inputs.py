"""Turning what a user passes to ``fit`` / ``predict`` into a checked :class:`LogitSet`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np

from ..exceptions import InvalidLogitsError, LabelError, ModalityError
from ..labels import LabelSpace
from ..logits import LogitSet

__all__ = ["LogitsLike", "MaskLike", "encode_labels", "to_logitset"]

LogitsLike: TypeAlias = "LogitSet | Mapping[str, Any]"
MaskLike: TypeAlias = "np.ndarray | Mapping[str, Any] | None"


def _column_count(arrays: Mapping[str, Any]) -> int:
    for values in arrays.values():
        shape = np.shape(values)
        if len(shape) == 2:
            return int(shape[1])
    raise InvalidLogitsError(
        "logits must be 2-D arrays [N, C]; got shapes "
        f"{ {m: np.shape(v) for m, v in arrays.items()} }."
    )


def _fill_declared_missing(
    arrays: dict[str, Any], mask: MaskLike
) -> dict[str, Any]:
    """Add all-zero logits for modalities that the mask mapping declares entirely absent."""
    if not isinstance(mask, Mapping):
        return arrays
    absent = [m for m in mask if m not in arrays]
    if not absent or not arrays:
        return arrays
    first = np.shape(next(iter(arrays.values())))
    for modality in absent:
        if np.asarray(mask[modality], dtype=bool).any():
            raise ModalityError(
                f"the mask marks {modality!r} present on some rows but no logits were given "
                "for it; pass its logits or mark it absent on every row."
            )
        arrays[modality] = np.zeros(first, dtype=np.float32)
    return arrays


def to_logitset(
    logits: LogitsLike,
    *,
    mask: MaskLike = None,
    class_names: Sequence[str] | None = None,
) -> LogitSet:
    """A :class:`LogitSet` from a set or a ``{modality: [N, C]}`` mapping (+ optional mask).

    A mapping without ``class_names`` gets the names ``"0" .. "C-1"``. A mask mapping may
    name a modality that has no logits if it marks it absent on every row.
    """
    if isinstance(logits, LogitSet):
        if mask is not None:
            logits = logits.with_mask(mask)
        result = logits
    elif isinstance(logits, Mapping):
        if not logits:
            raise InvalidLogitsError("logits is an empty mapping; give {modality: array [N, C]}.")
        arrays = _fill_declared_missing(dict(logits), mask)
        names = (
            [str(c) for c in class_names]
            if class_names is not None
            else [str(i) for i in range(_column_count(arrays))]
        )
        result = LogitSet(arrays, names, mask=mask)
    else:
        raise InvalidLogitsError(
            "logits must be a LogitSet or a mapping {modality: array [N, C]}, "
            f"got {type(logits).__name__}."
        )
    if result.n_rows == 0:
        raise InvalidLogitsError("logits have no rows; a combiner needs at least one example.")
    return result


def encode_labels(y: Any, class_names: Sequence[str], n_rows: int) -> tuple[np.ndarray, bool]:
    """Integer class indices for ``y`` and whether ``y`` was given as class names.

    ``y`` holds integers in ``[0, C)`` or class-name strings (encoded by
    :class:`~ensemble.labels.LabelSpace`); anything else raises :class:`LabelError` naming
    the first bad value.
    """
    values = np.asarray(y)
    if values.ndim != 1:
        raise LabelError(f"y must be a 1-D sequence of labels, got shape {values.shape}.")
    if values.shape[0] != n_rows:
        raise LabelError(f"y has {values.shape[0]} labels but the logits have {n_rows} rows.")
    by_name = values.dtype.kind in "US" or values.dtype == object
    if not by_name and values.dtype.kind not in "iubf":
        raise LabelError(f"labels of dtype {values.dtype} are not supported; use ints or names.")
    space = LabelSpace(list(class_names))
    return space.encode(values.tolist() if by_name else values), by_name
