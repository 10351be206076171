"""Batch prediction from a file of rows to a file of predictions (``ensemble predict --data``).

The input file (csv / tsv / json / jsonl / parquet) has one column per input the bundle
reads; a tabular group may also come as its separate field columns. Relative image and
audio paths are read from the file's folder. Rows are predicted in chunks, so memory stays
bounded, and the output is written atomically: it appears complete or not at all.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ._io import output_errors
from .exceptions import ConfigError, DataError
from .modalities import get_modality

__all__ = ["READERS", "column_values", "predict_file", "require_input_columns"]

#: File suffix -> reader (``datasets.load_dataset`` builder name) for ``--data`` files.
READERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json",
            ".ndjson": "json", ".parquet": "parquet"}
_CHUNK = 512


def _read(path: Path) -> Any:
    import datasets

    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise ConfigError(f"--data {str(path)!r} must be one of {sorted(READERS)!r}.")
    options = {"delimiter": "\t"} if path.suffix.lower() == ".tsv" else {}
    try:
        return datasets.load_dataset(reader, data_files=str(path), split="train", **options)
    except ValueError as err:  # a header without rows: "corresponds to no data"
        raise DataError(f"--data {str(path)!r} has no rows ({err}); give a file with one row "
                        "per example.") from None


def column_values(table: Any, predictor: Any, column: str, base: Path) -> list[Any]:
    """One value per row for the predictor input ``column`` (``None`` where missing).

    ``table`` is anything with ``column_names``, ``len()`` and ``table[name]`` giving one
    column's values (a ``datasets.Dataset``, or the chunks :mod:`ensemble.scoring` reads).
    """
    readers = [e for e in predictor.experts.values() if e.column == column]
    if column in table.column_names:
        values = list(table[column])
    else:
        fields = next((list(getattr(e, "fields_", [])) for e in readers
                       if getattr(e, "fields_", None)), [])
        present = [f for f in fields if f in table.column_names]
        if not present:
            return [None] * len(table)
        columns = {f: table[f] for f in present}
        values = [{f: columns[f][i] for f in present} for i in range(len(table))]
    modality = get_modality(predictor.columns[column])
    if modality.file_paths:  # relative to the data file's folder
        values = [str(base / v) if isinstance(v, str) and v and not os.path.isabs(v) else v
                  for v in values]
    if modality.blank_is_missing:
        values = [None if v is None or (isinstance(v, str) and not v.strip()) else v
                  for v in values]
    return values


def require_input_columns(names: list[str], predictor: Any, data: Path) -> None:
    """Refuse a file with none of the bundle's input columns (nor a tabular group's fields)."""
    known = set(predictor.columns)
    if not known & set(names) and not any(
            set(getattr(e, "fields_", [])) & set(names) for e in predictor.experts.values()):
        raise DataError(
            f"--data {str(data)!r} has none of the bundle's input columns "
            f"{sorted(known)!r} (its columns: {list(names)!r}); rename them."
        )


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def predict_file(predictor: Any, data: Path, out: Path) -> int:
    """Predict every row of ``data`` and write ``out``; returns the number of rows.

    Example:
        >>> predict_file(predictor, Path("rows.csv"), Path("predictions.csv"))  # doctest: +SKIP
        120
    """
    table = _read(data)
    if len(table) == 0:
        raise DataError(f"--data {str(data)!r} has no rows.")
    require_input_columns(table.column_names, predictor, data)
    base = data.resolve().parent
    ids = ([str(i) for i in table["id"]] if "id" in table.column_names
           else [str(i) for i in range(len(table))])
    inputs = {c: column_values(table, predictor, c, base) for c in predictor.columns}
    probabilities: list[np.ndarray] = []
    for rows in _chunks(len(table), _CHUNK):
        chunk = {c: values[rows] for c, values in inputs.items()}
        probabilities.append(predictor.predict_proba(chunk))
    proba = np.concatenate(probabilities)
    names = list(predictor.class_names)
    best = proba.argmax(axis=1)
    record: dict[str, Any] = {
        "id": ids,
        "prediction": [names[k] for k in best],
        "confidence": proba.max(axis=1).astype(np.float64).round(6).tolist(),
    }
    for j, name in enumerate(names):
        record[f"p_{name}"] = proba[:, j].astype(np.float64).round(6).tolist()
    _write(record, out)
    return len(ids)


def _write(record: dict[str, Any], out: Path) -> None:
    import datasets

    out.parent.mkdir(parents=True, exist_ok=True)
    table = datasets.Dataset.from_dict(record)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    with output_errors(out):
        try:
            suffix = out.suffix.lower()
            if suffix == ".csv":
                table.to_csv(str(tmp), index=False)
            elif suffix == ".jsonl":
                table.to_json(str(tmp), lines=True)
            else:
                table.to_parquet(str(tmp))
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
