"""The text modality: raw values to non-empty strings, text columns checked at load time.

Example:
    >>> to_text(b"caf\\xc3\\xa9", ident="ex-1")
    'café'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..exceptions import InvalidTextError
from .base import ColumnContext, Modality, register_modality
from .image import IMAGE_SUFFIXES

__all__ = ["TextModality", "to_text"]

_STRING_DTYPES = ("string", "large_string")


def to_text(value: Any, ident: str) -> str:
    """Return ``value`` as a non-empty string; bytes are decoded as UTF-8.

    Example:
        >>> to_text("  a caption ", ident="ex-1")
        '  a caption '
    """
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError as err:
            raise InvalidTextError(
                f"text of example {ident!r} is not valid UTF-8 ({err}); decode it first."
            ) from err
    if not isinstance(value, str):
        raise InvalidTextError(
            f"text of example {ident!r} is a {type(value).__name__}, not a string; pass str, or "
            "None for a missing text."
        )
    if not value.strip():
        raise InvalidTextError(
            f"text of example {ident!r} is empty; give None (on the command line: '-') to mark "
            "the text as missing."
        )
    return value


def _looks_like_image_path(value: str) -> bool:
    text = value.strip()
    return " " not in text and Path(text).suffix.lower() in IMAGE_SUFFIXES


@register_modality("text")
class TextModality(Modality):
    """Texts: a string column; ``None`` marks a missing text, blank strings are refused.

    Example:
        >>> from datasets import Value
        >>> TextModality().matches(Value("string")), TextModality().matches(Value("int64"))
        (True, False)
    """

    blank_is_missing = True

    def matches(self, feature: Any) -> bool:
        return getattr(feature, "dtype", None) in _STRING_DTYPES

    def coerce(self, value: Any, ident: str) -> str:
        return to_text(value, ident)

    def digest(self, value: Any) -> bytes:
        return str(value).encode("utf-8")

    def prepare_column(self, dataset: Any, column: str, split: str,
                       context: ColumnContext | None = None) -> Any:
        """A column with no value at all (e.g. an empty csv column) becomes all-None text."""
        from datasets import Value

        values = dataset.with_format("arrow")[column]
        if self.matches(dataset.features[column]) or values.null_count != len(values):
            return dataset
        return dataset.cast_column(column, Value("string"))

    def check_column(self, dataset: Any, column: str, split: str,
                     context: ColumnContext | None = None) -> None:
        """Strings only; no blank text; not a column of image file names."""
        import pyarrow.compute as pc

        context = context or ColumnContext(source=column)
        feature = dataset.features.get(column)
        if not self.matches(feature):
            source = context.source or column
            raise InvalidTextError(
                f"{context.describe(split)} holds {feature} values, not text. Declare it with "
                f"its own modality (numbers: a tabular input such as inputs={{'meta': "
                f"[{source!r}]}}), point the text input at the column of texts"
                f"{', e.g. ' + context.fix if context.fix else ''}, or cast it: "
                f"ds.cast_column({source!r}, Value('string'))."
            )
        values = dataset.with_format("arrow")[column]
        if len(values) == values.null_count:
            return
        blank = pc.equal(pc.utf8_trim_whitespace(values), "")
        if pc.any(blank).as_py():
            row = int(pc.index(blank, True).as_py())
            raise InvalidTextError(
                f"{context.row(split, row)} has an empty text in {context.describe(split)}; "
                "fill it in, or set it to None to mark the text as missing."
            )
        present = [v for v in values.to_pylist() if v is not None]
        if all(map(_looks_like_image_path, present)):
            raise InvalidTextError(
                f"{context.describe(split)} is declared as a text input but holds image file "
                f"names such as {present[0]!r}. Declare it as an image input (e.g. "
                f"inputs={{{(context.source or column)!r}: 'image'}})"
                f"{', or ' + context.fix if context.fix else ''}."
            )
