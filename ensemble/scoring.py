"""Score a large file with a bundle into resumable Parquet shards (``ensemble score``).

The rows of ``--data`` (csv / tsv / json lines / parquet, the columns ``predict --data``
reads) are streamed in chunks and scored one shard at a time; each shard
``DIR/part-00000.parquet``, ``part-00001.parquet``, ... holds ``shard_rows`` rows (the last
one fewer) with the columns

* ``id`` (string): the ``--id-column`` value (default ``id``; without such a column, the
  row number counted from 0),
* ``prediction`` (string) and ``probability`` (float64, of the prediction),
* ``proba_<class>`` (float64), one per class in the bundle's class order,
* ``logits_<expert>`` (list<float32>, null where the expert's input is missing) and
  ``present_<expert>`` (bool), one pair per expert.

Every shard is written to a temporary name in ``DIR`` and renamed when complete;
``DIR/_manifest.json`` (also replaced atomically) records what is being scored (the sha256 of
the bundle's ``manifest.json``, the input's path, size and modification time, the shard size
and id column) and the finished shards with their row counts. A re-run with the same
bundle, input and settings skips the finished shards (their input rows are read, not
predicted); a different one is refused with :class:`ScoreDirectoryMismatchError` unless
``overwrite``. Memory holds one shard's rows (plus one read batch), however long the file:
Parquet is read with ``ParquetFile.iter_batches``, csv with pyarrow's streaming reader, and
json lines with ``pyarrow.json.open_json`` (the whole file at once on pyarrow < 19).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._io import FORMAT_VERSION, atomic_file, output_errors, read_json, sha256_file, write_json
from .exceptions import ArtifactError, ConfigError, DataError, OutputError
from .launch import alone, processes
from .manifests import MANIFEST
from .prediction_files import READERS, column_values, require_input_columns

__all__ = [
    "DEFAULT_SHARD_ROWS",
    "SCORE_MANIFEST",
    "BundleScorer",
    "ScoreDirectoryMismatchError",
    "ScoreResult",
    "check_score_directory",
    "score_file",
    "score_table",
    "shard_name",
]

DEFAULT_SHARD_ROWS = 10_000
#: The manifest of a score directory.
SCORE_MANIFEST = "_manifest.json"
_KIND = "ensemble-score"
#: Manifest keys that must match for a re-run to resume, with what they mean to a user.
_IDENTITY = {
    "bundle_sha256": "bundle (sha256 of its manifest.json)",
    "input": "input file",
    "input_size": "input file size",
    "input_mtime_ns": "input file modification time",
    "shard_rows": "--shard-rows",
    "id_column": "--id-column",
}
_READ_BATCH = 1024


class ScoreDirectoryMismatchError(ConfigError):
    """The score directory holds shards of another bundle, input file or shard size."""


@dataclass
class ScoreResult:
    """What :func:`score_file` did: ``rows`` in ``shards`` files under ``out``, of which
    ``scored_rows`` were predicted now and the rest kept from an earlier run."""

    out: Path
    rows: int = 0
    scored_rows: int = 0
    shards: list[str] = field(default_factory=list)
    skipped_shards: int = 0
    #: False on the helping processes of a multi-process run (they report nothing).
    main_process: bool = True
    #: How many processes shared the shards (``scored_rows`` and ``skipped_shards`` count
    #: this process's own).
    processes: int = 1


def shard_name(index: int) -> str:
    """``part-00007.parquet`` for shard 7."""
    return f"part-{index:05d}.parquet"


def _identity(bundle: Path, data: Path, shard_rows: int, id_column: str | None
              ) -> dict[str, Any]:
    manifest = Path(bundle) / MANIFEST
    if not manifest.is_file():
        raise ArtifactError(f"{bundle} has no {MANIFEST}; give a bundle written by "
                            "`ensemble run` or FusionPredictor.save().")
    if not data.is_file():
        raise DataError(f"--data {str(data)!r} does not exist; check the path.")
    if data.suffix.lower() not in READERS:
        raise ConfigError(f"--data {str(data)!r} must be one of {sorted(READERS)!r}.")
    stat = data.stat()
    return {"bundle_sha256": sha256_file(manifest), "input": str(data.resolve()),
            "input_size": stat.st_size, "input_mtime_ns": stat.st_mtime_ns,
            "shard_rows": shard_rows, "id_column": id_column}


def _sweep_temporaries(out: Path) -> None:
    """Temporaries a killed scorer left (one ``ensemble score`` per directory at a time)."""
    for pattern in (".part-*.tmp", f".{SCORE_MANIFEST}.*.tmp"):
        for path in out.glob(pattern):
            path.unlink(missing_ok=True)


def check_score_directory(out: str | os.PathLike[str], bundle: str | os.PathLike[str],
                          data: str | os.PathLike[str], *,
                          shard_rows: int = DEFAULT_SHARD_ROWS, id_column: str | None = None,
                          overwrite: bool = False) -> dict[str, Any]:
    """Prepare ``out`` for scoring ``data`` with ``bundle`` and return its manifest.

    Cheap (loads no model): a directory of an earlier, identical run keeps its finished
    shards; one of another bundle, input or settings is refused with
    :class:`ScoreDirectoryMismatchError` naming the difference, or emptied of its shards and
    manifest when ``overwrite``. Temporaries of an interrupted run are deleted. On several
    processes (``torchrun``), the main process prepares ``out`` and the others read its
    manifest.
    """
    group = processes(via="store")
    manifest = None
    if group.is_main:
        manifest = _prepare_directory(Path(out), bundle, Path(data), shard_rows=shard_rows,
                                      id_column=id_column, overwrite=overwrite)
    group.wait()
    return manifest if manifest is not None else read_json(Path(out) / SCORE_MANIFEST)


def _prepare_directory(out: Path, bundle: str | os.PathLike[str], data: Path, *,
                       shard_rows: int, id_column: str | None,
                       overwrite: bool) -> dict[str, Any]:
    if isinstance(shard_rows, bool) or not isinstance(shard_rows, int) or shard_rows < 1:
        raise ConfigError(f"--shard-rows must be a positive integer, got {shard_rows!r}.")
    identity = _identity(Path(bundle), data, shard_rows, id_column)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {str(out)!r} is a file; give a directory for the shards.")
    with output_errors(out):
        out.mkdir(parents=True, exist_ok=True)
        _sweep_temporaries(out)
        path = out / SCORE_MANIFEST
        if overwrite:
            for part in out.glob("part-*.parquet"):
                part.unlink()
            path.unlink(missing_ok=True)
        if path.is_file():
            manifest = read_json(path)
            if manifest.get("kind") != _KIND:
                raise ArtifactError(f"{path} is not a score manifest; choose another --out.")
            changed = [key for key in _IDENTITY if manifest.get(key) != identity[key]]
            if changed:
                what = "; ".join(f"{_IDENTITY[k]}: {manifest.get(k)!r} there, {identity[k]!r} "
                                 "now" for k in changed)
                raise ScoreDirectoryMismatchError(
                    f"--out {str(out)!r} holds scores of another run ({what}); score into "
                    "another directory (--out) or pass --overwrite to delete its shards and "
                    "start over.")
            return manifest
        if any(out.glob("part-*.parquet")):
            raise ScoreDirectoryMismatchError(
                f"--out {str(out)!r} holds part-*.parquet files but no {SCORE_MANIFEST}; "
                "score into another directory (--out) or pass --overwrite to delete them.")
        manifest = {"kind": _KIND, "format_version": FORMAT_VERSION, **identity,
                    "shards": [], "rows": 0, "complete": False}
        write_json(path, manifest)
    return manifest


# -- reading ---------------------------------------------------------------------------------


def _batches(data: Path, id_column: str | None) -> Iterator[Any]:
    """The file's rows as pyarrow record batches, streamed."""
    import pyarrow as pa

    suffix = data.suffix.lower()
    reader = READERS.get(suffix)
    if reader is None:
        raise ConfigError(f"--data {str(data)!r} must be one of {sorted(READERS)!r}.")
    try:
        if reader == "parquet":
            import pyarrow.parquet as pq

            # pre_buffer (pyarrow's default) keeps every column chunk read so far in the
            # reader's cache: memory would grow with the file (the whole file by the end).
            yield from pq.ParquetFile(data, pre_buffer=False).iter_batches(
                batch_size=_READ_BATCH)
        elif reader == "csv":
            import pyarrow.csv as pacsv

            ids = {id_column or "id": pa.string()}
            yield from pacsv.open_csv(
                data, parse_options=pacsv.ParseOptions(delimiter="\t" if suffix == ".tsv"
                                                       else ","),
                convert_options=pacsv.ConvertOptions(strings_can_be_null=True,
                                                     column_types=ids))
        else:
            import pyarrow.json as pajson

            if hasattr(pajson, "open_json"):
                yield from pajson.open_json(data)
            else:  # pragma: no cover - pyarrow < 19 reads JSON lines whole
                yield from pajson.read_json(data).to_batches(_READ_BATCH)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        fix = ("write it as JSON lines (one object per line) or Parquet" if reader == "json"
               else "give every value of a column one type (or convert the file to Parquet)")
        raise DataError(f"--data {str(data)!r} cannot be read as {reader} ({err}); {fix}. "
                        "Shards already written are kept.") from None


