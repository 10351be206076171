"""The label column of every split, read into one :class:`~ensemble.labels.LabelSpace`.

Which classes exist is decided here; encoding names and ids into class indices is
:class:`~ensemble.labels.LabelSpace`'s job.

* string labels: the sorted names, or the ``class_names`` order;
* integer ids: ``class_names`` (ids index into it), else ``"0"``, ``"1"``, ...;
* a ``ClassLabel``: its names (splits must agree), or re-ordered to ``class_names`` by name.

Without ``class_names`` a label that no ``train`` row has (it appears only in ``validation``
or ``test``) and two labels that differ only in case or surrounding spaces (``Circle`` next
to ``circle``) are :class:`~ensemble.exceptions.LabelError`; ``allow_unseen_labels=True``
accepts the former.

Example:
    >>> from datasets import Dataset
    >>> train = Dataset.from_dict({"label": ["dog", "cat", "dog"]})
    >>> space, codes = label_space({"train": train}, {"train": ["a", "b", "c"]}, "label")
    >>> list(space), codes["train"].tolist()
    (['cat', 'dog'], [1, 0, 1])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..exceptions import ClassMismatchError, LabelError
from ..labels import LabelSpace
from .hints import keyword_hint

__all__ = ["label_space"]

_STRING_DTYPES = ("string", "large_string")
_INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
_NO_LABEL = object()


def _read(dset: Any, split: str, column: str, label_column: str) -> tuple[str, list[Any]]:
    """The kind of a split's label column and its values (ClassLabel ids -> names)."""
    from datasets import ClassLabel, Value

    feature = dset.features[column]
    raw = dset.with_format("arrow")[column].to_pylist()
    if isinstance(feature, ClassLabel):
        return "classlabel", [_NO_LABEL if v is None or not 0 <= v < len(feature.names)
                              else feature.names[v] for v in raw]
    dtype = feature.dtype if isinstance(feature, Value) else None
    if dtype in _STRING_DTYPES:
        return "string", [_NO_LABEL if v is None else v for v in raw]
    if dtype in _INT_DTYPES:
        return "int", [_NO_LABEL if v is None else v for v in raw]
    if dtype in ("float16", "float32", "float64") and all(
            v is None or v != v or float(v).is_integer() for v in raw):
        # integer ids read as floats because a cell is empty (csv): the empty cell is missing
        return "int", [_NO_LABEL if v is None or v != v else int(v) for v in raw]
    if dtype == "null":
        return "null", [_NO_LABEL] * len(raw)
    raise LabelError(
        f"column {label_column!r} of split {split!r} has type {feature}; labels must be class "
        f"names (strings), integer class ids or a ClassLabel. Cast it, e.g. "
        f"ds.cast_column({label_column!r}, Value('string'))."
    )


def _spelling_variants(values: Mapping[str, list[Any]], ids: Mapping[str, Sequence[str]],
                       label_column: str) -> None:
    """Refuse labels that differ only in case or surrounding spaces (``Circle``/``circle``)."""
    first: dict[str, tuple[str, str, int]] = {}
    counts: dict[str, int] = {}
    for split, vals in values.items():
        for row, value in enumerate(vals):
            counts[value] = counts.get(value, 0) + 1
            first.setdefault(value, (split, ids[split][row], row))
    groups: dict[str, list[str]] = {}
    for value in first:
        groups.setdefault(value.strip().casefold(), []).append(value)
    for spellings in groups.values():
        if len(spellings) < 2:
            continue
        spellings.sort(key=lambda v: -counts[v])
        common, rare = spellings[0], spellings[1]
        split, ident, row = first[rare]
        raise LabelError(
            f"labels {rare!r} and {common!r} in column {label_column!r} differ only in case or "
            f"spaces: {rare!r} ({counts[rare]} row(s)) first appears in example {ident!r} "
            f"(split {split!r}, row {row}), {common!r} in {counts[common]} row(s). Fix the "
            f"spelling, or if they are different classes list every class with "
            f"{_class_names_hint(sorted(first))}."
        )


