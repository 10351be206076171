"""``image_path_template``: build each row's image path from its split and other columns.

Example:
    >>> template_fields("images/{split}/{label}/{file}")
    ['split', 'label', 'file']
"""

from __future__ import annotations

import string
from typing import Any

from ..exceptions import ConfigError, DataError
from ..modalities import replace_column

__all__ = ["template_fields", "template_image_paths"]


def template_fields(template: Any) -> list[str]:
    """The placeholder names of ``image_path_template`` (``split`` or column names)."""
    if not isinstance(template, str) or not template.strip():
        raise ConfigError(
            f"image_path_template must be a non-empty string, got {template!r}; e.g. "
            "'images/{split}/{label}/{file}'."
        )
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as err:
        raise ConfigError(
            f"image_path_template {template!r} is not a valid format string ({err}); write "
            "placeholders as {column} and literal braces as {{ }}."
        ) from err
    fields: list[str] = []
    for _, name, _, _ in parsed:
        if name is None:
            continue
        if not name or name.isdigit() or any(c in name for c in ".[]"):
            raise ConfigError(
                f"image_path_template {template!r}: placeholder {{{name}}} must name a column "
                "or {split}, e.g. 'images/{split}/{label}/{file}'."
            )
        fields.append(name)
    if not fields:
        raise ConfigError(
            f"image_path_template {template!r} has no placeholder, so every row would get "
            "the same image; use image_root= for a fixed folder instead."
        )
    return fields


def template_image_paths(
    dset: Any, split: str, template: str, fields: list[str], image_column: str
) -> Any:
    """``dset`` with ``image_column`` replaced by ``template`` formatted with each row.

    A ``None`` in ``image_column`` stays ``None`` (a missing image).
    """
    from datasets import ClassLabel, Value

    if not isinstance(dset.features[image_column], Value):
        raise ConfigError(
            f"image_path_template needs file names in column {image_column!r}, but split "
            f"{split!r} holds {dset.features[image_column]}; drop image_path_template."
        )
    columns = list(dict.fromkeys([image_column, *(f for f in fields if f != "split")]))
    missing = [c for c in columns if c not in dset.column_names]
    if missing:
        raise DataError(
            f"image_path_template {template!r} uses column {missing[0]!r}, which split "
            f"{split!r} does not have; available columns: {dset.column_names} (and {{split}})."
        )
    values = {}
    for column in columns:
        raw = dset.with_format("arrow")[column].to_pylist()
        feature = dset.features[column]
        if isinstance(feature, ClassLabel):
            raw = [None if v is None or v < 0 else feature.int2str(v) for v in raw]
        values[column] = raw
    paths: list[str | None] = []
    for row in range(dset.num_rows):
        if values[image_column][row] is None:
            paths.append(None)
            continue
        record = {column: values[column][row] for column in columns}
        empty = [c for c in columns if record[c] is None]
        if empty:
            raise DataError(
                f"row {row} of split {split!r} has no value in column {empty[0]!r}, which "
                f"image_path_template {template!r} needs; fill it in, or set the image to None "
                "(missing)."
            )
        try:
            paths.append(template.format_map({**record, "split": split}))
        except (ValueError, TypeError) as err:
            raise ConfigError(
                f"image_path_template {template!r} does not fit row {row} of split {split!r} "
                f"({err}); check the format specs against the column types."
            ) from err
    return replace_column(dset, image_column, paths, Value("string"))