def _tables(batches: Iterator[Any], size: int) -> Iterator[Any]:
    """Regroup record batches into tables of exactly ``size`` rows (the last one fewer)."""
    import pyarrow as pa

    pending: list[Any] = []
    count = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        count += batch.num_rows
        while count >= size:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, size)
            rest = table.slice(size)
            pending, count = rest.to_batches(), rest.num_rows
    if count:
        yield pa.Table.from_batches(pending)


class _Rows:
    """One chunk's columns as Python values, as :func:`column_values` reads them."""

    def __init__(self, table: Any) -> None:
        self._columns = _decoded(table)
        self.column_names = list(self._columns)
        self._len = table.num_rows

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, name: str) -> list[Any]:
        return self._columns[name]


def _decoded(table: Any) -> dict[str, list[Any]]:
    """Columns as Python lists; images and audio stored by ``datasets`` (Parquet written by
    ``Dataset.to_parquet``) are decoded as ``load_dataset`` would."""
    columns = table.to_pydict()
    try:
        from datasets import Features
        from datasets.features.features import require_decoding

        features = Features.from_arrow_schema(table.schema)
    except Exception:  # a schema datasets cannot describe: plain values
        return columns
    if any(require_decoding(feature) for feature in features.values()):
        columns = features.decode_batch(columns)
    return columns


