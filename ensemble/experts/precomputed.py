"""``PrecomputedExpert`` (kind ``precomputed``): scores computed outside this library.

A model that lives elsewhere (another language, an API, a colleague's notebook) joins the
ensemble through its scores, either

* a **table keyed by example id** (``path=``: csv / tsv / parquet / json / jsonl with an id
  column and one column per class name), read by the expert's ``column`` (``id`` by
  default): a row whose id is not in the table is an error, or missing with
  ``on_missing="mask"``; or
* a **column of score vectors** (``path=None``): each value is a list of ``C`` numbers in the
  label space's order.

``scores`` says whether the numbers are ``"probabilities"`` (rows sum to 1; turned into
log-probabilities) or ``"logits"``. ``train_ids`` lists the examples the outside model was
trained on, so the leakage guard refuses fitting a combiner on them, as for any expert.
The table is copied into saved folders and bundles as safetensors + JSON.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .._io import atomic_directory, read_json, read_verified_tensors, write_json, write_tensors
from ..exceptions import ArtifactError, ClassMismatchError, ConfigError, DataError
from ..fingerprints import dataset_fingerprint
from ..labels import LabelSpace, log_probabilities
from .base import Expert
from .registry import register_expert

__all__ = ["PrecomputedExpert"]

_TABLE = "scores.safetensors"
_IDS = "ids.json"
_READERS = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".json": "json",
            ".jsonl": "json", ".ndjson": "json"}
_SUM_TOLERANCE = 1e-3


@register_expert("precomputed")
class PrecomputedExpert(Expert):
    """Scores from a file keyed by example id, or from a column of score vectors.

    Example:
        >>> expert = PrecomputedExpert(labels=["a", "b"], column="vendor")
        >>> expert.predict_logits([[0.9, 0.1], None]).round(2).tolist()
        [[-0.11, -2.3], [0.0, 0.0]]
    """

    torch_free = True

    modality = "scores"

    def __init__(self, *, labels: LabelSpace | Sequence[str], path: str | None = None,
                 column: str = "id", scores: Literal["probabilities", "logits"] = "probabilities",
                 id_column: str = "id", on_missing: Literal["error", "mask"] = "error",
                 train_ids: Sequence[str] | str | None = None, seed: int = 0) -> None:
        super().__init__(column=column, labels=labels, seed=seed)
        self.path = path
        self.scores = scores
        self.id_column = id_column
        self.on_missing = on_missing
        self.train_ids = train_ids
        self._table: tuple[list[str], np.ndarray] | None = None
        self._fingerprint: str | None = None

    # -- reading the scores ---------------------------------------------------------------

    def _check_params(self) -> None:
        if self.scores not in ("probabilities", "logits"):
            raise ConfigError(f"scores is {self.scores!r}; choose 'probabilities' or 'logits'.")
        if self.on_missing not in ("error", "mask"):
            raise ConfigError(f"on_missing is {self.on_missing!r}; choose 'error' or 'mask'.")

    def _as_logits(self, values: np.ndarray, where: Sequence[str]) -> np.ndarray:
        """Validated scores ``[N, C]`` as logits; ``where`` names each row in errors."""
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != self.num_classes:
            raise ClassMismatchError(
                f"precomputed scores must have one value per class ({self.num_classes}: "
                f"{self.class_names!r}), got shape {values.shape}."
            )
        bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
        if bad.size:
            raise DataError(
                f"precomputed scores of {where[bad[0]]} hold NaN or infinity "
                f"({bad.size} row(s)); fix the scores or drop those rows."
            )
        if self.scores == "logits":
            return values.astype(np.float32)
        sums = values.sum(axis=1)
        off = np.flatnonzero((values < 0).any(axis=1) | (np.abs(sums - 1.0) > _SUM_TOLERANCE))
        if off.size:
            raise DataError(
                f"precomputed probabilities of {where[off[0]]} do not form a distribution "
                f"(sum {sums[off[0]]:.4g}); give probabilities that sum to 1, or set "
                "scores='logits' if they are logits."
            )
        return log_probabilities(values).astype(np.float32)

    def _read_table(self) -> tuple[list[str], np.ndarray]:
        if self._table is not None:
            return self._table
        self._check_params()
        if not self.path:
            raise ConfigError("this precomputed expert reads score vectors from its column; "
                              "it has no table (path=None).")
        path = Path(self.path)
        reader = _READERS.get(path.suffix.lower())
        if reader is None:
            raise ConfigError(f"precomputed scores file {str(path)!r} must be one of "
                              f"{sorted(_READERS)!r}.")
        if not path.is_file():
            raise DataError(f"precomputed scores file {str(path)!r} does not exist; check the "
                            "path (relative paths are read from the working directory).")
        import datasets

        table = datasets.load_dataset(reader, data_files=str(path), split="train")
        columns = table.column_names
        if self.id_column not in columns:
            raise DataError(f"{path} has no id column {self.id_column!r} (columns: {columns!r}); "
                            "pass id_column=.")
        missing = [c for c in self.class_names if c not in columns]
        extra = [c for c in columns if c not in self.class_names and c != self.id_column]
        if missing:
            raise ClassMismatchError(
                f"{path} has no column for class(es) {missing!r}; it must hold one column per "
                f"class of the label space {self.class_names!r} (unexpected columns: {extra!r})."
            )
        if extra:
            raise ClassMismatchError(
                f"{path} has columns {extra!r} that are not classes of the label space "
                f"{self.class_names!r}; rename or drop them, or check the label space."
            )
        ids = [str(i) for i in table[self.id_column]]
        seen: set[str] = set()
        for row, ident in enumerate(ids):
            if ident in seen:
                raise DataError(f"{path}: id {ident!r} appears twice (row {row}); give each "
                                "example one row.")
            seen.add(ident)
        raw = np.stack([np.asarray(table[c], dtype=np.float64) for c in self.class_names], axis=1)
        logits = self._as_logits(raw, [f"id {i!r} in {path}" for i in ids])
        self._table = (ids, logits)
        return self._table

    def _train_id_set(self) -> set[str]:
        given = self.train_ids
        if given is None:
            return set()
        if isinstance(given, str):
            path = Path(given)
            if not path.is_file():
                raise DataError(f"train_ids file {given!r} does not exist; give a file with one "
                                "example id per line, or a list of ids.")
            return {line.strip() for line in path.read_text().splitlines() if line.strip()}
        return {str(i) for i in given}

    # -- the contract ---------------------------------------------------------------------

    def fit(self, train: Any, eval_dataset: Any | None = None, *, config: Any = None,
            label_column: str = "label", **train_args: Any) -> PrecomputedExpert:
        """Nothing to train: reads and validates the scores, checks they cover ``train``
        (and ``eval_dataset``) and that the label spaces agree."""
        if train_args or config is not None:
            raise ConfigError("the precomputed expert takes no training arguments.")
        self._check_params()
        for dataset in (train, eval_dataset):
            if dataset is not None:
                self.encode_labels(dataset, label_column)
                self.predict_logits(dataset)  # coverage and validity
        self.fitted_ = True
        return self

    def check_ids(self, ids: Sequence[str]) -> None:
        """Refuse a table whose ids are not examples of the dataset (``ids``: every split)."""
        if not self.path:
            return
        table_ids, _ = self._read_table()
        known = set(map(str, ids))
        extra = [i for i in table_ids if i not in known]
        if extra:
            raise DataError(
                f"{self.path} has {len(extra)} id(s) that are in no split of the dataset, e.g. "
                f"{extra[:3]!r}; the file belongs to other data, or the ids differ (set "
                "id_column= on the dataset so both use the same ids)."
            )

    def present_rows(self, data: Any) -> np.ndarray:
        values = self.column_values(data)
        if not self.path:
            return np.array([v is not None for v in values], dtype=bool)
        table_ids, _ = self._read_table()
        known = set(table_ids)
        return np.array([v is not None and str(v) in known for v in values], dtype=bool)

    def predict_logits(self, data: Any, *, batch_size: int = 64, return_features: bool = False,
                       progress: bool = True) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """The scores as logits ``[N, C]`` (zeros where missing); features are the logits."""
        self._check_params()
        values = self.column_values(data)
        logits = np.zeros((len(values), self.num_classes), dtype=np.float32)
        present = [i for i, v in enumerate(values) if v is not None]
        if self.path:
            table_ids, table = self._read_table()
            position = {ident: i for i, ident in enumerate(table_ids)}
            unknown = [str(values[i]) for i in present if str(values[i]) not in position]
            if unknown and self.on_missing == "error":
                raise DataError(
                    f"{self.path} has no scores for {len(unknown)} example id(s) in column "
                    f"{self.column!r}, e.g. {unknown[:3]!r}; add them, or build the expert with "
                    "on_missing='mask' to treat them as missing."
                )
            rows = [i for i in present if str(values[i]) in position]
            logits[rows] = table[[position[str(values[i])] for i in rows]]
        elif present:
            vectors = []
            for i in present:
                value = values[i]
                if isinstance(value, (str, bytes)) or not isinstance(value, Sequence | np.ndarray):
                    raise DataError(
                        f"row {i} of column {self.column!r} is {value!r}; a precomputed score is "
                        f"a list of {self.num_classes} numbers ({self.class_names!r} order)."
                    )
                vectors.append(np.asarray(value, dtype=np.float64).reshape(-1))
            if any(v.shape != (self.num_classes,) for v in vectors):
                raise ClassMismatchError(
                    f"column {self.column!r} holds score vectors of another length than the "
                    f"{self.num_classes} classes {self.class_names!r}."
                )
            logits[present] = self._as_logits(np.stack(vectors),
                                               [f"row {i} of column {self.column!r}"
                                                for i in present])
        return (logits, logits.copy()) if return_features else logits

    def seen_fingerprints(self, dataset: Any) -> tuple[str, ...]:
        """Counts ``dataset`` as seen when any of its ids is in ``train_ids`` (ids are read
        from the expert's column for a table, else from ``id``)."""
        seen = list(self.trained_on_)
        train_ids = self._train_id_set()
        fingerprint = dataset_fingerprint(dataset)
        id_column = self.column if self.path else "id"
        if (train_ids and fingerprint and id_column in getattr(dataset, "column_names", ())
                and train_ids & {str(i) for i in dataset[id_column] if i is not None}):
            seen.append(fingerprint)
        return tuple(seen)

    # -- identity and persistence ---------------------------------------------------------

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            digest = hashlib.sha256(b"PrecomputedExpert")
            digest.update("\x1f".join(self.class_names).encode())
            digest.update(f"{self.scores}|{self.column}|{self.on_missing}".encode())
            if self.path:
                ids, table = self._read_table()
                digest.update("\x1f".join(ids).encode())
                digest.update(np.ascontiguousarray(table).tobytes())
            digest.update("\x1f".join(sorted(self._train_id_set())).encode())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def hyper_parameters(self) -> dict[str, Any]:
        return {"scores": self.scores, "id_column": self.id_column,
                "on_missing": self.on_missing, "has_table": bool(self.path),
                "source": str(self.path or "")}

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """The validated table (safetensors logits + ids JSON) and ``ensemble.json``."""
        directory = Path(directory)
        with atomic_directory(directory) as tmp:
            extra: dict[str, Any] = {"train_ids": sorted(self._train_id_set())}
            if self.path:
                ids, table = self._read_table()
                extra["table_sha256"] = write_tensors(tmp / _TABLE, {"logits": table})
                write_json(tmp / _IDS, {"ids": ids})
            self.write_metadata(tmp, **extra)
        return directory

    @classmethod
    def load_saved(cls, directory: Path, metadata: Mapping[str, Any],
                   **kwargs: Any) -> PrecomputedExpert:
        params = metadata.get("params") or {}
        expert = cls(labels=metadata["class_names"], column=str(metadata["column"]),
                     path=str(params.get("source") or "") or None,
                     scores="logits", id_column=str(params.get("id_column", "id")),
                     on_missing=params.get("on_missing", "error"),
                     train_ids=list(metadata.get("train_ids") or []) or None,
                     seed=int(metadata.get("seed", 0)))
        expert.scores = str(params.get("scores", "probabilities"))  # type: ignore[assignment]
        if params.get("has_table"):
            tensors = read_verified_tensors(directory / _TABLE, metadata.get("table_sha256"),
                                            remedy="Re-save the expert.")
            try:
                ids = [str(i) for i in read_json(directory / _IDS)["ids"]]
            except (KeyError, TypeError) as err:
                raise ArtifactError(f"{directory / _IDS} is damaged ({err}).") from err
            table = np.asarray(tensors["logits"], dtype=np.float32)
            if table.shape != (len(ids), expert.num_classes):
                raise ArtifactError(f"{directory}: {_IDS} and {_TABLE} disagree on the rows.")
            expert._table = (ids, table)
        expert.fitted_ = True
        expert.check_loaded(directory, metadata)
        return expert