def _class_names_hint(names: Sequence[str]) -> str:
    """``class_names=[...]`` listing ``names`` (a placeholder when they are many)."""
    if len(names) <= 12:
        return keyword_hint("class_names", list(names))
    return (f"class_names=[...] listing all {len(names)} classes (CLI: --data-option "
            "'class_names=[...]')")


def _unseen(codes: Mapping[str, np.ndarray], ids: Mapping[str, Sequence[str]],
            space: LabelSpace, label_column: str, train_split: str) -> None:
    """Refuse a class that has rows in another split but none in ``train_split``."""
    seen = {space.names[code] for code in codes[train_split].tolist()}
    for split, values in codes.items():
        if split == train_split:
            continue
        for row, code in enumerate(values.tolist()):
            name = space.names[code]
            if name in seen:
                continue
            close = [n for n in seen if n.strip().casefold() == name.strip().casefold()]
            spelling = f" Did you mean {close[0]!r}? Fix the spelling, or" if close else ""
            raise LabelError(
                f"label {name!r} of example {ids[split][row]!r} (split {split!r}, row {row}, "
                f"column {label_column!r}) has no row in split {train_split!r}, so no expert "
                f"could learn it.{spelling} If the class is meant to be there, list every "
                f"class with {_class_names_hint(space.names)}, or pass "
                f"{keyword_hint('allow_unseen_labels', True)}."
            )


def label_space(
    splits: Mapping[str, Any],
    ids: Mapping[str, Sequence[str]],
    column: str,
    *,
    label_column: str | None = None,
    class_names: Sequence[str] | None = None,
    allow_unseen_labels: bool = False,
    train_split: str = "train",
) -> tuple[LabelSpace, dict[str, np.ndarray]]:
    """One label space for every split's ``column``, and each split's class indices.

    ``label_column`` is the user's name for the column (for messages; default ``column``).
    """
    label_column = label_column or column
    kinds: dict[str, str] = {}
    values: dict[str, list[Any]] = {}
    for split, dset in splits.items():
        kinds[split], values[split] = _read(dset, split, column, label_column)
        for row, value in enumerate(values[split]):
            if value is _NO_LABEL:
                raise LabelError(
                    f"example {ids[split][row]!r} (split {split!r}, row {row}) has no label in "
                    f"column {label_column!r} (empty, None, or a ClassLabel -1 meaning 'no "
                    "label'); fill it in, or drop unlabelled rows first (e.g. ds.filter(...))."
                )
    distinct = set(kinds.values()) - {"null"}
    if len(distinct) > 1:
        raise LabelError(
            f"splits disagree on the label type: {kinds}; make the {label_column!r} column the "
            f"same type (all names or all integer ids) in every split."
        )
    kind = distinct.pop() if distinct else "null"
    if class_names is not None:
        names = list(LabelSpace(class_names).names)
    elif kind == "classlabel":
        spaces = {s: list(splits[s].features[column].names) for s in splits}
        (first_split, names), *others = spaces.items()
        for split, other in others:
            if other != names:
                raise ClassMismatchError(
                    f"splits {first_split!r} and {split!r} have different ClassLabel names "
                    f"{names} vs {other}; pass {keyword_hint('class_names')} to fix one order."
                )
    elif kind == "string":
        _spelling_variants(values, ids, label_column)
        names = sorted({v for vs in values.values() for v in vs})
    elif kind == "int":
        names = [str(i) for i in range(max(v for vs in values.values() for v in vs) + 1)]
    else:
        names = []
    if len(names) < 2:
        raise LabelError(
            f"column {label_column!r} holds {len(names)} class(es) {names!r}; a classifier "
            f"needs two or more. Check {keyword_hint('label_column')}."
        )
    space = LabelSpace(names)
    encoded = {split: space.encode(vals, ids=ids[split], where=f"split {split!r}")
               for split, vals in values.items()}
    if (class_names is None and not allow_unseen_labels and train_split in splits
            and len(splits) > 1):
        _unseen(encoded, ids, space, label_column, train_split)
    return space, encoded