def _ids(rows: _Rows, table: Any, id_column: str | None, start: int, data: Path) -> list[str]:
    column = id_column or "id"
    if column not in rows.column_names:
        if id_column is not None:
            raise DataError(f"--data {str(data)!r} has no id column {id_column!r} (its columns: "
                            f"{rows.column_names!r}); pass --id-column with one of them, or "
                            "leave it out to use row numbers.")
        return [str(start + i) for i in range(len(rows))]
    values = rows[column]
    for i, value in enumerate(values):
        if value is None or (isinstance(value, str) and not value.strip()):
            raise DataError(f"--data {str(data)!r}: row {start + i} has no value in the id "
                            f"column {column!r}; fill in every id (or pass --id-column with "
                            "another column). Shards already written are kept.")
    return [str(v) for v in values]


def _check_columns(names: list[str], predictor: Any, data: Path,
                   allow_missing: Sequence[str]) -> None:
    require_input_columns(names, predictor, data)
    for column in predictor.columns:
        if column in names or column in allow_missing:
            continue
        fields = {f for e in predictor.experts.values() if e.column == column
                  for f in getattr(e, "fields_", [])}
        if fields & set(names):
            continue
        raise DataError(f"--data {str(data)!r} has no column {column!r}, which the bundle "
                        f"reads (its columns: {names!r}); rename the column, or pass "
                        f"--allow-missing {column} to score every row without that input.")


# -- scoring ---------------------------------------------------------------------------------


def _score(predictor: Any, rows: _Rows, ids: list[str], base: Path) -> Any:
    """One shard's output table."""
    import pyarrow as pa

    inputs = {c: column_values(rows, predictor, c, base) for c in predictor.columns}
    logit_set = predictor.logits(inputs)
    proba = np.asarray(predictor.combiner.predict_proba(logit_set), dtype=np.float64)
    names = list(predictor.class_names)
    best = proba.argmax(axis=1)
    columns: dict[str, Any] = {
        "id": pa.array(ids, pa.string()),
        "prediction": pa.array([names[k] for k in best], pa.string()),
        "probability": pa.array(proba[np.arange(len(ids)), best], pa.float64()),
    }
    for j, name in enumerate(names):
        columns[f"proba_{name}"] = pa.array(proba[:, j], pa.float64())
    for name in logit_set.expert_names:
        present = np.asarray(logit_set.present(name), dtype=bool)
        logits = np.asarray(logit_set.logits[name], dtype=np.float32)
        columns[f"logits_{name}"] = pa.array(
            [row.tolist() if keep else None for row, keep in zip(logits, present, strict=True)],
            pa.list_(pa.float32()))
        columns[f"present_{name}"] = pa.array(present, pa.bool_())
    return pa.table(columns)


