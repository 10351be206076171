"""Multimodal datasets: loading, the label space, stable example ids and dataset builders.

Every dataset this module returns is a :class:`datasets.DatasetDict` whose splits share the
columns

* ``id`` – a string, unique across all splits and stable across runs;
* ``image`` – a :class:`datasets.Image` feature (decodes to ``PIL.Image.Image``; ``None`` marks
  a missing image);
* ``text`` – a string (``None`` marks a missing text);
* ``label`` – a :class:`datasets.ClassLabel`; its ``names`` are the ordered label space,

plus whatever extra columns the source had. Entry points:

* :func:`load_multimodal` – bring your own data (Hub name, local csv / json / parquet files,
  an imagefolder with ``metadata.jsonl``, a saved dataset directory or an in-memory
  ``DatasetDict``) with a column mapping;
* :func:`load_emoji` – the real emoji image+text dataset built from the npm package
  ``emoji-datasource-google@16.0.0``;
* :func:`make_synthetic` – a tiny generated dataset in which fusion is required;
* :func:`class_names` – the label space of a dataset.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import string
import subprocess
import tarfile
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._io import atomic_directory, read_json, sha256_file, write_json
from .exceptions import (
    ArtifactError,
    ClassMismatchError,
    ConfigError,
    DataError,
    DependencyError,
    InvalidImageError,
    InvalidTextError,
    LabelError,
)

__all__ = [
    "EMOJI_PACKAGE",
    "EMOJI_VERSION",
    "STANDARD_COLUMNS",
    "SYNTHETIC_COLOURS",
    "SYNTHETIC_FILLER",
    "SYNTHETIC_WORDS",
    "class_names",
    "load_emoji",
    "load_multimodal",
    "make_synthetic",
]

logger = logging.getLogger(__name__)

#: Columns every dataset returned by this module starts with, in this order.
STANDARD_COLUMNS: tuple[str, ...] = ("id", "image", "text", "label")

EMOJI_PACKAGE = "emoji-datasource-google"
EMOJI_VERSION = "16.0.0"
_EMOJI_NATIVE_SIZE = 64
# Bump when the rows, columns or splits built by load_emoji change: invalidates old caches.
_EMOJI_BUILDER_VERSION = 1
_META_FILE = "ensemble_dataset.json"

_EXTENSION_BUILDERS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
    ".parquet": "parquet",
    ".arrow": "arrow",
}
_STRING_DTYPES = ("string", "large_string")
_INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")


# --------------------------------------------------------------------------------------
# label space
# --------------------------------------------------------------------------------------


def class_names(ds: Any, label_column: str = "label") -> list[str]:
    """Return the ordered label space (``ClassLabel.names``) of a dataset.

    ``ds`` is a ``DatasetDict`` (every split must agree) or a single ``Dataset``.

    Example:
        >>> ds = make_synthetic(n_train=8, n_validation=4, n_test=4)
        >>> class_names(ds)
        ['red-alpha', 'red-beta', 'blue-alpha', 'blue-beta']
    """
    from datasets import ClassLabel, Dataset, DatasetDict

    if isinstance(ds, Dataset):
        splits = {"dataset": ds}
    elif isinstance(ds, DatasetDict):
        splits = dict(ds)
    else:
        raise DataError(
            f"class_names() expects a datasets.DatasetDict or Dataset, got {type(ds).__name__}."
        )
    if not splits:
        raise DataError("The DatasetDict has no splits, so it has no label space.")
    names: list[str] | None = None
    first = ""
    for split, dset in splits.items():
        feature = dset.features.get(label_column)
        if not isinstance(feature, ClassLabel):
            found = "missing" if feature is None else f"a {type(feature).__name__}"
            raise DataError(
                f"Column {label_column!r} of split {split!r} is {found}, not a ClassLabel; "
                f"load the data with ensemble.load_multimodal(...) to build the label space "
                f"(available columns: {dset.column_names})."
            )
        if names is None:
            names, first = list(feature.names), split
        elif list(feature.names) != names:
            raise ClassMismatchError(
                f"Splits {first!r} and {split!r} have different label spaces: {names} vs "
                f"{list(feature.names)}; reload with load_multimodal(..., class_names=[...])."
            )
    return list(names or [])


def _check_class_names(names: Any) -> list[str]:
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise ConfigError(
            f"class_names must be a list of strings, got {names!r}; "
            "e.g. class_names=['cat', 'dog']."
        )
    names = list(names)
    if not names:
        raise ConfigError("class_names is empty; pass at least one class name.")
    for name in names:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"class_names entries must be non-empty strings, got {name!r}.")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"class_names has duplicates {duplicates}; each class appears once.")
    return names


# --------------------------------------------------------------------------------------
# load_multimodal
# --------------------------------------------------------------------------------------


def load_multimodal(
    path_or_name: Any,
    *,
    image_column: str = "image",
    text_column: str = "text",
    label_column: str = "label",
    id_column: str | None = None,
    class_names: Sequence[str] | None = None,
    data_files: str | Sequence[str] | Mapping[str, str | Sequence[str]] | None = None,
    image_root: str | os.PathLike[str] | None = None,
    column_names: Sequence[str] | None = None,
    image_path_template: str | None = None,
    validation_size: float | int | None = None,
    split_seed: int = 0,
    **load_kwargs: Any,
) -> Any:
    """Load a multimodal dataset and normalise it to ``id``, ``image``, ``text``, ``label``.

    ``path_or_name`` may be a ``DatasetDict`` (or ``Dataset``, used as split ``"train"``), a
    local csv / tsv / json / jsonl / parquet file, a local directory (an imagefolder with
    ``metadata.jsonl``/``.csv``, a folder of data files, or a ``save_to_disk`` directory), a
    ``datasets`` builder name used with ``data_files`` (``"csv"``, ``"json"``, ...), or a
    Hub dataset name. Files are read with ``datasets.load_dataset(..., **load_kwargs)``.

    * Image values may be ``Image`` features, PIL images or file paths; relative paths are
      resolved against ``image_root`` (default: the dataset directory, else the directory of
      the first data file, else the working directory). Images are not decoded here.
    * Labels may be strings (label space = sorted names, or the ``class_names`` order),
      integer ids (names = ``class_names``, or ``"0"``, ``"1"``, ...) or a ``ClassLabel``.
    * Ids come from ``id_column`` (as strings), else from a content hash: the first 16 hex
      digits of sha256(text, image bytes); exact duplicates get ``~1``, ``~2``, ... suffixes
      in split order. Ids must be unique across all splits.
    * ``None`` marks a missing image or text (a missing modality); empty text is an error.

    Options for common layouts (each independent of the others):

    * ``column_names`` – the column names of csv / tsv files that have no header row (the
      first row is data); every file must have exactly that many columns.
    * ``image_path_template`` – builds each image path from the row with ``str.format``:
      ``{split}`` is the split name and ``{<column>}`` the value of a source column
      (a ``ClassLabel`` gives its name), e.g. ``"images/{split}/{label}/{file}"``. The
      result replaces the image column and is resolved like any relative path; a
      ``None`` image stays missing.
    * ``validation_size`` – when the data has ``train`` but no ``validation`` split, carve
      one out of ``train``: a fraction in (0, 1) or a number of rows, stratified by label,
      seeded by ``split_seed``; both keep their original row order. Ids are computed
      before the split, so they do not depend on it.

    Other columns are kept after the four standard ones.

    Example:
        >>> ds = load_multimodal("data/pets.csv", image_column="path", text_column="caption",
        ...                      label_column="species")  # doctest: +SKIP
        >>> ds["train"].column_names[:4]  # doctest: +SKIP
        ['id', 'image', 'text', 'label']
    """
    from datasets import Dataset, DatasetDict

    mapping = {"image": image_column, "text": text_column, "label": label_column}
    if id_column is not None:
        mapping["id"] = id_column
    for target, source in mapping.items():
        if not isinstance(source, str) or not source:
            raise ConfigError(f"{target}_column must be a non-empty string, got {source!r}.")
    sources = list(mapping.values())
    if len(set(sources)) != len(sources):
        raise ConfigError(
            f"image_column, text_column, label_column and id_column must be different columns, "
            f"got {mapping}."
        )
    names = _check_class_names(class_names) if class_names is not None else None
    fields = _template_fields(image_path_template) if image_path_template is not None else []
    _check_validation_size(validation_size, split_seed)

    in_memory = isinstance(path_or_name, (DatasetDict, Dataset))
    if in_memory and (data_files is not None or load_kwargs or column_names is not None):
        given = sorted(load_kwargs) or ["data_files" if data_files is not None else "column_names"]
        raise ConfigError(
            "data_files, column_names and load_dataset options only apply when loading from a "
            f"path or name, not to an in-memory dataset (got {given})."
        )
    if column_names is not None:
        load_kwargs = _headerless_csv(column_names, path_or_name, data_files, load_kwargs)
    if isinstance(path_or_name, DatasetDict):
        dsd, base_dir = path_or_name, None
    elif isinstance(path_or_name, Dataset):
        dsd, base_dir = DatasetDict({"train": path_or_name}), None
    else:
        dsd, base_dir = _load_source(path_or_name, data_files, load_kwargs)
    if image_root is not None:
        base_dir = Path(image_root).expanduser().resolve()
    if not isinstance(dsd, DatasetDict):
        raise ConfigError(
            f"Loading {path_or_name!r} gave a {type(dsd).__name__}, not a DatasetDict; "
            f"streaming datasets are not supported (drop streaming=True)."
        )
    if len(dsd) == 0:
        raise DataError(f"{path_or_name!r} has no splits; it must hold at least one split.")
    base_dir = base_dir or Path.cwd()
    if column_names is not None:
        _check_column_count(dsd, list(column_names))

    # 1. the columns exist and nothing collides with the standard names
    for split, dset in dsd.items():
        for target, source in mapping.items():
            if source not in dset.column_names:
                raise DataError(
                    f"Column {source!r} ({target}_column) not found in split {split!r}; "
                    f"available columns: {dset.column_names}. Pass {target}_column=<one of them>."
                )
        for target in STANDARD_COLUMNS:
            if target in dset.column_names and target not in mapping and target not in sources:
                raise DataError(
                    f"Split {split!r} already has a column {target!r} that is not mapped; pass "
                    f"{target}_column={target!r} to use it, or remove/rename it first."
                )
    if image_path_template is not None:
        dsd = {split: _template_image_paths(dset, split, image_path_template, fields,
                                            image_column)
               for split, dset in dsd.items()}
    renamed = {split: dset.rename_columns({s: t for t, s in mapping.items() if s != t})
               for split, dset in dsd.items()}

    # 2. per split: images, texts, optional given ids
    given_ids: dict[str, list[str]] = {}
    for split, dset in renamed.items():
        if id_column is not None:
            given_ids[split] = _given_ids(dset, split, id_column)
        where = _row_namer(split, given_ids.get(split))
        dset = _normalise_images(dset, split, image_column, base_dir, where)
        _check_texts(dset, split, text_column, where)
        renamed[split] = dset

    # 3. ids, unique across splits
    ids = given_ids if id_column is not None else _content_ids(renamed)
    _check_unique_ids(ids, id_column)

    # 4. labels -> ClassLabel
    label_names, label_ids = _encode_labels(renamed, ids, label_column, names)

    from datasets import ClassLabel, Value

    out = {}
    for split, dset in renamed.items():
        dset = dset.remove_columns(["label"]).add_column(
            "label", label_ids[split], feature=ClassLabel(names=label_names)
        )
        if "id" in dset.column_names:
            dset = dset.remove_columns(["id"])
        dset = dset.add_column("id", ids[split], feature=Value("string"))
        extras = [c for c in dset.column_names if c not in STANDARD_COLUMNS]
        out[split] = dset.select_columns([*STANDARD_COLUMNS, *extras])
    if validation_size is not None:
        out = _carve_validation(out, validation_size, split_seed)
    return DatasetDict(out)


def _headerless_csv(
    column_names: Any, path_or_name: Any, data_files: Any, load_kwargs: dict[str, Any]
) -> dict[str, Any]:
    """``load_kwargs`` plus the csv reader options for files without a header row."""
    if isinstance(column_names, str) or not isinstance(column_names, Sequence):
        raise ConfigError(
            f"column_names must be a list of strings, got {column_names!r}; e.g. "
            "column_names=['file', 'text', 'label']."
        )
    columns = list(column_names)
    if not columns or not all(isinstance(c, str) and c for c in columns):
        raise ConfigError(f"column_names must be non-empty strings, got {columns!r}.")
    if len(set(columns)) != len(columns):
        raise ConfigError(f"column_names has repeated names: {columns!r}.")
    clashing = sorted({"names", "column_names", "header"} & set(load_kwargs))
    if clashing:
        raise ConfigError(
            f"column_names already sets the csv reader's {clashing}; drop those options."
        )
    name = os.fspath(path_or_name) if isinstance(path_or_name, (str, os.PathLike)) else ""
    first = _first_data_file(data_files) if data_files is not None else None
    source = first if first is not None else name
    builders = {name if name in _EXTENSION_BUILDERS.values() else None,
                _EXTENSION_BUILDERS.get(Path(source).suffix.lower())} - {None}
    if builders - {"csv"}:
        raise ConfigError(
            f"column_names only applies to csv / tsv files without a header row, not to "
            f"{source!r}; map its named columns with image_column= / text_column= / "
            "label_column= instead."
        )
    # ``names`` + ``header=None``: datasets' own ``column_names`` is ignored for directories.
    return {**load_kwargs, "names": columns, "header": None}


def _check_column_count(dsd: Any, columns: list[str]) -> None:
    for split, dset in dsd.items():
        if dset.column_names != columns:
            raise DataError(
                f"Split {split!r} was read with the columns {dset.column_names} instead of "
                f"column_names={columns}; the file has more columns than names. Name every "
                f"column (one name per comma-separated field)."
            )


def _template_fields(template: Any) -> list[str]:
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


def _template_image_paths(
    dset: Any, split: str, template: str, fields: list[str], image_column: str
) -> Any:
    """Replace ``image_column`` by ``template`` formatted with each row's values."""
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
    where = _row_namer(split, None)
    paths: list[str | None] = []
    for row in range(dset.num_rows):
        if values[image_column][row] is None:
            paths.append(None)
            continue
        record = {column: values[column][row] for column in columns}
        empty = [c for c in columns if record[c] is None]
        if empty:
            raise DataError(
                f"{where(row)} has no value in column {empty[0]!r}, which image_path_template "
                f"{template!r} needs; fill it in, or set the image to None (missing)."
            )
        try:
            paths.append(template.format_map({**record, "split": split}))
        except (ValueError, TypeError) as err:
            raise ConfigError(
                f"image_path_template {template!r} does not fit {where(row)} ({err}); check "
                f"the format specs against the column types."
            ) from err
    return dset.remove_columns([image_column]).add_column(
        image_column, paths, feature=Value("string")
    )


