"""The label space: ordered class names and the one place labels are encoded and decoded.

Every layer (data loading, experts, combiners, the predictor, the pipeline) maps labels to
class indices through :class:`LabelSpace`, so a name, an integer id or a
``datasets.ClassLabel`` value means the same class everywhere. :func:`softmax` and
:func:`log_softmax` are the one owner of turning logits into probabilities.

Example:
    >>> space = LabelSpace(["cat", "dog"])
    >>> space.encode(["dog", "cat", 1]).tolist()
    [1, 0, 1]
    >>> space.decode([0, 1]).tolist()
    ['cat', 'dog']
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .exceptions import ClassMismatchError, ConfigError, DataError, LabelError

__all__ = ["LabelSpace", "log_probabilities", "log_softmax", "softmax"]


def log_softmax(scores: np.ndarray, axis: int = -1) -> np.ndarray:
    """``log(softmax(scores))`` along ``axis``, stable for large values."""
    scores = np.asarray(scores)
    shifted = scores - scores.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def softmax(scores: np.ndarray, axis: int = -1) -> np.ndarray:
    """Probabilities from logits along ``axis`` (rows sum to 1), in the input's float dtype."""
    scores = np.asarray(scores)
    dtype = scores.dtype if scores.dtype.kind == "f" else np.float64
    return np.exp(log_softmax(scores.astype(np.float64), axis=axis)).astype(dtype)


def log_probabilities(proba: np.ndarray, *, floor: float = 1e-7) -> np.ndarray:
    """Probabilities ``[N, C]`` as logits: clipped at ``floor`` (the log of 0 is -inf),
    renormalised and logged, in float64.

    Example:
        >>> log_probabilities(np.array([[1.0, 0.0]])).round(1).tolist()
        [[-0.0, -16.1]]
    """
    clipped = np.maximum(np.asarray(proba, dtype=np.float64), floor)
    return np.log(clipped / clipped.sum(axis=-1, keepdims=True))