def score_table(predictor: Any, table: Any, *, id_column: str | None = None, start: int = 0,
                base_dir: str | os.PathLike[str] | None = None,
                data: str | os.PathLike[str] = "<table>") -> Any:
    """One ``pyarrow.Table`` of input rows scored: the shard columns described above.

    ``id_column`` names the ids (default ``id``; without that column, row numbers from
    ``start``); relative file paths are read from ``base_dir`` (default: the current
    folder); ``data`` names the rows' source in error messages.

    Example:
        >>> rows = pa.table({"id": ["a"], "text": ["red"]})  # doctest: +SKIP
        >>> score_table(predictor, rows)["prediction"]  # doctest: +SKIP
    """
    rows = _Rows(table)
    ids = _ids(rows, table, id_column, start, Path(data))
    return _score(predictor, rows, ids, Path(base_dir) if base_dir is not None else Path.cwd())


class BundleScorer:
    """A bundle as a callable over ``pyarrow.Table`` batches, loaded once per instance: the
    class to hand to Ray Data's ``Dataset.map_batches`` (``batch_format="pyarrow"``), so
    each actor loads the bundle once and returns the same columns as ``ensemble score``.

    Each actor's CPUs times ``concurrency`` must leave a CPU for Ray Data's read tasks: on
    a 2-CPU Ray, 2 actors of 1 CPU each hold both and the read never starts (hence
    ``num_cpus=0.5`` below); ``repartition`` gives every actor blocks to work on.

    Example:
        >>> import ray  # doctest: +SKIP
        >>> scores = (ray.data.read_parquet("rows.parquet").repartition(8)  # doctest: +SKIP
        ...           .map_batches(BundleScorer,
        ...                        fn_constructor_kwargs={"bundle": "runs/quickstart/bundle",
        ...                                               "base_dir": "."},
        ...                        batch_format="pyarrow", batch_size=1024, concurrency=2,
        ...                        num_cpus=0.5))      # num_gpus=1 for GPU actors
        >>> scores.write_parquet("scores/")  # doctest: +SKIP
    """

    def __init__(self, bundle: str | os.PathLike[str], *, id_column: str = "id",
                 base_dir: str | os.PathLike[str] | None = None) -> None:
        from .predictor import FusionPredictor

        self.predictor = FusionPredictor.load(bundle)
        self.id_column = id_column
        self.base_dir = base_dir

    def __call__(self, batch: Any) -> Any:
        """The scored ``batch``; it must carry ``id_column`` (a batch has no row numbers)."""
        if self.id_column not in batch.column_names:
            raise DataError(
                f"the batch has no id column {self.id_column!r} (its columns: "
                f"{batch.column_names!r}); give the rows ids, or BundleScorer(id_column=...)."
            )
        return score_table(self.predictor, batch, id_column=self.id_column,
                           base_dir=self.base_dir)


def _write_shard(table: Any, path: Path) -> None:
    import pyarrow.parquet as pq

    with atomic_file(path) as tmp:
        pq.write_table(table, tmp)


def _finished(out: Path, shard: dict[str, Any]) -> bool:
    """True when a shard the manifest lists is on disk with its row count."""
    import pyarrow.parquet as pq

    path = out / str(shard.get("file", ""))
    try:
        return bool(path.is_file() and pq.ParquetFile(path).metadata.num_rows == shard["rows"])
    except Exception:  # an unreadable shard is scored again
        return False


def _total_rows(data: Path) -> int | None:
    if data.suffix.lower() != ".parquet":
        return None
    import pyarrow.parquet as pq

    try:
        return int(pq.ParquetFile(data).metadata.num_rows)
    except Exception:  # the reader reports it with the fix
        return None