def _check_validation_size(size: Any, seed: Any) -> None:
    if size is not None:
        fraction = isinstance(size, float) and 0.0 < size < 1.0
        count = isinstance(size, int) and not isinstance(size, bool) and size >= 1
        if not (fraction or count):
            raise ConfigError(
                f"validation_size must be a fraction in (0, 1) or a number of rows >= 1, got "
                f"{size!r}; e.g. validation_size=0.1."
            )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"split_seed must be a non-negative integer, got {seed!r}.")


def _carve_validation(splits: dict[str, Any], size: float, seed: int) -> dict[str, Any]:
    """``splits`` with a stratified ``validation`` split taken out of ``train``."""
    from sklearn.model_selection import train_test_split

    if "validation" in splits:
        raise ConfigError(
            "validation_size was given but the data already has a 'validation' split; drop "
            "validation_size (or the split)."
        )
    if "train" not in splits:
        raise DataError(
            f"validation_size carves the validation split out of 'train', but the splits are "
            f"{sorted(splits)}; name the training split 'train' (e.g. data_files={{'train': "
            "...}})."
        )
    train = splits["train"]
    labels = np.asarray(train.with_format("arrow")["label"].to_pylist())
    try:
        keep, held = train_test_split(np.arange(train.num_rows), test_size=size,
                                      stratify=labels, random_state=seed)
    except ValueError as err:
        raise DataError(
            f"cannot carve a stratified validation split (validation_size={size!r}) out of "
            f"{train.num_rows} train rows with {len(np.unique(labels))} classes: {err}. Every "
            "class needs 2+ train rows and the validation split one row per class; raise "
            "validation_size or provide a validation split."
        ) from err
    out: dict[str, Any] = {}
    for split, dset in splits.items():
        if split == "train":
            out["train"] = dset.select(np.sort(keep))
            out["validation"] = dset.select(np.sort(held))
        else:
            out[split] = dset
    return out