@dataclass(frozen=True)
class LabelSpace:
    """An ordered tuple of distinct class names.

    ``encode`` accepts class names, integer indices, or a mix; ``encode_column`` reads a
    ``datasets`` label column (``ClassLabel`` values are matched by *name*, so a dataset
    whose ``ClassLabel`` orders the classes differently still encodes correctly).

    Example:
        >>> LabelSpace(["a", "b", "c"]).index("c")
        2
    """

    names: tuple[str, ...]

    def __init__(self, names: Sequence[str] | LabelSpace) -> None:
        if isinstance(names, LabelSpace):
            names = names.names
        if isinstance(names, str) or not isinstance(names, Sequence | np.ndarray):
            raise ConfigError(
                f"class names must be a list of strings, got {names!r}; e.g. ['cat', 'dog']."
            )
        values = tuple(str(n) if isinstance(n, np.str_) else n for n in names)
        for name in values:
            if not isinstance(name, str) or not name:
                raise ConfigError(f"class names must be non-empty strings, got {name!r}.")
        if len(values) < 2:
            raise ClassMismatchError(
                f"a label space needs at least two classes, got {list(values)!r}."
            )
        repeated = sorted({n for n in values if values.count(n) > 1})
        if repeated:
            raise ConfigError(f"class names {repeated!r} appear more than once; list each once.")
        object.__setattr__(self, "names", values)

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def coerce(cls, value: LabelSpace | Sequence[str]) -> LabelSpace:
        """``value`` itself when it is a :class:`LabelSpace`, else one built from names."""
        return value if isinstance(value, LabelSpace) else cls(value)

    @classmethod
    def from_dataset(cls, dataset: Any, label_column: str = "label") -> LabelSpace:
        """The ``ClassLabel`` names of a ``Dataset`` or ``DatasetDict`` (splits must agree)."""
        from datasets import ClassLabel, Dataset, DatasetDict

        if isinstance(dataset, Dataset):
            splits = {"dataset": dataset}
        elif isinstance(dataset, DatasetDict):
            splits = dict(dataset)
        else:
            raise DataError(
                f"expected a datasets.DatasetDict or Dataset, got {type(dataset).__name__}."
            )
        if not splits:
            raise DataError("the DatasetDict has no splits, so it has no label space.")
        found: LabelSpace | None = None
        first = ""
        for split, dset in splits.items():
            feature = dset.features.get(label_column)
            if not isinstance(feature, ClassLabel):
                kind = "missing" if feature is None else f"a {type(feature).__name__}"
                raise DataError(
                    f"column {label_column!r} of split {split!r} is {kind}, not a ClassLabel; "
                    "load the data with ensemble.load_multimodal(...) to build the label space "
                    f"(available columns: {dset.column_names})."
                )
            space = cls(feature.names)
            if found is None:
                found, first = space, split
            elif space != found:
                raise ClassMismatchError(
                    f"splits {first!r} and {split!r} have different label spaces: "
                    f"{list(found)} vs {list(space)}; reload with "
                    "load_multimodal(..., class_names=[...])."
                )
        assert found is not None  # splits is non-empty
        return found

    # -- sequence protocol ----------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __getitem__(self, index: int) -> str:
        return self.names[index]

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def __repr__(self) -> str:
        shown = list(self.names[:6]) + (["..."] if len(self) > 6 else [])
        return f"LabelSpace({len(self)} classes: {', '.join(map(str, shown))})"

    def index(self, name: str) -> int:
        """The class index of ``name``; :class:`LabelError` names the unknown label."""
        try:
            return self._positions()[name]
        except KeyError:
            raise LabelError(
                f"label {name!r} is not in the label space {list(self.names)!r}; fix the label "
                "or the class list."
            ) from None

    def _positions(self) -> dict[str, int]:
        cached = self.__dict__.get("_position_cache")
        if cached is None:
            cached = {name: i for i, name in enumerate(self.names)}
            object.__setattr__(self, "_position_cache", cached)
        return cached

    # -- encode / decode ------------------------------------------------------------------

    def encode(self, values: Any, *, ids: Sequence[Any] | None = None,
               where: str = "") -> np.ndarray:
        """Class indices ``int64 [N]`` for names and/or integer indices.

        ``ids`` (one per value) and ``where`` (e.g. ``"split 'test'"``) only make errors
        name the offending example.
        """
        if isinstance(values, np.ndarray) and values.dtype.kind in "iu":
            out = values.astype(np.int64).reshape(-1)
            bad = np.flatnonzero((out < 0) | (out >= len(self)))
            if bad.size:
                self._raise_unknown(out[bad[0]].item(), int(bad[0]), ids, where)
            return out
        if isinstance(values, np.ndarray) and values.dtype.kind == "b":
            return self.encode(values.astype(np.int64), ids=ids, where=where)
        if isinstance(values, np.ndarray) and values.dtype.kind == "f":
            flat = values.reshape(-1)
            bad = np.flatnonzero(~np.isfinite(flat) | (flat != np.round(flat)))
            if bad.size:
                raise LabelError(
                    f"label {flat[bad[0]].item()!r} is not an integer class index (row "
                    f"{int(bad[0])}); use integers in [0, {len(self)}) or class names."
                )
            return self.encode(flat.astype(np.int64), ids=ids, where=where)
        positions = self._positions()
        items = list(values)
        out = np.empty(len(items), dtype=np.int64)
        for row, value in enumerate(items):
            if isinstance(value, np.generic):
                value = value.item()
            if isinstance(value, str) and value in positions:
                out[row] = positions[value]
            elif (isinstance(value, int) and not isinstance(value, bool)
                  and 0 <= value < len(self)):
                out[row] = value
            else:
                self._raise_unknown(value, row, ids, where)
        return out

    def _raise_unknown(self, value: Any, row: int, ids: Sequence[Any] | None,
                       where: str) -> None:
        example = f" of example {ids[row]!r}" if ids is not None and row < len(ids) else ""
        place = f" ({where}, row {row})" if where else f" (row {row})"
        close = ""
        if isinstance(value, str):
            folded = [n for n in self.names if n.casefold() == value.casefold()]
            if folded:
                close = f" Did you mean {folded[0]!r}?"
        raise LabelError(
            f"label {value!r}{example}{place} is not in the label space {list(self.names)!r}."
            f"{close} Fix the label, or list every class with class_names=[...]."
        )

    def decode(self, indices: Any) -> np.ndarray:
        """Class names (a string array) for class indices."""
        array = np.asarray(indices, dtype=np.int64)
        if array.size and (array.min() < 0 or array.max() >= len(self)):
            raise LabelError(f"class indices must lie in [0, {len(self)}), got {array.tolist()}.")
        return np.asarray(self.names, dtype=object)[array].astype(str)

    def encode_column(self, dataset: Any, column: str = "label") -> np.ndarray:
        """The labels of a ``datasets.Dataset`` column as class indices.

        ``ClassLabel`` values are translated through the feature's own names, so they are
        matched by name; string labels by name; plain integers as indices.
        """
        names = getattr(dataset, "column_names", None)
        if names is None:
            raise DataError(f"expected a datasets.Dataset, got {type(dataset).__name__}.")
        if column not in names:
            raise DataError(
                f"the dataset has no label column {column!r} (columns: {names!r}); pass "
                "label_column=."
            )
        feature = dataset.features[column]
        values = dataset.with_format(None)[column]
        own = getattr(feature, "names", None)
        if own is not None:
            unknown = [name for name in own if name not in self._positions()]
            if unknown:
                raise ClassMismatchError(
                    f"the dataset's labels include {unknown!r}, which are not in this label "
                    f"space {list(self.names)!r}; build the experts (and combiners) with the "
                    "dataset's label space (LabelSpace.from_dataset(ds))."
                )
            values = [own[v] if isinstance(v, int) and 0 <= v < len(own) else v for v in values]
        ids = dataset["id"] if "id" in names else None
        return self.encode(values, ids=ids)

    def permutation(self, other: LabelSpace | Sequence[str]) -> list[int]:
        """Column order that maps arrays in ``other``'s class order to this space's order.

        ``array_in_other[:, space.permutation(other)]`` is in this space's order.
        """
        other = LabelSpace.coerce(other)
        if set(other.names) != set(self.names):
            missing = sorted(set(self.names) - set(other.names))
            extra = sorted(set(other.names) - set(self.names))
            raise ClassMismatchError(
                f"label spaces differ: missing {missing!r}, unexpected {extra!r}; fit every "
                "part on one label space."
            )
        position = other._positions()
        return [position[name] for name in self.names]

    # -- persistence ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, list[str]]:
        return {"class_names": list(self.names)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabelSpace:
        return cls(list(data["class_names"]))
