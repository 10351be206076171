"""Reading a dataset source: local files and folders, saved datasets, builder or Hub names.

:func:`read_source` turns ``path_or_name`` into a ``DatasetDict`` plus the folder that
relative image paths are resolved against. A relative name that does not exist locally but
looks like a path (``./x``, ``data/x`` when ``data/`` exists, ``x.csv``) fails at once with
:class:`~ensemble.exceptions.DataError` (no Hub retries); an ambiguous one (``user/dataset``
with no local ``user/``) is tried on the Hub, and the error then names both readings.

Example:
    >>> looks_like_local_path("./data/pets"), looks_like_local_path("user/dataset")
    (True, False)
"""

from __future__ import annotations

import csv
import difflib
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..exceptions import ConfigError, DataError
from .hints import keyword_hint

__all__ = [
    "EXTENSION_BUILDERS",
    "check_column_count",
    "first_data_file",
    "headerless_csv_options",
    "looks_like_local_path",
    "read_source",
]

#: File extension -> ``datasets`` builder.
EXTENSION_BUILDERS: dict[str, str] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
    ".parquet": "parquet",
    ".arrow": "arrow",
}
#: Names ``load_dataset`` takes as file-format builders (with ``data_files``), not Hub names.
_BUILDERS = frozenset({*EXTENSION_BUILDERS.values(), "text", "imagefolder", "audiofolder",
                       "pandas", "webdataset"})
_PARSE_FAILURE = re.compile(r"Failed to parse string: '(.*)' as a scalar of type (\w+)")


def _flat(error: BaseException) -> str:
    """An error's message on one line (messages end up on one CLI line)."""
    return " ".join(str(error).split())


def first_data_file(data_files: Any) -> str | None:
    """The first file named in ``data_files`` (a path, list, or ``{split: ...}`` mapping)."""
    if isinstance(data_files, (str, os.PathLike)):
        return os.fspath(data_files)
    if isinstance(data_files, Mapping):
        values: Any = list(data_files.values())
    elif isinstance(data_files, Sequence):
        values = data_files
    else:
        return None
    for value in values:
        found = first_data_file(value)
        if found is not None:
            return found
    return None