def score_file(predictor: Any, bundle: str | os.PathLike[str], data: str | os.PathLike[str],
               out: str | os.PathLike[str], *, shard_rows: int = DEFAULT_SHARD_ROWS,
               id_column: str | None = None, overwrite: bool = False,
               allow_missing: Sequence[str] = (), progress: bool = False) -> ScoreResult:
    """Score every row of ``data`` with ``predictor`` (loaded from ``bundle``) into Parquet
    shards under ``out``; resumes an interrupted run (see the module docstring).

    Under ``torchrun --nproc_per_node N`` each process reads the whole file but scores only
    every ``N``-th shard from its rank (on its own device), and the main process writes the
    manifest; a shard on disk with its row count counts as finished on a re-run, whoever
    wrote it.

    Example:
        >>> predictor = FusionPredictor.load("runs/quickstart/bundle")  # doctest: +SKIP
        >>> bundle = "runs/quickstart/bundle"
        >>> score_file(predictor, bundle, "rows.parquet", "scores/").rows  # doctest: +SKIP
        120
    """
    from tqdm.auto import tqdm

    out, data = Path(out), Path(data)
    manifest = check_score_directory(out, bundle, data, shard_rows=shard_rows,
                                     id_column=id_column, overwrite=overwrite)
    group = processes(via="store")
    result = ScoreResult(out=out, main_process=group.is_main, processes=group.count)
    done = {int(s["index"]): s for s in manifest.get("shards", []) if _finished(out, s)}
    if manifest.get("complete") and len(done) == len(manifest.get("shards", [])):
        result.rows = int(manifest.get("rows", 0))
        result.shards = [str(s["file"]) for s in manifest["shards"]]
        result.skipped_shards = len(result.shards)
        return result
    manifest["shards"] = [done[i] for i in sorted(done)]
    base = data.resolve().parent
    bar = tqdm(total=_total_rows(data), unit="rows", desc="scoring",
               disable=not (progress and group.is_main), dynamic_ncols=True)
    checked = False
    sizes: list[int] = []
    with bar:
        for index, table in enumerate(_tables(_batches(data, id_column), shard_rows)):
            if not checked:
                _check_columns(table.column_names, predictor, data, allow_missing)
                checked = True
            name = shard_name(index)
            start = index * shard_rows
            sizes.append(table.num_rows)
            if index % group.count != group.rank:  # another process's shard
                pass
            elif index in done:
                if done[index]["rows"] != table.num_rows:
                    raise ScoreDirectoryMismatchError(
                        f"{out / name} holds {done[index]['rows']} rows but the input gives "
                        f"{table.num_rows} for it: {str(data)!r} changed without its size or "
                        "time changing; pass --overwrite to score it again.")
                result.skipped_shards += 1
            elif _finished(out, {"file": name, "rows": table.num_rows}):
                result.skipped_shards += 1  # written before a kill, not yet in the manifest
            else:
                try:
                    with alone():  # this shard is this process's alone
                        scores = score_table(predictor, table, id_column=id_column,
                                             start=start, base_dir=base, data=data)
                except DataError as err:  # name the rows of the file, not of the chunk
                    raise type(err)(
                        f"--data {str(data)!r}, rows {start}-{start + table.num_rows - 1} "
                        f"(shard {name}; its example 0 is row {start}): {err} Shards "
                        "already written are kept.") from err
                _write_shard(scores, out / name)
                result.scored_rows += table.num_rows
                if group.is_main:
                    done[index] = _shard_entry(index, table.num_rows, shard_rows)
                    manifest["shards"] = [done[i] for i in sorted(done)]
                    manifest["rows"] = sum(int(s["rows"]) for s in manifest["shards"])
                    write_json(out / SCORE_MANIFEST, manifest)
            result.rows += table.num_rows
            result.shards.append(name)
            bar.update(table.num_rows)
    if result.rows == 0:
        raise DataError(f"--data {str(data)!r} has no rows; give a file with one row per "
                        "example.")
    extra = [s for i, s in done.items() if i >= len(result.shards)]
    if extra:
        raise ScoreDirectoryMismatchError(
            f"{out} holds {len(extra)} shard(s) past the end of {str(data)!r}; the input "
            "changed; pass --overwrite to score it again.")
    group.wait()  # every process has written its shards
    if group.is_main:
        shards = [_shard_entry(i, rows, shard_rows) for i, rows in enumerate(sizes)]
        # Shards in `done` were checked when the manifest was read or written here; only
        # the others (another process's, or found on disk) are read back.
        missing = [s["file"] for i, s in enumerate(shards)
                   if i not in done and not _finished(out, s)]
        if missing:
            raise ArtifactError(f"{out}: shard(s) {missing!r} were not written by the process "
                                "that scored them; run the same command again to score them.")
        manifest.update(shards=shards, rows=result.rows, complete=True)
        write_json(out / SCORE_MANIFEST, manifest)
    return result


def _shard_entry(index: int, rows: int, shard_rows: int) -> dict[str, Any]:
    return {"index": index, "file": shard_name(index), "rows": rows,
            "first_row": index * shard_rows}
