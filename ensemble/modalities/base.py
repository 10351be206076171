"""The modality contract and its registry: what kind of value an input column holds.

A :class:`Modality` knows one kind of input (image, text, tabular, ...): which ``datasets``
features hold it (:meth:`~Modality.matches`), how to turn a raw value into the canonical
in-memory value (:meth:`~Modality.coerce`), what counts as missing
(:meth:`~Modality.is_missing`), which bytes identify a value for content ids
(:meth:`~Modality.digest`), and how a dataset column of it is prepared and checked when the
data is loaded (:meth:`~Modality.prepare_column`, :meth:`~Modality.check_column`). A new
modality is one file with ``@register_modality("name")`` on a subclass; the data layer then
accepts ``inputs={"column": "name"}`` without further changes.

Example:
    >>> from ensemble.modalities import get_modality, list_modalities
    >>> "text" in list_modalities()
    True
    >>> get_modality("text").coerce("a red circle", ident="ex-1")
    'a red circle'
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from ..exceptions import ModalityError
from ..registry import Registry

__all__ = [
    "MODALITIES",
    "ColumnContext",
    "Modality",
    "encoded_file_digest",
    "get_modality",
    "is_missing_scalar",
    "list_modalities",
    "modality_of",
    "register_modality",
    "replace_column",
    "with_resolved_paths",
]

_M = TypeVar("_M", bound="type[Modality]")

#: Every modality class, by name.
MODALITIES: Registry[type[Modality]] = Registry("modality")
_INSTANCES: dict[str, Modality] = {}


def is_missing_scalar(value: Any) -> bool:
    """``None`` or a float NaN: how a missing cell arrives from csv, pandas or Arrow."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def replace_column(dataset: Any, column: str, values: Any, feature: Any) -> Any:
    """``dataset`` with ``column`` replaced by ``values`` (same place among the columns).

    Example:
        >>> from datasets import Dataset, Value
        >>> ds = Dataset.from_dict({"a": [1, 2]})
        >>> replace_column(ds, "a", ["x", "y"], Value("string"))["a"][:]
        ['x', 'y']
    """
    order = list(dataset.column_names)
    spare = f"__ensemble_new_{column}__"
    out = dataset.add_column(spare, values, feature=feature).remove_columns([column])
    return out.rename_column(spare, column).select_columns(order)


def with_resolved_paths(dataset: Any, column: str, feature: Any,
                        check: Callable[[str, int, list[Any]], str]) -> Any | None:
    """``dataset`` with the paths of its ``{"bytes", "path"}`` column ``column`` replaced by
    ``check(path, row, paths)`` (an absolute, existing path, or a typed error) where a row
    has a path and no inline bytes, stored as ``feature``; ``None`` when no path changes (or
    the column is empty)."""
    table = dataset.with_format("arrow")[column].combine_chunks()
    if len(table) == 0 or table.null_count == len(table):
        return None
    paths = table.field("path").to_pylist()
    inline = table.field("bytes").is_valid().to_pylist()
    valid = table.is_valid().to_pylist()
    resolved = [path if not ok or has_bytes or path is None else check(path, row, paths)
                for row, (ok, path, has_bytes) in enumerate(zip(valid, paths, inline,
                                                                strict=True))]
    if resolved == paths:
        return None
    storage = [None if item is None else {"bytes": item["bytes"], "path": path}
               for item, path in zip(table.to_pylist(), resolved, strict=True)]
    return replace_column(dataset, column, storage, feature)


@dataclass(frozen=True)
class ColumnContext:
    """What a load-time check needs besides the column itself.

    ``source`` is the user's column name (the loaded column may carry the input's name),
    ``base_dir`` the folder relative file paths are resolved against, ``row_name`` turns a
    row number into words (``"example 'a1' (split 'train', row 3)"``) and ``fix`` says how to
    point the input at another column (e.g. ``"pass image_column=... (CLI: --image-column)"``).
    ``decode=False`` skips decoding every value to prove it readable (images).

    Example:
        >>> ColumnContext(source="caption", input_name="text").describe("train")
        "column 'caption' (input 'text') of split 'train'"
    """

    source: str = ""
    input_name: str = ""
    base_dir: Path | None = None
    row_name: Callable[[int], str] | None = None
    fix: str = ""
    decode: bool = True

    def describe(self, split: str) -> str:
        """``column 'x' (input 'y') of split 's'``."""
        column = self.source or self.input_name
        named = f" (input {self.input_name!r})" if self.input_name not in ("", column) else ""
        return f"column {column!r}{named} of split {split!r}"

    def row(self, split: str, row: int) -> str:
        """Words for one row: the caller's ``row_name`` or ``row N of split 's'``."""
        return self.row_name(row) if self.row_name is not None else f"row {row} of split {split!r}"

    def or_fix(self) -> str:
        """``", or <fix>"`` to end an error message with, or nothing without a ``fix``."""
        return f", or {self.fix}" if self.fix else ""

    def verify_values(self, dataset: Any, column: str, split: str,
                      verify: Callable[[Any, str], None], *, batch_size: int = 64) -> None:
        """Call ``verify(stored_value, row_words)`` on every present value of ``column``
        (read as stored, undecoded), unless ``decode`` is off."""
        if not self.decode:
            return
        view = dataset.select_columns([column]).with_format("arrow")
        row = 0
        for batch in view.iter(batch_size=batch_size):
            for stored in batch.column(column).to_pylist():
                if stored is not None:
                    verify(stored, self.row(split, row))
                row += 1