def headerless_csv_options(
    column_names: Any, path_or_name: Any, data_files: Any, load_kwargs: dict[str, Any]
) -> dict[str, Any]:
    """``load_kwargs`` plus the csv reader options for files without a header row."""
    if isinstance(column_names, str) or not isinstance(column_names, Sequence):
        raise ConfigError(
            f"column_names must be a list of strings, got {column_names!r}; e.g. "
            f"{keyword_hint('column_names', ['file', 'text', 'label'])}."
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
    first = first_data_file(data_files) if data_files is not None else None
    source = first if first is not None else name
    builders = {name if name in EXTENSION_BUILDERS.values() else None,
                EXTENSION_BUILDERS.get(Path(source).suffix.lower())} - {None}
    if builders - {"csv"}:
        raise ConfigError(
            f"column_names only applies to csv / tsv files without a header row, not to "
            f"{source!r}; declare its named columns with inputs= (or image_column= / "
            "text_column=) and label_column= instead."
        )
    # ``names`` + ``header=None``: datasets' own ``column_names`` is ignored for directories.
    return {**load_kwargs, "names": columns, "header": None}


def check_column_count(dsd: Any, columns: list[str]) -> None:
    """Every split was read with exactly ``column_names`` (no unnamed extra columns)."""
    for split, dset in dsd.items():
        if dset.column_names != columns:
            raise DataError(
                f"split {split!r} was read with the columns {dset.column_names} instead of "
                f"column_names={columns}; the file has more columns than names. Name every "
                f"column (one name per comma-separated field)."
            )


def looks_like_local_path(text: str) -> bool:
    """Whether a name that does not exist is meant as a local path rather than a Hub name.

    True for ``/…``, ``./…``, ``../…``, ``~…``, a data-file extension (``.csv``, …), or a
    path whose first component exists in the working directory (``data/pets``).
    """
    if text.startswith(("/", "./", "../", "~", ".\\", "..\\")):
        return True
    if Path(text).suffix.lower() in EXTENSION_BUILDERS:
        return True
    parts = Path(text).parts
    return len(parts) > 1 and Path(parts[0]).exists()


def _close_paths(local: Path) -> str:
    """`` Did you mean 'data/pets'?`` from the entries of the deepest existing folder."""
    parent = local.parent
    while not parent.is_dir() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return ""
    try:
        entries = [p.name for p in parent.iterdir()]
    except OSError:
        return ""
    head = local.relative_to(parent).parts[0] if local.is_relative_to(parent) else local.name
    close = difflib.get_close_matches(head, entries, n=1, cutoff=0.6)
    return f" Did you mean {str(parent / close[0])!r}?" if close else ""


def read_source(
    path_or_name: Any,
    data_files: Any,
    load_kwargs: dict[str, Any],
) -> tuple[Any, Path | None]:
    """Run ``datasets.load_dataset`` (or ``load_from_disk``); return it and the data folder.

    Example:
        >>> read_source("./no/such/folder", None, {})
        Traceback (most recent call last):
        ...
        ensemble.exceptions.DataError: local path './no/such/folder' does not exist...
    """
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
    kwargs = dict(load_kwargs)
    base_dir: Path | None = None
    hub = False
    if local.is_file():
        if data_files is not None:
            raise ConfigError(f"pass either a data file ({text!r}) or data_files=..., not both.")
        builder = EXTENSION_BUILDERS.get(suffix)
        if builder is None:
            raise DataError(
                f"cannot tell the format of {text!r} from its extension; use one of "
                f"{sorted(EXTENSION_BUILDERS)} or call load_multimodal('csv'|'json'|'parquet', "
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
            first = first_data_file(data_files)
            if first is not None:
                base_dir = (local / first).resolve().parent
    elif isinstance(path_or_name, os.PathLike) or looks_like_local_path(text):
        raise DataError(
            f"local path {text!r} does not exist (working directory: {Path.cwd()}); check the "
            f"path.{_close_paths(local)} It was not tried as a Hub dataset name because it "
            "looks like a local path."
        )
    else:
        hub = text not in _BUILDERS
        call = (text, {"data_files": data_files} if data_files is not None else {})
        first = first_data_file(data_files) if data_files is not None else None
        if first is not None:
            base_dir = Path(first).expanduser().resolve().parent
    try:
        result = load_dataset(call[0], **call[1], **kwargs)
    except (FileNotFoundError, ConnectionError) as err:
        if hub:
            raise DataError(
                f"{text!r} is neither a local file or folder (nothing at {local.absolute()}) "
                f"nor a dataset that could be loaded from the Hub ({_flat(err)}). If you meant "
                "a local path, check it against the working directory; if you meant a Hub "
                "dataset, check its name and the network (offline: pass local csv / json / "
                "parquet files or an imagefolder)."
            ) from err
        raise DataError(
            f"datasets.load_dataset({text!r}) failed: {_flat(err)}. Check the name or path; "
            "without network access pass local files (csv, json, parquet, an imagefolder)."
        ) from err
    except Exception as err:
        from datasets.exceptions import DatasetGenerationError

        if isinstance(err, DatasetGenerationError):
            raise _explain_generation_error(err, local, data_files) from err
        raise
    if not isinstance(result, DatasetDict) and hasattr(result, "column_names"):
        split = kwargs.get("split", "train")
        result = DatasetDict({str(split): result})
    return result, base_dir


def _data_files_by_split(local: Path, data_files: Any) -> list[tuple[str, Path]]:
    """``(split, file)`` for the csv / tsv files a load read (best effort)."""
    if data_files is None:
        if local.is_file():
            return [("train", local)]
        if local.is_dir():
            return [(p.stem, p) for p in sorted(local.rglob("*")) if p.suffix in (".csv", ".tsv")]
        return []
    root = local if local.is_dir() else Path.cwd()
    mapping = data_files if isinstance(data_files, Mapping) else {"train": data_files}
    found = []
    for split, files in mapping.items():
        for file in [files] if isinstance(files, (str, os.PathLike)) else list(files):
            path = Path(file).expanduser()
            found.append((str(split), path if path.is_absolute() else root / path))
    return found


def _explain_generation_error(err: Exception, local: Path, data_files: Any) -> DataError:
    """A :class:`DataError` for a column whose type differs between rows or files."""
    cause: BaseException | None = err
    match = None
    while cause is not None and match is None:
        match = _PARSE_FAILURE.search(str(cause))
        cause = cause.__cause__ or cause.__context__
    if match is None:
        return DataError(
            f"datasets could not read {str(local)!r} ({_flat(err.__cause__ or err)}); check that "
            "every file of the dataset has the same columns and types."
        )
    value, kind = match.group(1), match.group(2)
    for split, path in _data_files_by_split(local, data_files):
        if path.suffix.lower() not in (".csv", ".tsv") or not path.is_file():
            continue
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
        with path.open(newline="", encoding="utf-8", errors="replace") as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            header = next(reader, [])
            for row, cells in enumerate(reader):
                for column, cell in zip(header, cells, strict=False):
                    if cell.strip() == value:
                        return DataError(
                            f"column {column!r} holds {value!r} in {str(path)!r} (split "
                            f"{split!r}, row {row}), but {kind} numbers elsewhere, so the "
                            "files cannot be read as one table. Fix the value, or leave the "
                            "cell empty to mark it missing."
                        )
    return DataError(
        f"a column holds {value!r} where other rows or files hold {kind} numbers, so "
        f"{str(local)!r} cannot be read as one table; fix the value, or leave the cell empty "
        "to mark it missing."
    )