def _load_source(
    path_or_name: Any,
    data_files: Any,
    load_kwargs: dict[str, Any],
) -> tuple[Any, Path | None]:
    """Run ``datasets.load_dataset`` (or ``load_from_disk``); return it and the data dir."""
    from datasets import DatasetDict, load_dataset

    if not isinstance(path_or_name, (str, os.PathLike)):
        raise ConfigError(
            f"path_or_name must be a DatasetDict, a path or a dataset name, got "
            f"{type(path_or_name).__name__}."
        )
    if load_kwargs.get("streaming"):
        raise ConfigError("streaming=True is not supported; ensemble needs random access.")
    text = os.fspath(path_or_name)
    local = Path(text).expanduser()
    suffix = local.suffix.lower()
    looks_local = (
        isinstance(path_or_name, os.PathLike)
        or text.startswith(("/", "./", "../", "~", ".\\"))
        or suffix in _EXTENSION_BUILDERS
    )
    kwargs = dict(load_kwargs)
    base_dir: Path | None = None
    if local.is_file():
        if data_files is not None:
            raise ConfigError(
                f"Pass either a data file ({text!r}) or data_files=..., not both."
            )
        builder = _EXTENSION_BUILDERS.get(suffix)
        if builder is None:
            raise DataError(
                f"Cannot tell the format of {text!r} from its extension; use one of "
                f"{sorted(_EXTENSION_BUILDERS)} or call load_multimodal('csv'|'json'|'parquet', "
                f"data_files=...)."
            )
        if suffix == ".tsv":
            kwargs.setdefault("delimiter", "\t")
        base_dir = local.resolve().parent
        call: tuple[str, dict[str, Any]] = (builder, {"data_files": str(local.resolve())})
    elif local.is_dir():
        base_dir = local.resolve()
        if (local / "dataset_dict.json").is_file():
            if data_files is not None or kwargs:
                raise ConfigError(
                    f"{text!r} is a save_to_disk directory; data_files and load options do "
                    f"not apply to it."
                )
            return DatasetDict.load_from_disk(str(local)), base_dir
        call = (str(local), {"data_files": data_files} if data_files is not None else {})
        if data_files is not None:
            first = _first_data_file(data_files)
            if first is not None:
                base_dir = (local / first).resolve().parent
    elif looks_local:
        raise DataError(
            f"{text!r} does not exist (working directory: {Path.cwd()}); check the path."
        )
    else:
        call = (text, {"data_files": data_files} if data_files is not None else {})
        first = _first_data_file(data_files) if data_files is not None else None
        if first is not None:
            base_dir = Path(first).expanduser().resolve().parent
    try:
        result = load_dataset(call[0], **call[1], **kwargs)
    except (FileNotFoundError, ConnectionError) as err:
        raise DataError(
            f"datasets.load_dataset({text!r}) failed: {err}. Check the name or path; without "
            f"network access pass local files (csv, json, parquet, an imagefolder)."
        ) from err
    if not isinstance(result, DatasetDict) and hasattr(result, "column_names"):
        split = kwargs.get("split", "train")
        result = DatasetDict({str(split): result})
    return result, base_dir