def encoded_file_digest(value: Any) -> bytes:
    """What identifies an encoded file value (``{"bytes", "path"}`` mapping, bytes or a
    path): its bytes, else the local file's bytes, else the path or URL itself."""
    if isinstance(value, Mapping):
        data, path = value.get("bytes"), value.get("path")
    elif isinstance(value, (bytes, bytearray)):
        data, path = bytes(value), None
    else:
        data, path = None, os.fspath(value)
    if data is not None:
        return bytes(data)
    if path is not None and "://" not in path and os.path.isfile(path):
        return Path(path).read_bytes()
    return str(path).encode("utf-8")


class Modality(ABC):
    """One kind of input value; subclasses are stateless and registered by name.

    Example:
        >>> from ensemble.modalities import get_modality
        >>> get_modality("text").is_missing(None)
        True
    """

    #: The registered name (set by :func:`register_modality`).
    registry_name: ClassVar[str] = ""
    #: True when one input of this modality is a group of source columns (tabular).
    column_group: ClassVar[bool] = False
    #: True when a string value may be a file path (resolved against a data file's folder).
    file_paths: ClassVar[bool] = False
    #: True when a blank string in a table cell means the input is missing.
    blank_is_missing: ClassVar[bool] = False

    @property
    def name(self) -> str:
        """The registered name, e.g. ``"image"``."""
        return type(self).registry_name

    @abstractmethod
    def matches(self, feature: Any) -> bool:
        """Whether a ``datasets`` feature holds values of this modality once loaded."""

    def accepts(self, feature: Any) -> bool:
        """Whether an expert of this modality can read a column of ``feature`` (what
        :meth:`matches` says, plus raw forms :meth:`coerce` reads, e.g. image paths)."""
        return self.matches(feature)

    @abstractmethod
    def coerce(self, value: Any, ident: str) -> Any:
        """The canonical in-memory value; a typed error names ``ident`` when it is unusable."""

    def is_missing(self, value: Any) -> bool:
        """Whether ``value`` marks the input as absent for this example (default: None/NaN)."""
        return is_missing_scalar(value)

    @abstractmethod
    def digest(self, value: Any) -> bytes:
        """Bytes that identify a present stored value, hashed into content ids."""

    def prepare_column(self, dataset: Any, column: str, split: str,
                       context: ColumnContext | None = None) -> Any:
        """``dataset`` with ``column`` in this modality's stored form (default: unchanged)."""
        return dataset

    @abstractmethod
    def check_column(self, dataset: Any, column: str, split: str,
                     context: ColumnContext | None = None) -> None:
        """Validate ``column`` of one split at load time; typed errors name the row."""

    # -- column groups (``column_group = True``, e.g. tabular) ---------------------------

    def group_fields(self, splits: Mapping[str, Any], sources: Mapping[str, str], *,
                     numeric: Sequence[str] | None = None,
                     categorical: Sequence[str] | None = None,
                     context: ColumnContext | None = None) -> Any:
        """The fields of one group input over all splits (group modalities only)."""
        raise ModalityError(f"the {self.name!r} modality reads one column, not a group.")

    def build_column(self, dataset: Any, name: str, fields: Any, split: str,
                     context: ColumnContext | None = None) -> Any:
        """``dataset`` plus the group column ``name`` (group modalities only)."""
        raise ModalityError(f"the {self.name!r} modality reads one column, not a group.")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def register_modality(name: str) -> Callable[[_M], _M]:
    """Class decorator: make a :class:`Modality` subclass available under ``name``.

    Example:
        >>> @register_modality("doc-example")
        ... class Upper(Modality):
        ...     def matches(self, feature): return False
        ...     def coerce(self, value, ident): return str(value).upper()
        ...     def digest(self, value): return str(value).encode()
        ...     def check_column(self, dataset, column, split, context=None): pass
        >>> get_modality("doc-example").coerce("a", ident="x")
        'A'
        >>> MODALITIES.unregister("doc-example")
    """
    register = MODALITIES.register(name)

    def decorate(cls: _M) -> _M:
        _INSTANCES.pop(name, None)
        return register(cls)

    return decorate


def get_modality(name: str) -> Modality:
    """The modality registered under ``name``; unknown names suggest close matches.

    Raises :class:`~ensemble.exceptions.UnknownNameError`.

    Example:
        >>> get_modality("image").name
        'image'
    """
    cls = MODALITIES.get(name)
    instance = _INSTANCES.get(name)
    if instance is None or type(instance) is not cls:
        instance = _INSTANCES[name] = cls()
    return instance


def list_modalities() -> list[str]:
    """Registered modality names, sorted.

    Example:
        >>> list_modalities()
        ['audio', 'image', 'tabular', 'text']
    """
    return MODALITIES.names()


def modality_of(feature: Any) -> str:
    """The name of the modality whose :meth:`~Modality.matches` accepts ``feature``.

    Raises :class:`~ensemble.exceptions.ModalityError` when none (or several) do.

    Example:
        >>> from datasets import Value
        >>> modality_of(Value("string"))
        'text'
    """
    found = [name for name in list_modalities() if get_modality(name).matches(feature)]
    if len(found) != 1:
        what = "no registered modality" if not found else f"several modalities ({found})"
        raise ModalityError(
            f"{what} holds values of the feature {feature}; declare the column's modality "
            f"explicitly, one of {list_modalities()!r}."
        )
    return found[0]
