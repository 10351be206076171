"""Example ids: given in a column, or a stable hash of every declared input.

A content id is the first 16 hex digits of a sha256 over every declared input in declared
order (name, presence, and the modality's :meth:`~ensemble.modalities.Modality.digest`
bytes). It does not depend on the row order, the split or the label, and a path-based
image and the same image embedded as bytes hash alike. A dataset whose inputs are exactly
``image`` and ``text`` keeps the digest of earlier versions (``sha256(text, image bytes)``), so
its ids do not change. Repeats of identical content get ``~1``, ``~2``, ... suffixes.

Example:
    >>> from datasets import Dataset
    >>> from ensemble.modalities import get_modality
    >>> ds = Dataset.from_dict({"title": ["a", "b"]})
    >>> ids = content_ids({"train": ds}, [("title", get_modality("text"))])
    >>> len(ids["train"][0]), ids["train"][0] != ids["train"][1]
    (16, True)
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..exceptions import DataError
from ..modalities import Modality
from .hints import keyword_hint

__all__ = ["check_unique_ids", "content_ids", "given_ids", "row_namer"]

_LEGACY_PAIR = {("image", "image"), ("text", "text")}


def row_namer(split: str, ids: Sequence[str] | None = None) -> Callable[[int], str]:
    """``row -> "example 'x' (split 's', row r)"`` (or ``"row r of split 's'"`` without ids)."""

    def where(row: int) -> str:
        if ids is not None:
            return f"example {ids[row]!r} (split {split!r}, row {row})"
        return f"row {row} of split {split!r}"

    return where


def given_ids(dset: Any, split: str, column: str, id_column: str) -> list[str]:
    """The ids in ``column`` as strings (``3.0`` -> ``"3"``); empty ids are refused."""
    values = dset.with_format("arrow")[column].to_pylist()
    out: list[str] = []
    for row, value in enumerate(values):
        if value is None or (isinstance(value, str) and not value.strip()):
            raise DataError(
                f"row {row} of split {split!r} has an empty id in column {id_column!r}; fill "
                f"it in, or pass {keyword_hint('id_column', None)} to derive ids from the "
                "content."
            )
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        out.append(str(value))
    return out


def _legacy_digest(values: Mapping[str, Any], image: Modality) -> str:
    """The id digest of versions that knew one image and one text: sha256(text, image)."""
    text, stored = values.get("text"), values.get("image")
    digest = hashlib.sha256()
    digest.update(b"text\x00" if text is not None else b"no-text\x00")
    digest.update((text or "").encode("utf-8"))
    if stored is None:
        digest.update(b"\x00no-image")
    else:
        digest.update(b"\x00image\x00")
        digest.update(image.digest(stored))
    return digest.hexdigest()[:16]


def _digest(values: Mapping[str, Any], inputs: Sequence[tuple[str, Modality]]) -> str:
    digest = hashlib.sha256(b"ensemble-content-id-v2\x00")
    for name, modality in inputs:
        digest.update(name.encode("utf-8") + b"\x00")
        value = values[name]
        if modality.is_missing(value):
            digest.update(b"\x00")
            continue
        data = modality.digest(value)
        digest.update(b"\x01" + len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()[:16]


def content_ids(splits: Mapping[str, Any],
                inputs: Sequence[tuple[str, Modality]]) -> dict[str, list[str]]:
    """A content id per row of every split (``inputs``: ``(column, modality)`` in order).

    Identical content gets ``~1``, ``~2``, ... suffixes in split order, with a warning.
    """
    columns = [name for name, _ in inputs]
    legacy = {(name, modality.name) for name, modality in inputs} == _LEGACY_PAIR
    image = next((m for name, m in inputs if name == "image"), None)
    seen: dict[str, int] = {}
    repeats: list[str] = []
    out: dict[str, list[str]] = {}
    for split, dset in splits.items():
        view = dset.select_columns(columns).with_format("arrow")
        ids: list[str] = []
        for batch in view.iter(batch_size=512):
            data = {name: batch.column(name).to_pylist() for name in columns}
            for row in range(batch.num_rows):
                values = {name: data[name][row] for name in columns}
                digest = (_legacy_digest(values, image) if legacy and image is not None
                          else _digest(values, inputs))
                count = seen.get(digest, 0)
                seen[digest] = count + 1
                if count:
                    repeats.append(f"{digest}~{count}")
                ids.append(f"{digest}~{count}" if count else digest)
        out[split] = ids
    if repeats:
        warnings.warn(
            f"{len(repeats)} example(s) repeat every input ({', '.join(columns)}) of an earlier "
            f"example (ids such as {repeats[0]!r}); duplicates across splits leak test data "
            "into training.",
            stacklevel=3,
        )
    return out


def check_unique_ids(ids: Mapping[str, list[str]], id_column: str | None) -> None:
    """Raise :class:`DataError` when an id appears twice in or across splits."""
    first_seen: dict[str, tuple[str, int]] = {}
    for split, values in ids.items():
        for row, value in enumerate(values):
            if value in first_seen:
                other_split, other_row = first_seen[value]
                raise DataError(
                    f"duplicate example id {value!r} (column {id_column!r}): split "
                    f"{other_split!r} row {other_row} and split {split!r} row {row}; ids must "
                    f"be unique across all splits. Fix the id column, or pass "
                    f"{keyword_hint('id_column', None)} to derive ids from the content."
                )
            first_seen[value] = (split, row)