def _first_data_file(data_files: Any) -> str | None:
    if isinstance(data_files, (str, os.PathLike)):
        return os.fspath(data_files)
    if isinstance(data_files, Mapping):
        for value in data_files.values():
            found = _first_data_file(value)
            if found is not None:
                return found
        return None
    if isinstance(data_files, Sequence):
        for value in data_files:
            found = _first_data_file(value)
            if found is not None:
                return found
    return None


def _row_namer(split: str, ids: list[str] | None) -> Any:
    def where(row: int) -> str:
        if ids is not None:
            return f"example {ids[row]!r} (split {split!r}, row {row})"
        return f"row {row} of split {split!r}"

    return where


def _given_ids(dset: Any, split: str, id_column: str) -> list[str]:
    values = dset.with_format("arrow")["id"].to_pylist()
    out: list[str] = []
    for row, value in enumerate(values):
        if value is None or (isinstance(value, str) and not value.strip()):
            raise DataError(
                f"Row {row} of split {split!r} has an empty id in column {id_column!r}; fill "
                f"it in, or pass id_column=None to derive ids from the content."
            )
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        out.append(str(value))
    return out


def _is_remote(path: str) -> bool:
    return "://" in path


def _resolve_path(path: str, base_dir: Path) -> str:
    if _is_remote(path):
        return path
    candidate = Path(path).expanduser()
    if not candidate.is_absolute():
        candidate = base_dir / candidate
    return str(candidate)


def _normalise_images(
    dset: Any, split: str, image_column: str, base_dir: Path, where: Any
) -> Any:
    """Make ``image`` an ``Image(decode=True)`` column with absolute, existing local paths."""
    from datasets import Image, Value

    feature = dset.features["image"]
    if isinstance(feature, Value) and feature.dtype in _STRING_DTYPES:
        paths = dset.with_format("arrow")["image"].to_pylist()
        storage: list[dict[str, Any] | None] = []
        for row, path in enumerate(paths):
            if path is None:
                storage.append(None)
                continue
            if not path.strip():
                raise InvalidImageError(
                    f"{where(row)} has an empty image path in column {image_column!r}; give a "
                    f"file path, or None to mark the image as missing."
                )
            storage.append({"bytes": None, "path": _check_image_file(path, base_dir, where, row)})
        return dset.remove_columns(["image"]).add_column("image", storage, feature=Image())
    if isinstance(feature, Image):
        table = dset.with_format("arrow")["image"].combine_chunks()
        new_feature = Image(mode=feature.mode, decode=True)
        if len(table) == 0 or table.null_count == len(table):
            return dset if feature.decode else dset.cast_column("image", new_feature)
        paths = table.field("path").to_pylist()
        has_bytes = table.field("bytes").is_valid().to_pylist()
        valid = table.is_valid().to_pylist()
        changed = False
        resolved: list[str | None] = []
        for row, (ok, path, inline) in enumerate(zip(valid, paths, has_bytes, strict=True)):
            if not ok or inline or path is None:
                resolved.append(path)
                continue
            new_path = _check_image_file(path, base_dir, where, row)
            changed = changed or new_path != path
            resolved.append(new_path)
        if changed:
            raw = table.to_pylist()
            storage = [
                None if item is None else {"bytes": item["bytes"], "path": new_path}
                for item, new_path in zip(raw, resolved, strict=True)
            ]
            dset = dset.remove_columns(["image"]).add_column(
                "image", storage, feature=new_feature
            )
        elif not feature.decode:
            dset = dset.cast_column("image", new_feature)
        return dset
    try:
        return dset.cast_column("image", Image())
    except Exception as err:
        raise InvalidImageError(
            f"Column {image_column!r} of split {split!r} has type {feature} which cannot hold "
            f"images ({err}); it must contain file paths, PIL images, image bytes or a "
            f"datasets.Image feature."
        ) from err


def _check_image_file(path: str, base_dir: Path, where: Any, row: int) -> str:
    resolved = _resolve_path(path, base_dir)
    if not _is_remote(resolved) and not os.path.isfile(resolved):
        raise InvalidImageError(
            f"{where(row)}: image file {path!r} not found (looked at {resolved}); fix the path, "
            f"pass image_root= to resolve relative paths elsewhere, or use None for a missing "
            f"image."
        )
    return resolved


def _check_texts(dset: Any, split: str, text_column: str, where: Any) -> None:
    import pyarrow.compute as pc

    feature = dset.features["text"]
    dtype = getattr(feature, "dtype", None)
    if dtype == "null":
        return
    if dtype not in _STRING_DTYPES:
        raise InvalidTextError(
            f"Column {text_column!r} of split {split!r} has type {feature}, not string; pass the "
            f"column that holds the text, or cast it: ds.cast_column({text_column!r}, "
            f"Value('string'))."
        )
    column = dset.with_format("arrow")["text"]
    if len(column) == 0:
        return
    empty = pc.equal(pc.utf8_trim_whitespace(column), "")
    if pc.any(empty).as_py():
        row = int(pc.index(empty, True).as_py())
        raise InvalidTextError(
            f"{where(row)} has an empty text in column {text_column!r}; fill it in, or set it "
            f"to None to mark the text as missing."
        )


