"""Declared inputs: which columns of a dataset the experts read, and as which modality.

``load_multimodal(..., inputs={...})`` takes one entry per input, keyed by the input's name
(the column name it has in the loaded dataset):

* ``"photo": "image"`` – the column ``photo`` holds images (any registered modality name);
* ``"meta": ["price", "year", "brand"]`` – a tabular group of columns, kinds inferred;
* ``"meta": {"numeric": ["price"], "categorical": ["brand"]}`` – a group with given kinds;
* ``"photo": {"modality": "image", "column": "img_path"}`` – read another source column.

Without ``inputs`` the older keywords ``image_column`` / ``text_column`` declare the inputs
``image`` and ``text`` (either may be ``None`` for a text-only or image-only dataset).

Example:
    >>> [i.name for i in parse_inputs({"photo": "image", "meta": ["price", "brand"]})]
    ['photo', 'meta']
    >>> parse_inputs({"meta": ["price", "brand"]})[0].modality
    'tabular'
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..exceptions import ConfigError, UnknownNameError
from ..modalities import get_modality, list_modalities
from .hints import keyword_hint

__all__ = ["RESERVED_NAMES", "DataInput", "legacy_inputs", "parse_inputs"]

#: Column names that belong to the dataset itself, never to an input.
RESERVED_NAMES: tuple[str, ...] = ("id", "label")
_SPEC_KEYS = ("modality", "column", "columns", "numeric", "categorical")
_GROUP_MODALITY = "tabular"


@dataclass(frozen=True)
class DataInput:
    """One declared input: its name (the loaded column), modality and source column(s).

    ``numeric`` / ``categorical`` are the given kinds of a tabular group (``None``: inferred).

    Example:
        >>> DataInput("meta", "tabular", ("price", "brand"), numeric=("price",),
        ...           categorical=("brand",)).columns
        ('price', 'brand')
    """

    name: str
    modality: str
    columns: tuple[str, ...]
    numeric: tuple[str, ...] | None = None
    categorical: tuple[str, ...] | None = None

    @property
    def is_group(self) -> bool:
        """Whether this input is a group of columns stored as one struct (tabular)."""
        return get_modality(self.modality).column_group


def legacy_inputs(image_column: str | None, text_column: str | None) -> tuple[DataInput, ...]:
    """The inputs ``image`` / ``text`` that ``image_column=`` / ``text_column=`` declare.

    Example:
        >>> [(i.name, i.columns) for i in legacy_inputs("path", None)]
        [('image', ('path',))]
    """
    declared = []
    for role, column in (("image", image_column), ("text", text_column)):
        if column is None:
            continue
        if not isinstance(column, str) or not column:
            raise ConfigError(
                f"{role}_column must be a column name or None (no {role} input), got "
                f"{column!r}; e.g. {keyword_hint(f'{role}_column', role)}."
            )
        declared.append(DataInput(role, role, (column,)))
    if not declared:
        raise ConfigError(
            "image_column=None and text_column=None leave the dataset without inputs; keep one "
            "of them, or declare inputs={'title': 'text', ...}."
        )
    return tuple(declared)


def parse_inputs(inputs: Any) -> tuple[DataInput, ...]:
    """Check ``inputs`` (a mapping, or a list of ``(name, spec)`` pairs) and parse it.

    Raises :class:`~ensemble.exceptions.ConfigError` for a bad shape, a reserved or repeated
    name, and :class:`~ensemble.exceptions.UnknownNameError` (with close matches) for an
    unknown modality.
    """
    if isinstance(inputs, Mapping):
        pairs = list(inputs.items())
    elif isinstance(inputs, Sequence) and not isinstance(inputs, str) and all(
            isinstance(p, Sequence) and not isinstance(p, str) and len(p) == 2 for p in inputs):
        pairs = [tuple(p) for p in inputs]
    else:
        raise ConfigError(
            f"inputs must map input names to modalities, got {inputs!r}; e.g. "
            "inputs={'photo': 'image', 'title': 'text', 'meta': ['price', 'brand']}."
        )
    if not pairs:
        raise ConfigError("inputs is empty; declare at least one, e.g. inputs={'title': 'text'}.")
    seen: set[str] = set()
    parsed = []
    for name, spec in pairs:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"an input name must be a non-empty string, got {name!r}.")
        if name in RESERVED_NAMES:
            raise ConfigError(
                f"input name {name!r} is reserved for the dataset's {name} column; name the "
                f"input after its content (e.g. 'title'), and use {keyword_hint(f'{name}_column')}"
                f" to say which source column holds the {name}."
            )
        if name in seen:
            raise ConfigError(
                f"input {name!r} is declared twice; give each input one entry (a column read "
                "by several experts is declared once)."
            )
        seen.add(name)
        parsed.append(_parse_one(name, spec))
    return tuple(parsed)


def _modality(name: str, modality: Any) -> str:
    if not isinstance(modality, str):
        raise ConfigError(
            f"input {name!r}: the modality must be a name such as 'image', got {modality!r}; "
            f"registered: {list_modalities()!r}."
        )
    try:
        get_modality(modality)
    except UnknownNameError as err:
        raise UnknownNameError(f"input {name!r}: {err}") from None
    return modality


def _columns(name: str, key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ConfigError(
            f"input {name!r}: {key} must be a list of column names, got {value!r}; e.g. "
            f"{{{name!r}: ['price', 'year']}}."
        )
    columns = tuple(value)
    bad = [c for c in columns if not isinstance(c, str) or not c]
    if bad:
        raise ConfigError(f"input {name!r}: column names must be non-empty strings, got {bad!r}.")
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise ConfigError(f"input {name!r} lists the column(s) {repeated!r} more than once.")
    return columns


def _parse_one(name: str, spec: Any) -> DataInput:
    if isinstance(spec, str):
        return DataInput(name, _modality(name, spec), (name,))
    if isinstance(spec, Sequence):
        columns = _columns(name, "a tabular group", spec)
        if not columns:
            raise ConfigError(f"input {name!r} lists no columns; name at least one.")
        return DataInput(name, _GROUP_MODALITY, columns)
    if not isinstance(spec, Mapping):
        raise ConfigError(
            f"input {name!r}: expected a modality name, a list of columns or a mapping, got "
            f"{spec!r}; e.g. 'image', ['price', 'year'] or {{'numeric': ['price']}}."
        )
    unknown = [k for k in spec if k not in _SPEC_KEYS]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), _SPEC_KEYS, n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"input {name!r} has unknown key {unknown[0]!r}.{hint} Accepted: {list(_SPEC_KEYS)}."
        )
    modality = spec.get("modality")
    kinds = {k: _columns(name, k, spec[k]) for k in ("numeric", "categorical") if k in spec}
    if kinds or "columns" in spec:
        if modality not in (None, _GROUP_MODALITY) or "column" in spec:
            raise ConfigError(
                f"input {name!r}: 'numeric' / 'categorical' / 'columns' describe a tabular "
                f"group; drop 'modality: {modality}' / 'column', or declare a single column "
                f"as {{'modality': ..., 'column': ...}}."
            )
        if kinds and "columns" in spec:
            raise ConfigError(
                f"input {name!r}: give either 'columns' (kinds inferred) or 'numeric' / "
                "'categorical', not both."
            )
        if kinds:
            numeric, categorical = kinds.get("numeric", ()), kinds.get("categorical", ())
            both = sorted(set(numeric) & set(categorical))
            if both:
                raise ConfigError(
                    f"input {name!r}: column(s) {both!r} are listed as numeric and categorical;"
                    " list each under one kind."
                )
            if not numeric + categorical:
                raise ConfigError(f"input {name!r} lists no columns; name at least one.")
            return DataInput(name, _GROUP_MODALITY, numeric + categorical,
                             numeric=numeric, categorical=categorical)
        columns = _columns(name, "columns", spec["columns"])
        if not columns:
            raise ConfigError(f"input {name!r} lists no columns; name at least one.")
        return DataInput(name, _GROUP_MODALITY, columns)
    if modality is None:
        raise ConfigError(
            f"input {name!r} needs a modality, e.g. {{'modality': 'image', 'column': 'path'}}; "
            f"registered: {list_modalities()!r}."
        )
    column = spec.get("column", name)
    if not isinstance(column, str) or not column:
        raise ConfigError(f"input {name!r}: 'column' must be a column name, got {column!r}.")
    return DataInput(name, _modality(name, modality), (column,))
