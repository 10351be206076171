"""The tabular modality: a group of numeric and categorical columns stored as one struct.

A tabular input names several source columns (``["price", "year", "brand"]``). When the data
is loaded they become ONE struct column named after the input, whose fields are ``float64``
(numeric) or ``string`` (categorical). Kinds are given (``{"numeric": [...],
"categorical": [...]}``) or inferred per column: numbers are numeric, strings categorical, and
a column that is mostly numbers but holds a non-number string is an
:class:`~ensemble.exceptions.InvalidTabularError` naming the column, split, row and value. A
row whose fields are all missing is ``None`` (the input is absent); single missing fields stay
``None`` inside the struct.

Example:
    >>> TabularModality().coerce({"price": "3.5", "brand": "acme", "year": None}, ident="ex-1")
    {'price': 3.5, 'brand': 'acme', 'year': None}
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..exceptions import InvalidTabularError
from .base import ColumnContext, Modality, is_missing_scalar, register_modality

__all__ = ["CATEGORICAL", "NUMERIC", "TabularFields", "TabularModality"]

NUMERIC = "numeric"
CATEGORICAL = "categorical"
_NUMERIC_DTYPES = frozenset({"bool", "int8", "int16", "int32", "int64", "uint8", "uint16",
                             "uint32", "uint64", "float16", "float32", "float64"})
_STRING_DTYPES = frozenset({"string", "large_string"})
_NOT_A_NUMBER = object()


@dataclass(frozen=True)
class TabularFields:
    """The fields of one tabular input in order, each ``"numeric"`` or ``"categorical"``.

    ``sources`` maps each field to where its values are read: ``(column, None)`` for a plain
    column, ``(column, field)`` for a field of a struct column.

    Example:
        >>> fields = TabularFields((("price", "numeric"), ("brand", "categorical")))
        >>> fields.numeric, fields.categorical
        (('price',), ('brand',))
    """

    kinds: tuple[tuple[str, str], ...]
    sources: Mapping[str, tuple[str, str | None]] | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.kinds)

    @property
    def numeric(self) -> tuple[str, ...]:
        return tuple(name for name, kind in self.kinds if kind == NUMERIC)

    @property
    def categorical(self) -> tuple[str, ...]:
        return tuple(name for name, kind in self.kinds if kind == CATEGORICAL)

    def feature(self) -> dict[str, Any]:
        """The ``datasets`` struct feature: ``float64`` numeric, ``string`` categorical fields."""
        from datasets import Value

        return {name: Value("float64" if kind == NUMERIC else "string")
                for name, kind in self.kinds}

    def source(self, name: str) -> tuple[str, str | None]:
        return (self.sources or {}).get(name, (name, None))


def _to_number(value: Any) -> Any:
    """``value`` as a float; ``None`` when missing; ``_NOT_A_NUMBER`` for a non-number."""
    if is_missing_scalar(value):
        return None
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            number = float(text)
        except ValueError:
            return _NOT_A_NUMBER
        return None if math.isnan(number) else number
    if hasattr(value, "item") and not isinstance(value, (bytes, bytearray)):
        return _to_number(value.item())  # numpy scalars
    return _NOT_A_NUMBER


def _to_category(value: Any) -> str | None:
    """``value`` as a category string (``3.0`` -> ``"3"``); ``None`` when missing."""
    if is_missing_scalar(value):
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes, bytearray)):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip() if isinstance(value, str) else str(value)
    return text or None


def _read(dataset: Any, column: str, field: str | None) -> tuple[Any, list[Any]]:
    """The feature and Python values of a column, or of one field of a struct column."""
    import pyarrow.compute as pc

    values = dataset.with_format("arrow")[column]
    feature = dataset.features[column]
    if field is not None:
        feature = feature[field]
        values = pc.struct_field(values, field) if len(values) else values
    names = getattr(feature, "names", None)
    items = values.to_pylist() if field is None or len(values) else []
    if names is not None:  # ClassLabel: the names are the categories
        items = [names[v] if isinstance(v, int) and 0 <= v < len(names) else None for v in items]
    return feature, items


@register_modality("tabular")
class TabularModality(Modality):
    """A group of numeric (float64) and categorical (string) fields, stored as one struct.

    Example:
        >>> from datasets import Value
        >>> TabularModality().matches({"price": Value("float64"), "brand": Value("string")})
        True
    """

    column_group = True

    def matches(self, feature: Any) -> bool:
        return (isinstance(feature, dict) and bool(feature) and all(
            getattr(sub, "dtype", None) in (_NUMERIC_DTYPES | _STRING_DTYPES)
            and not hasattr(sub, "names") for sub in feature.values()))

    def coerce(self, value: Any, ident: str) -> dict[str, float | str | None]:
        """``{field: float | str | None}``; numeric strings become floats."""
        if not isinstance(value, Mapping):
            raise InvalidTabularError(
                f"tabular input of example {ident!r} is a {type(value).__name__}; give a dict "
                "{column: value} (numbers, strings, or None for a missing value)."
            )
        out: dict[str, float | str | None] = {}
        for field, item in value.items():
            number = _to_number(item)
            if number is _NOT_A_NUMBER:
                if not isinstance(item, str):
                    raise InvalidTabularError(
                        f"field {field!r} of example {ident!r} is a {type(item).__name__} "
                        f"({item!r}); give a number, a string or None."
                    )
                out[str(field)] = _to_category(item)
            elif number is not None and not math.isfinite(number):
                raise InvalidTabularError(
                    f"field {field!r} of example {ident!r} is {item!r}; give a finite number, "
                    "or None for a missing value."
                )
            else:
                out[str(field)] = number
        return out

    def is_missing(self, value: Any) -> bool:
        if isinstance(value, Mapping):
            return all(is_missing_scalar(v) or v == "" for v in value.values())
        return is_missing_scalar(value)

    def digest(self, value: Any) -> bytes:
        return json.dumps(dict(value), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode("utf-8")

    def check_column(self, dataset: Any, column: str, split: str,
                     context: ColumnContext | None = None) -> None:
        context = context or ColumnContext(source=column)
        feature = dataset.features.get(column)
        if not self.matches(feature):
            raise InvalidTabularError(
                f"{context.describe(split)} holds {feature}, not a group of numeric (float64) "
                "and categorical (string) fields; load the data with "
                "load_multimodal(..., inputs={'meta': ['col1', 'col2']})."
            )

    # -- building a group at load time ---------------------------------------------------

    def group_fields(
        self,
        splits: Mapping[str, Any],
        sources: Mapping[str, str],
        *,
        numeric: Sequence[str] | None = None,
        categorical: Sequence[str] | None = None,
        context: ColumnContext | None = None,
    ) -> TabularFields:
        """The fields of a group over all splits: kinds given, or inferred per column.

        ``sources`` maps each user column name to the column that holds it in ``splits``. A
        single struct column is expanded into its fields.

        Example:
            >>> from datasets import Dataset
            >>> ds = Dataset.from_dict({"price": [1.5, 2.0], "brand": ["a", "b"]})
            >>> TabularModality().group_fields({"train": ds}, {"price": "price",
            ...                                  "brand": "brand"}).kinds
            (('price', 'numeric'), ('brand', 'categorical'))
        """
        context = context or ColumnContext()
        located: dict[str, tuple[str, str | None]] = {n: (c, None) for n, c in sources.items()}
        if len(sources) == 1:
            column = next(iter(sources.values()))
            first = next(iter(splits.values()))
            if isinstance(first.features.get(column), dict):
                located = {field: (column, field) for field in first.features[column]}
        if numeric is not None or categorical is not None:
            kinds = [(n, NUMERIC) for n in numeric or ()]
            kinds += [(n, CATEGORICAL) for n in categorical or ()]
            fields = TabularFields(tuple(kinds), located)
            for name in fields.numeric:  # a non-number in a declared numeric column
                self._numeric_votes(splits, name, located[name], context, declared=True)
            return fields
        kinds = []
        for name, where in located.items():
            numbers, texts, first_text = self._numeric_votes(splits, name, where, context)
            if numbers > texts or (numbers == texts == 0):
                if first_text is not None:
                    self._raise_not_a_number(name, *first_text, numbers, texts, context)
                kinds.append((name, NUMERIC))
            else:
                kinds.append((name, CATEGORICAL))
        return TabularFields(tuple(kinds), located)

    def _numeric_votes(
        self, splits: Mapping[str, Any], name: str, where: tuple[str, str | None],
        context: ColumnContext, *, declared: bool = False,
    ) -> tuple[int, int, tuple[str, int, Any] | None]:
        """How many values of a column are numbers / non-number strings, and the first one."""
        numbers = texts = 0
        first_text: tuple[str, int, Any] | None = None
        for split, dataset in splits.items():
            feature, values = _read(dataset, *where)
            dtype = getattr(feature, "dtype", None)
            if getattr(feature, "names", None) is not None:
                dtype = "string"
            if dtype == "null":
                continue
            if dtype not in _NUMERIC_DTYPES | _STRING_DTYPES:
                raise InvalidTabularError(
                    f"column {name!r} (input {context.input_name!r}) of split {split!r} holds "
                    f"{feature}, which a tabular input cannot take (numbers or strings); drop "
                    "it from the group, or declare it as its own input (e.g. an image or text)."
                )
            for row, value in enumerate(values):
                number = _to_number(value)
                if number is None:
                    continue
                if number is _NOT_A_NUMBER:
                    texts += 1
                    if first_text is None:
                        first_text = (split, row, value)
                        if declared:
                            self._raise_not_a_number(name, split, row, value, 0, 1, context,
                                                     declared=True)
                else:
                    numbers += 1
        return numbers, texts, first_text

    @staticmethod
    def _raise_not_a_number(name: str, split: str, row: int, value: Any, numbers: int,
                            texts: int, context: ColumnContext, *,
                            declared: bool = False) -> None:
        why = ("is declared numeric" if declared else
               f"is numeric ({numbers} of its {numbers + texts} values are numbers)")
        group = context.input_name or "meta"
        raise InvalidTabularError(
            f"column {name!r} (input {group!r}) {why}, but {context.row(split, row)} holds "
            f"{value!r}, not a number. Fix the value, leave the cell empty to mark it missing, "
            f"or declare the column categorical: inputs={{{group!r}: {{'numeric': [...], "
            f"'categorical': [{name!r}]}}}}."
        )

    def build_column(self, dataset: Any, name: str, fields: TabularFields, split: str,
                     context: ColumnContext | None = None) -> Any:
        """``dataset`` plus the struct column ``name`` (``None`` rows when all fields miss)."""
        context = context or ColumnContext(input_name=name)
        columns: dict[str, list[Any]] = {}
        for field, kind in fields.kinds:
            _, values = _read(dataset, *fields.source(field))
            if kind == CATEGORICAL:
                columns[field] = [_to_category(v) for v in values]
                continue
            numbers = []
            for row, value in enumerate(values):
                number = _to_number(value)
                if number is _NOT_A_NUMBER:
                    self._raise_not_a_number(field, split, row, value, 0, 1, context,
                                             declared=True)
                if number is not None and not math.isfinite(number):
                    raise InvalidTabularError(
                        f"column {field!r} (input {name!r}): {context.row(split, row)} holds "
                        f"{value!r}; give a finite number, or leave the cell empty to mark it "
                        "missing."
                    )
                numbers.append(number)
            columns[field] = numbers
        rows: list[dict[str, Any] | None] = []
        for row in range(dataset.num_rows):
            record = {field: columns[field][row] for field in fields.names}
            rows.append(None if all(v is None for v in record.values()) else record)
        return dataset.add_column(name, rows, feature=fields.feature())