def _content_ids(splits: Mapping[str, Any]) -> dict[str, list[str]]:
    """sha256(text, image bytes)[:16] per row; repeats of identical content get ``~k``."""
    seen: dict[str, int] = {}
    repeats: list[str] = []
    out: dict[str, list[str]] = {}
    for split, dset in splits.items():
        from datasets import Image

        view = dset.select_columns(["image", "text"])
        if isinstance(view.features["image"], Image):
            view = view.cast_column("image", Image(decode=False))
        ids: list[str] = []
        for batch in view.with_format("arrow").iter(batch_size=512):
            for image, text in zip(
                batch.column("image").to_pylist(), batch.column("text").to_pylist(), strict=True
            ):
                digest = _content_digest(image, text)
                count = seen.get(digest, 0)
                seen[digest] = count + 1
                if count:
                    repeats.append(f"{digest}~{count}")
                ids.append(f"{digest}~{count}" if count else digest)
        out[split] = ids
    if repeats:
        warnings.warn(
            f"{len(repeats)} example(s) repeat the image and text of an earlier example (ids "
            f"such as {repeats[0]!r}); duplicates across splits leak test data into training.",
            stacklevel=3,
        )
    return out


def _content_digest(image: Any, text: str | None) -> str:
    digest = hashlib.sha256()
    digest.update(b"text\x00" if text is not None else b"no-text\x00")
    digest.update((text or "").encode("utf-8"))
    if image is None:
        digest.update(b"\x00no-image")
    else:
        digest.update(b"\x00image\x00")
        data = image.get("bytes") if isinstance(image, dict) else None
        path = image.get("path") if isinstance(image, dict) else None
        if data is None and path is not None and not _is_remote(path) and os.path.isfile(path):
            with open(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
        elif data is not None:
            digest.update(data)
        else:
            digest.update(str(path).encode("utf-8"))
    return digest.hexdigest()[:16]


def _check_unique_ids(ids: Mapping[str, list[str]], id_column: str | None) -> None:
    first_seen: dict[str, tuple[str, int]] = {}
    for split, values in ids.items():
        for row, value in enumerate(values):
            if value in first_seen:
                other_split, other_row = first_seen[value]
                raise DataError(
                    f"Duplicate example id {value!r} (column {id_column!r}): split "
                    f"{other_split!r} row {other_row} and split {split!r} row {row}; ids must "
                    f"be unique across all splits. Fix the id column, or pass id_column=None "
                    f"to derive ids from the content."
                )
            first_seen[value] = (split, row)


def _encode_labels(
    splits: Mapping[str, Any],
    ids: Mapping[str, list[str]],
    label_column: str,
    names: list[str] | None,
) -> tuple[list[str], dict[str, list[int]]]:
    """Map every split's labels into one ordered label space."""
    from datasets import ClassLabel, Value

    kinds: dict[str, str] = {}
    values: dict[str, list[Any]] = {}
    for split, dset in splits.items():
        feature = dset.features["label"]
        raw = dset.with_format("arrow")["label"].to_pylist()
        if isinstance(feature, ClassLabel):
            kinds[split] = "classlabel"
            values[split] = [
                v if v is None or not 0 <= v < len(feature.names) else feature.names[v]
                for v in raw
            ]
        elif isinstance(feature, Value) and feature.dtype in _STRING_DTYPES:
            kinds[split], values[split] = "string", raw
        elif isinstance(feature, Value) and feature.dtype in _INT_DTYPES:
            kinds[split], values[split] = "int", raw
        elif isinstance(feature, Value) and feature.dtype == "null":
            kinds[split], values[split] = "null", raw
        else:
            raise LabelError(
                f"Column {label_column!r} of split {split!r} has type {feature}; labels must be "
                f"class names (strings), integer class ids or a ClassLabel. Cast it, e.g. "
                f"ds.cast_column({label_column!r}, Value('string'))."
            )
    distinct = set(kinds.values()) - {"null"}
    if len(distinct) > 1:
        raise LabelError(
            f"Splits disagree on the label type: {kinds}; make the {label_column!r} column the "
            f"same type (all names or all integer ids) in every split."
        )
    kind = distinct.pop() if distinct else "null"

    if names is None:
        if kind == "classlabel":
            spaces = {
                split: list(splits[split].features["label"].names)
                for split in splits if kinds[split] == "classlabel"
            }
            first_split, first_names = next(iter(spaces.items()))
            for split, space in spaces.items():
                if space != first_names:
                    raise ClassMismatchError(
                        f"Splits {first_split!r} and {split!r} have different ClassLabel names "
                        f"{first_names} vs {space}; pass class_names=[...] to fix one order."
                    )
            names = first_names
        elif kind == "string":
            names = sorted({v for vs in values.values() for v in vs if v is not None})
        elif kind == "int":
            top = max((v for vs in values.values() for v in vs if v is not None), default=-1)
            names = [str(i) for i in range(top + 1)]
        else:
            names = []
        if not names:
            raise LabelError(
                f"Column {label_column!r} holds no labels; every example needs a class."
            )
    index = {name: i for i, name in enumerate(names)}

    encoded: dict[str, list[int]] = {}
    for split, vals in values.items():
        out: list[int] = []
        for row, value in enumerate(vals):
            if kind == "int" and value is not None:
                code = value if 0 <= value < len(names) else None
            else:
                code = index.get(value) if isinstance(value, str) else None
            if code is None:
                shown = repr(value)
                if isinstance(value, int) and kinds[split] == "classlabel":
                    shown += " (a ClassLabel id outside its names; -1 means 'no label')"
                raise LabelError(
                    f"Label {shown} of example {ids[split][row]!r} (split {split!r}, row "
                    f"{row}) is not in the label space {names}; fix or drop that example (e.g. "
                    f"ds.filter(...)), or pass class_names=[...] listing every class."
                )
            out.append(code)
        encoded[split] = out
    return list(names), encoded


# --------------------------------------------------------------------------------------
# cache
# --------------------------------------------------------------------------------------


def _cache_root(cache_dir: str | os.PathLike[str] | None) -> Path:
    """``cache_dir``, else ``$ENSEMBLE_CACHE``, else ``platformdirs.user_cache_dir('ensemble')``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("ENSEMBLE_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("ensemble"))


# --------------------------------------------------------------------------------------
# emoji dataset
# --------------------------------------------------------------------------------------


def load_emoji(
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    image_size: int = 64,
    tarball: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> Any:
    """Build (once) and load the emoji image+text dataset: 9 emoji categories.

    Source: the npm package ``emoji-datasource-google@16.0.0`` (emoji data MIT, Google Noto
    emoji images Apache-2.0), fetched with ``npm pack`` unless ``tarball`` points at an already
    downloaded ``emoji-datasource-google-16.0.0.tgz``. One row per emoji with a Google image,
    category ``Component`` dropped:

    * ``image`` – ``img/google/64/<image>`` alpha-composited on white, RGB, resized to
      ``image_size`` (LANCZOS) when it is not 64;
    * ``text`` – the lower-cased Unicode ``name`` (fallback: first short name, ``_`` -> space);
    * ``label`` – the ``category``; class names sorted alphabetically;
    * ``id`` and ``unified`` – the code point string (e.g. ``"1F600"``); ``subcategory`` and
      ``short_names`` are kept.

    Splits: rows sorted by ``sort_order``, then stratified ``train_test_split`` with
    ``random_state=0`` into 60% train / 20% validation / 20% test; each split is kept in
    ``sort_order``. The built dataset is cached under ``cache_dir`` (default
    ``$ENSEMBLE_CACHE`` or the user cache dir) in ``datasets/emoji-google-16.0.0-<size>px``;
    later calls load it from there. ``overwrite=True`` rebuilds it.

    Example:
        >>> ds = load_emoji()  # doctest: +SKIP
        >>> ds["train"].num_rows, class_names(ds)[:2]  # doctest: +SKIP
        (1143, ['Activities', 'Animals & Nature'])
    """
    from datasets import DatasetDict

    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise ConfigError(f"image_size must be an integer >= 8, got {image_size!r}.")
    target = _cache_root(cache_dir) / "datasets" / f"emoji-google-{EMOJI_VERSION}-{image_size}px"
    if not overwrite and _emoji_cache_valid(target, image_size):
        try:
            return DatasetDict.load_from_disk(str(target))
        except Exception as err:  # a damaged cache is rebuilt, not fatal
            logger.warning("Rebuilding the emoji dataset cache at %s (%s).", target, err)

    if tarball is not None:
        tarball_path = Path(tarball).expanduser()
        if not tarball_path.is_file():
            raise DataError(
                f"tarball {os.fspath(tarball)!r} does not exist; download it with "
                f"`npm pack {EMOJI_PACKAGE}@{EMOJI_VERSION}` or pass tarball=None to let "
                f"ensemble run npm."
            )
        dsd, info = _build_emoji(tarball_path, image_size)
    else:
        with tempfile.TemporaryDirectory(prefix="ensemble-emoji-") as tmp:
            dsd, info = _build_emoji(_npm_pack(Path(tmp)), image_size)

    with atomic_directory(target) as tmp_dir:
        dsd.save_to_disk(str(tmp_dir))
        (tmp_dir / "LICENSE-emoji-datasource.txt").write_text(info.pop("license"), "utf-8")
        write_json(tmp_dir / _META_FILE, info)
    return DatasetDict.load_from_disk(str(target))


def _emoji_cache_valid(target: Path, image_size: int) -> bool:
    if not (target / "dataset_dict.json").is_file():
        return False
    try:
        meta = read_json(target / _META_FILE)
    except ArtifactError:
        return False
    return (
        meta.get("builder") == "emoji"
        and meta.get("builder_version") == _EMOJI_BUILDER_VERSION
        and meta.get("version") == EMOJI_VERSION
        and meta.get("image_size") == image_size
    )


def _npm_pack(workdir: Path) -> Path:
    """Download ``emoji-datasource-google-16.0.0.tgz`` into ``workdir`` with ``npm pack``."""
    spec = f"{EMOJI_PACKAGE}@{EMOJI_VERSION}"
    npm = shutil.which("npm")
    if npm is None:
        raise DependencyError(
            f"`npm` was not found on PATH; it is needed to download {spec}. Install Node.js "
            f"(which ships npm), or download the tarball elsewhere with `npm pack {spec}` and "
            f"pass load_emoji(tarball='emoji-datasource-google-{EMOJI_VERSION}.tgz')."
        )
    try:
        proc = subprocess.run(
            [npm, "pack", spec, "--ignore-scripts", "--silent"],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise DependencyError(
            f"`npm pack {spec}` failed ({err}); pass tarball=<path to a downloaded "
            f"emoji-datasource-google-{EMOJI_VERSION}.tgz> instead."
        ) from err
    found = sorted(workdir.glob("*.tgz"))
    if proc.returncode != 0 or not found:
        tail = (proc.stderr or proc.stdout or "").strip()[-600:]
        raise DependencyError(
            f"`npm pack {spec}` exited with {proc.returncode}: {tail}\nCheck access to the npm "
            f"registry, or pass tarball=<path to a downloaded emoji-datasource-google-"
            f"{EMOJI_VERSION}.tgz>."
        )
    return found[0]


_EMOJI_JSON = "package/emoji.json"
_EMOJI_LICENSE = "package/LICENSE"
_EMOJI_PACKAGE_JSON = "package/package.json"
_EMOJI_IMG_PREFIX = f"package/img/google/{_EMOJI_NATIVE_SIZE}/"
_MAX_JSON_BYTES = 64 << 20
_MAX_PNG_BYTES = 4 << 20


def _read_emoji_tarball(path: Path) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """Read the few members we need into memory.

    Nothing is extracted to disk, so member names can never escape a directory (no path
    traversal); links, devices and oversized members are ignored or rejected.
    """
    files: dict[str, bytes] = {}
    images: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                name = member.name.removeprefix("./")
                wanted_file = name in (_EMOJI_JSON, _EMOJI_LICENSE, _EMOJI_PACKAGE_JSON)
                wanted_image = (
                    name.startswith(_EMOJI_IMG_PREFIX)
                    and name.endswith(".png")
                    and "/" not in name[len(_EMOJI_IMG_PREFIX):]
                )
                if not (wanted_file or wanted_image) or not member.isfile():
                    continue
                limit = _MAX_JSON_BYTES if wanted_file else _MAX_PNG_BYTES
                if member.size > limit:
                    raise DataError(
                        f"{path}: member {name!r} is {member.size} bytes (limit {limit}); this "
                        f"is not the {EMOJI_PACKAGE} package."
                    )
                handle = archive.extractfile(member)
                if handle is None:
                    continue
                data = handle.read()
                if wanted_file:
                    files[name] = data
                else:
                    images[name[len(_EMOJI_IMG_PREFIX):]] = data
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataError(
            f"{path} is not a readable .tgz ({err}); download it again with "
            f"`npm pack {EMOJI_PACKAGE}@{EMOJI_VERSION}`."
        ) from err
    if _EMOJI_JSON not in files:
        raise DataError(
            f"{path} has no {_EMOJI_JSON}; pass the tarball made by "
            f"`npm pack {EMOJI_PACKAGE}@{EMOJI_VERSION}`."
        )
    return files, images


def _emoji_rgb(png: bytes, image_size: int) -> bytes:
    """Composite an (RGBA) emoji PNG on white, resize, and return RGB PNG bytes."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as img:
        rgba = img.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(canvas, rgba).convert("RGB")
    if rgb.size != (image_size, image_size):
        rgb = rgb.resize((image_size, image_size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    rgb.save(buffer, format="PNG")
    return buffer.getvalue()


def _emoji_text(entry: Mapping[str, Any]) -> str:
    name = entry.get("name")
    if isinstance(name, str) and name.strip():
        return name.strip().lower()
    for short in [*(entry.get("short_names") or []), entry.get("short_name")]:
        if isinstance(short, str) and short.strip():
            return short.strip().replace("_", " ").lower()
    raise DataError(
        f"Emoji {entry.get('unified')!r} has neither a name nor a short name; the tarball is "
        f"damaged: download it again with `npm pack {EMOJI_PACKAGE}@{EMOJI_VERSION}`."
    )


def _build_emoji(tarball: Path, image_size: int) -> tuple[Any, dict[str, Any]]:
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Value
    from sklearn.model_selection import train_test_split

    files, images = _read_emoji_tarball(tarball)
    if _EMOJI_PACKAGE_JSON in files:
        try:
            package = json.loads(files[_EMOJI_PACKAGE_JSON])
        except json.JSONDecodeError as err:
            raise DataError(f"{tarball}: package/package.json is not JSON ({err}).") from err
        got = (package.get("name"), package.get("version"))
        if got != (EMOJI_PACKAGE, EMOJI_VERSION):
            raise DataError(
                f"{tarball} holds {got[0]}@{got[1]}, expected {EMOJI_PACKAGE}@{EMOJI_VERSION}; "
                f"download the right one with `npm pack {EMOJI_PACKAGE}@{EMOJI_VERSION}`."
            )
    try:
        entries = json.loads(files[_EMOJI_JSON])
    except json.JSONDecodeError as err:
        raise DataError(f"{tarball}: {_EMOJI_JSON} is not valid JSON ({err}).") from err
    if not isinstance(entries, list):
        raise DataError(f"{tarball}: {_EMOJI_JSON} must be a JSON list of emoji.")

    rows = [
        e for e in entries
        if isinstance(e, dict)
        and e.get("category") != "Component"
        and e.get("has_img_google") is True
        and isinstance(e.get("image"), str)
        and e["image"] in images
    ]
    rows.sort(key=lambda e: (e.get("sort_order", 0), e.get("unified", "")))
    seen: set[str] = set()
    for entry in rows:
        unified = entry.get("unified")
        if not isinstance(unified, str) or not unified or unified in seen:
            raise DataError(
                f"{tarball}: emoji id (unified) {unified!r} is empty or repeated; the tarball is "
                f"damaged or not {EMOJI_PACKAGE}@{EMOJI_VERSION}."
            )
        seen.add(unified)
    names = sorted({str(e["category"]) for e in rows})
    if len(rows) < 5 * max(len(names), 1):
        raise DataError(
            f"{tarball}: only {len(rows)} usable emoji in {len(names)} categories; too few for "
            f"stratified 60/20/20 splits."
        )
    index = {name: i for i, name in enumerate(names)}
    y = np.array([index[str(e["category"])] for e in rows])
    order = np.arange(len(rows))
    train_idx, temp_idx = train_test_split(order, test_size=0.4, stratify=y, random_state=0)
    val_idx, test_idx = train_test_split(
        temp_idx, test_size=0.5, stratify=y[temp_idx], random_state=0
    )

    features = Features({
        "id": Value("string"),
        "image": Image(),
        "text": Value("string"),
        "label": ClassLabel(names=names),
        "subcategory": Value("string"),
        "short_names": _string_list_feature(),
        "unified": Value("string"),
    })
    splits = {}
    for split, idx in (("train", train_idx), ("validation", val_idx), ("test", test_idx)):
        chosen = [rows[i] for i in sorted(idx)]
        splits[split] = Dataset.from_dict(
            {
                "id": [e["unified"] for e in chosen],
                "image": [
                    {"bytes": _emoji_rgb(images[e["image"]], image_size), "path": None}
                    for e in chosen
                ],
                "text": [_emoji_text(e) for e in chosen],
                "label": [index[str(e["category"])] for e in chosen],
                "subcategory": [str(e.get("subcategory") or "") for e in chosen],
                "short_names": [[str(s) for s in e.get("short_names") or []] for e in chosen],
                "unified": [e["unified"] for e in chosen],
            },
            features=features,
        )
    info = {
        "builder": "emoji",
        "builder_version": _EMOJI_BUILDER_VERSION,
        "package": EMOJI_PACKAGE,
        "version": EMOJI_VERSION,
        "image_size": image_size,
        "tarball_sha256": sha256_file(tarball),
        "class_names": names,
        "num_rows": {split: d.num_rows for split, d in splits.items()},
        "licenses": {
            "emoji data (emoji.json)": "MIT (c) Cal Henderson, iamcal/emoji-data",
            "images (Google Noto Emoji)": "Apache-2.0",
        },
        "license": files.get(_EMOJI_LICENSE, b"").decode("utf-8", errors="replace"),
    }
    return DatasetDict(splits), info


def _string_list_feature() -> Any:
    import datasets

    list_type = getattr(datasets, "List", None)
    if list_type is not None:
        return list_type(datasets.Value("string"))
    return datasets.Sequence(datasets.Value("string"))  # datasets < 4


# --------------------------------------------------------------------------------------
# synthetic dataset
# --------------------------------------------------------------------------------------

#: Colour of each image factor value (the pair of classes an image points to).
SYNTHETIC_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "blue": (40, 80, 220),
    "green": (40, 170, 60),
    "yellow": (235, 205, 30),
    "magenta": (200, 50, 200),
    "cyan": (40, 200, 210),
    "orange": (245, 130, 20),
    "black": (25, 25, 25),
}
#: Text factor: the word group whose words appear in the text.
SYNTHETIC_WORDS: dict[str, tuple[str, ...]] = {
    "alpha": ("anchor", "apple", "arrow", "atlas", "autumn", "amber"),
    "beta": ("bridge", "bottle", "breeze", "button", "basket", "bishop"),
}
#: Filler words mixed into every synthetic text (no label information).
SYNTHETIC_FILLER: tuple[str, ...] = (
    "a", "the", "photo", "of", "some", "small", "picture", "with", "thing", "near", "this",
)
_SPLIT_STREAMS = {"train": 0, "validation": 1, "test": 2}


def make_synthetic(
    n_train: int = 64,
    n_validation: int = 32,
    n_test: int = 32,
    *,
    n_classes: int = 4,
    image_size: int = 32,
    noise: float = 0.1,
    seed: int = 0,
) -> Any:
    """Generate a tiny image+text dataset in which neither modality alone gives the label.

    This data is GENERATED, not real. Class ``c`` is the pair (colour ``c // 2``, word group
    ``c % 2``), named e.g. ``"red-alpha"``. The image is a square or disc of the class colour
    on a noisy grey background (it says nothing about the word group); the text mixes two
    words of the class word group with filler words (it says nothing about the colour). So
    the image alone is ambiguous between 2 classes and the text alone between
    ``n_classes // 2``; together they determine the class. With probability ``noise`` each
    modality independently shows a wrong factor value, so the best fused accuracy is about
    ``(1 - noise) ** 2`` plus chance. Classes are balanced in every split; each split has its
    own random stream, so its rows do not depend on the other splits' sizes. Deterministic
    for a given ``seed``. Columns: ``id``, ``image``, ``text``, ``label`` and the factors
    actually shown, ``image_factor`` and ``text_factor`` (for analysis, not model inputs).

    Example:
        >>> ds = make_synthetic(n_train=8, n_validation=4, n_test=4, seed=1)
        >>> ds["train"].column_names[:4], ds["train"][0]["image"].size
        (['id', 'image', 'text', 'label'], (32, 32))
    """
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Value

    for name, value in (("n_train", n_train), ("n_validation", n_validation), ("n_test", n_test)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}.")
    max_classes = 2 * len(SYNTHETIC_COLOURS)
    if (
        isinstance(n_classes, bool)
        or not isinstance(n_classes, int)
        or n_classes < 4
        or n_classes > max_classes
        or n_classes % 2
    ):
        raise ConfigError(
            f"n_classes must be an even integer between 4 and {max_classes}, got {n_classes!r}."
        )
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise ConfigError(f"image_size must be an integer >= 8, got {image_size!r}.")
    if not isinstance(noise, (int, float)) or not 0.0 <= float(noise) < 0.5:
        raise ConfigError(f"noise must be a probability in [0, 0.5), got {noise!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}.")

    colours = list(SYNTHETIC_COLOURS)[: n_classes // 2]
    groups = list(SYNTHETIC_WORDS)
    names = [f"{colour}-{group}" for colour in colours for group in groups]
    features = Features({
        "id": Value("string"),
        "image": Image(),
        "text": Value("string"),
        "label": ClassLabel(names=names),
        "image_factor": Value("int64"),
        "text_factor": Value("int64"),
    })
    splits = {}
    for split, n in (("train", n_train), ("validation", n_validation), ("test", n_test)):
        rng = np.random.default_rng([seed, _SPLIT_STREAMS[split]])
        labels = rng.permutation(np.arange(n) % n_classes)
        columns: dict[str, list[Any]] = {k: [] for k in features}
        for i, label in enumerate(labels.tolist()):
            image_factor = _maybe_flip(rng, label // 2, len(colours), noise)
            text_factor = _maybe_flip(rng, label % 2, len(groups), noise)
            columns["id"].append(f"synthetic-{split}-{i:05d}")
            columns["image"].append(
                _synthetic_image(rng, SYNTHETIC_COLOURS[colours[image_factor]], image_size)
            )
            columns["text"].append(_synthetic_text(rng, SYNTHETIC_WORDS[groups[text_factor]]))
            columns["label"].append(label)
            columns["image_factor"].append(image_factor)
            columns["text_factor"].append(text_factor)
        splits[split] = Dataset.from_dict(columns, features=features)
    return DatasetDict(splits)


def _maybe_flip(rng: np.random.Generator, value: int, n_values: int, noise: float) -> int:
    if rng.random() < noise:
        return int((value + rng.integers(1, n_values)) % n_values)
    return int(value)


def _synthetic_image(
    rng: np.random.Generator, colour: tuple[int, int, int], size: int
) -> dict[str, Any]:
    from PIL import Image

    grey = rng.uniform(95, 165)
    pixels = np.full((size, size, 3), grey) + rng.normal(0, 12, (size, size, 3))
    radius = rng.uniform(0.18, 0.32) * size
    cy, cx = rng.uniform(radius, size - radius, 2)
    yy, xx = np.mgrid[0:size, 0:size]
    if rng.random() < 0.5:
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    else:
        mask = (np.abs(yy - cy) <= radius) & (np.abs(xx - cx) <= radius)
    fill = np.asarray(colour, dtype=float) + rng.normal(0, 15, 3)
    pixels[mask] = fill + rng.normal(0, 10, (int(mask.sum()), 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def _synthetic_text(rng: np.random.Generator, words: tuple[str, ...]) -> str:
    n_words = int(rng.integers(4, 8))
    chosen = [str(w) for w in rng.choice(words, size=2, replace=False)]
    chosen += [str(w) for w in rng.choice(SYNTHETIC_FILLER, size=n_words - 2)]
    return " ".join(chosen[i] for i in rng.permutation(n_words))

