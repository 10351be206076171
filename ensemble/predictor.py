"""``FusionPredictor``: fine-tuned experts + a fitted combiner behind one prediction API.

Raw inputs go in (PIL images, file paths, arrays, strings; ``None`` where an example lacks an
input), one fused distribution per example comes out. Experts run batched under
``torch.inference_mode`` on the device accelerate picks; the combiner's presence mask
handles missing modalities. ``precision="bf16"`` opts in to bfloat16 autocast (see
docs/benchmarks.md).
:meth:`FusionPredictor.save` writes one self-contained bundle
with a ``manifest.json`` (sha256 of every file, library versions); :meth:`FusionPredictor.load`
verifies it and never unpickles.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any

import numpy as np

from ._io import (
    FORMAT_VERSION,
    atomic_directory,
    check_format_version,
    library_versions,
    read_json,
    sha256_file,
    write_json,
)
from .exceptions import ArtifactError, ClassMismatchError, ConfigError, DataError, ModalityError
from .labels import LabelSpace, softmax
from .typed_values import did_you_mean

__all__ = ["FusionPredictor", "require_bundle_directory", "verify_bundle"]

MANIFEST = "manifest.json"
_CONFIG = "config.json"
_LABELS = "label_space.json"
_KIND = "FusionPredictor"
#: ``predict`` shortcut keyword -> the modality whose (single) input column it feeds.
SHORTCUTS: dict[str, str] = {"images": "image", "texts": "text"}
#: Inference precisions: full float32, or bfloat16 autocast (faster on CPUs with bf16
#: instructions; fused predictions matched float32 on the emoji test split, single experts
#: can flip near-ties — opt in per predictor).
PRECISIONS = ("fp32", "bf16")


def _as_batch(value: Any, modality: str) -> list[Any]:
    """One input or a batch of inputs as a list (a lone string/path/image/mapping is one
    example; an image array is one image unless it is a batch ``N x H x W x C``)."""
    from PIL import Image

    if isinstance(value, (str, bytes, bytearray, os.PathLike, Image.Image, Mapping)):
        return [value]
    if isinstance(value, np.ndarray):
        single = {"image": (2, 3)}.get(modality, (1,))
        if value.ndim in single:
            return [value]
        if value.ndim == max(single) + 1:
            return list(value)
        raise DataError(
            f"a {modality} array must have {' or '.join(str(n) for n in single)} dimensions "
            f"for one example, or one more for a batch; got shape {value.shape}."
        )
    if hasattr(value, "column_names"):
        raise DataError("got a datasets.Dataset; use predict_dataset(dataset) for datasets.")
    try:
        return list(value)
    except TypeError:
        raise DataError(
            f"cannot read a {type(value).__name__} as model input; give one input (PIL image, "
            "path, array, string or mapping) or a list of them, with None where it is missing."
        ) from None


class FusionPredictor:
    """Named experts (each reading one input column) and a fitted combiner, used as one
    classifier.

    ``experts`` maps the combiner's expert names to fitted experts
    (:class:`~ensemble.ImageExpert`, :class:`~ensemble.TextExpert`); ``combiner`` is a
    fitted combiner whose ``expert_names_`` are exactly those names. ``precision="bf16"``
    runs the experts under bfloat16 autocast (see :data:`PRECISIONS`).

    Example:
        >>> predictor = FusionPredictor({"image": image, "text": text}, stacking)  # doctest: +SKIP
        >>> predictor.predict(images=["cat.png", None], texts=["a cat", "a dog"])  # doctest: +SKIP
        array(['cat', 'dog'], dtype='<U3')
    """

    def __init__(self, experts: Mapping[str, Any], combiner: Any, *, batch_size: int = 32,
                 progress: bool = False, precision: str = "fp32") -> None:
        if not isinstance(experts, Mapping) or not experts:
            raise ConfigError("experts must be a non-empty mapping {expert name: expert}.")
        if not getattr(combiner, "__sklearn_is_fitted__", lambda: False)():
            raise ConfigError(
                f"the combiner {type(combiner).__name__} is not fitted; fit it on held-out "
                "logits (combiner.fit(LogitSet, y)) before building a predictor."
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}.")
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS!r}, got {precision!r}.")
        names = tuple(combiner.expert_names_)
        if set(names) != set(experts):
            raise ModalityError(
                f"the combiner was fitted on modalities {list(names)!r} but the experts are "
                f"{sorted(experts)!r}; pass one expert per fitted name, keyed by that name."
            )
        self.class_names: tuple[str, ...] = tuple(combiner.class_names_)
        for name, expert in experts.items():
            if sorted(expert.class_names) != sorted(self.class_names):
                raise ClassMismatchError(
                    f"expert {name!r} predicts {list(expert.class_names)!r} but the combiner "
                    f"predicts {list(self.class_names)!r}; fine-tune on one label space."
                )
        self._experts = {name: experts[name] for name in names}
        self.combiner = combiner
        self.batch_size = batch_size
        self.progress = progress
        self.precision = precision
        self.config: dict[str, Any] = {}

    def __repr__(self) -> str:
        experts = ", ".join(f"{n}={type(e).__name__}({e.checkpoint!r})"
                            for n, e in self._experts.items())
        return (f"FusionPredictor(experts={{{experts}}}, combiner={type(self.combiner).__name__}, "
                f"classes={len(self.class_names)})")

    @property
    def experts(self) -> Mapping[str, Any]:
        """The experts by name (read-only mapping)."""
        return MappingProxyType(self._experts)

    @property
    def expert_names(self) -> tuple[str, ...]:
        return tuple(self._experts)

    @property
    def columns(self) -> dict[str, str]:
        """Input column -> its modality, for every column some expert reads."""
        return {e.column: e.modality for e in self._experts.values()}

    # -- inputs -> logits -----------------------------------------------------------------

    def _describe_columns(self) -> str:
        readers: dict[str, list[str]] = {}
        for name, expert in self._experts.items():
            readers.setdefault(expert.column, []).append(name)
        return "; ".join(f"{column} ({self.columns[column]}: read by {', '.join(names)})"
                         for column, names in readers.items())

    def _shortcut_column(self, keyword: str) -> str:
        modality = SHORTCUTS[keyword]
        columns = sorted({e.column for e in self._experts.values() if e.modality == modality})
        if len(columns) == 1:
            return columns[0]
        if not columns:
            raise ModalityError(
                f"{keyword}= was given but no expert reads {modality} inputs (inputs: "
                f"{self._describe_columns()}); pass predict({{column: [...]}})."
            )
        raise ModalityError(
            f"{keyword}= is ambiguous: {len(columns)} columns hold {modality} inputs "
            f"({columns!r}); pass them by column name, e.g. predict({{{columns[0]!r}: [...]}}) "
            f"(CLI: --input {columns[0]}=...)."
        )

    def _rows_to_columns(self, rows: Sequence[Any]) -> dict[str, list[Any]]:
        known = self.columns
        columns: dict[str, list[Any]] = {c: [] for c in known}
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise DataError(
                    f"row {i} is a {type(row).__name__}; give rows as mappings {{column: value}} "
                    f"(columns: {sorted(known)!r})."
                )
            self._check_names(row)
            for column in known:
                columns[column].append(row.get(column))
        return columns

    def _check_names(self, given: Mapping[str, Any]) -> None:
        for name in given:
            if name in self.columns:
                continue
            if name in self._experts:
                raise ModalityError(
                    f"{name!r} is an expert, not an input column; inputs are keyed by the column "
                    f"the expert reads ({self._experts[name].column!r})."
                )
            hint = did_you_mean(str(name), self.columns)
            raise ModalityError(
                f"unknown input column {name!r}.{hint} This predictor reads: "
                f"{self._describe_columns()}."
            )

    def _inputs(self, inputs: Any, images: Any, texts: Any) -> dict[str, list[Any]]:
        """Per input column, one value per example (``None`` where it is missing)."""
        given: dict[str, Any] = {}
        if inputs is not None:
            if hasattr(inputs, "column_names"):
                raise DataError("got a datasets.Dataset; use predict_dataset(dataset) for "
                                "datasets.")
            if isinstance(inputs, Mapping):
                self._check_names(inputs)
                given.update(inputs)
            elif isinstance(inputs, Sequence) and not isinstance(inputs, (str, bytes)):
                given.update(self._rows_to_columns(inputs))
            else:
                raise DataError(
                    f"inputs must be a mapping {{column: values}} or a list of row mappings, got "
                    f"{type(inputs).__name__}."
                )
        for keyword, value in (("images", images), ("texts", texts)):
            if value is not None:
                column = self._shortcut_column(keyword)
                if column in given:
                    raise DataError(f"column {column!r} was given twice (as {keyword}= and by "
                                    "name); give it once.")
                given[column] = value
        if not given:
            raise DataError(f"no inputs given; pass predict({{column: [...]}}) with columns "
                            f"{sorted(self.columns)!r} (or images=/texts= shortcuts).")
        batches = {column: _as_batch(value, self.columns[column])
                   for column, value in given.items()}
        sizes = {column: len(batch) for column, batch in batches.items()}
        if len(set(sizes.values())) != 1:
            raise DataError(
                f"every input column needs one entry per example (None where it is missing); "
                f"got {sizes}."
            )
        n_rows = next(iter(sizes.values()))
        if n_rows == 0:
            raise DataError("the inputs are empty; give at least one example.")
        return {column: batches.get(column, [None] * n_rows) for column in self.columns}

    def _column_order(self, expert: Any) -> list[int]:
        position = {name: i for i, name in enumerate(expert.class_names)}
        return [position[name] for name in self.class_names]

    def _logit_set(self, inputs: Mapping[str, list[Any]], ids: Sequence[str] | None = None
                   ) -> Any:
        from .logits import LogitSet

        logits, features, mask = {}, {}, {}
        n_rows = len(next(iter(inputs.values())))
        for name, expert in self._experts.items():
            values = inputs[expert.column]
            present = np.asarray(expert.present_rows(values), dtype=bool)
            with self._autocast():
                raw, embedded = expert.predict_logits(values, batch_size=self.batch_size,
                                                      return_features=True,
                                                      progress=self.progress)
            logits[name] = raw[:, self._column_order(expert)]
            features[name] = embedded
            mask[name] = present
        stacked = np.stack([mask[name] for name in self._experts], axis=1)
        empty = np.flatnonzero(~stacked.any(axis=1))
        if empty.size:
            raise DataError(
                f"example(s) {empty[:5].tolist()!r} have no input for any expert; give at "
                f"least one input per example (inputs: {self._describe_columns()})."
            )
        return LogitSet(logits, self.class_names, ids=ids if ids is not None
                        else [str(i) for i in range(n_rows)], mask=mask, features=features)

    def dataset_logits(self, dataset: Any) -> Any:
        """Every expert's logits on a ``datasets.Dataset`` as a :class:`LogitSet` (ids from
        its ``id`` column), in this predictor's class order."""
        from .logits import LogitSet

        if not hasattr(dataset, "column_names"):
            raise DataError(
                f"expected a datasets.Dataset, got {type(dataset).__name__}; for raw inputs use "
                "predict(images=..., texts=...)."
            )
        if len(dataset) == 0:
            raise DataError("the dataset has no rows; give at least one example.")
        with self._autocast():
            logits = LogitSet.from_experts(self._experts, dataset, batch_size=self.batch_size,
                                           features=True)
        return logits.align(class_names=self.class_names)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        """bfloat16 autocast on the inference device when ``precision == "bf16"``."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        return torch.autocast(device_type=device, dtype=torch.bfloat16)

    # -- prediction -----------------------------------------------------------------------

    def logits(self, inputs: Any = None, *, images: Any = None, texts: Any = None) -> Any:
        """Every expert's logits on raw inputs (as for :meth:`predict_proba`) as a
        :class:`~ensemble.logits.LogitSet` with the presence mask, in class order."""
        return self._logit_set(self._inputs(inputs, images, texts))

    def predict_proba(self, inputs: Any = None, *, images: Any = None,
                      texts: Any = None) -> np.ndarray:
        """Fused probabilities ``[N, C]``; columns follow :attr:`class_names`.

        ``inputs`` maps input columns to values (one value or a list, ``None`` where an
        example lacks that input), or is a list of row mappings. ``images=``/``texts=``
        feed the one image/text column when there is exactly one.
        """
        return self.combiner.predict_proba(self._logit_set(self._inputs(inputs, images, texts)))

    def predict(self, inputs: Any = None, *, images: Any = None,
                texts: Any = None) -> np.ndarray:
        """The most probable class name of each example (inputs as in :meth:`predict_proba`).

        Example:
            >>> predictor.predict({"photo": ["cat.png"], "title": ["a cat"]})  # doctest: +SKIP
            array(['cat'], dtype='<U3')
        """
        proba = self.predict_proba(inputs, images=images, texts=texts)
        return np.asarray(self.class_names)[proba.argmax(axis=1)]

    def explain(self, inputs: Any = None, *, images: Any = None,
                texts: Any = None) -> list[dict[str, Any]]:
        """Per example: the fused prediction, each expert's probabilities and how the
        combiner weighed its inputs (its own :meth:`explain_weights`)."""
        return self._explain(self._logit_set(self._inputs(inputs, images, texts)))

    def _explain(self, logit_set: Any) -> list[dict[str, Any]]:
        fused = self.combiner.predict_proba(logit_set)
        weights, kind = self._weights(logit_set)
        mask = np.asarray(logit_set.mask)
        rows = []
        for i in range(logit_set.n_rows):
            experts = {}
            for j, name in enumerate(logit_set.expert_names):
                if not mask[i, j]:
                    experts[name] = {"available": False}
                    continue
                proba = softmax(logit_set.logits[name][i : i + 1])[0]
                experts[name] = {"available": True, **self._distribution(proba)}
            rows.append({
                "id": str(logit_set.ids[i]),
                **self._distribution(fused[i]),
                "experts": experts,
                "weights": None if weights is None else dict(zip(weights[1], weights[0][i].tolist(),
                                                                 strict=True)),
                "weights_kind": kind,
            })
        return rows

    def _distribution(self, proba: np.ndarray) -> dict[str, Any]:
        best = int(np.argmax(proba))
        return {"label": self.class_names[best], "confidence": float(proba[best]),
                "probabilities": dict(zip(self.class_names, map(float, proba), strict=True))}

    def _weights(self, logit_set: Any
                 ) -> tuple[tuple[np.ndarray, tuple[str, ...]] | None, str | None]:
        explained = self.combiner.explain_weights(logit_set)
        if explained is None:
            return None, None
        weights, names, kind = explained
        return (weights, names), kind

    # -- datasets ---------------------------------------------------------------------------

    def predict_dataset(self, dataset: Any) -> Any:
        """Predictions for a ``datasets.Dataset`` as a new Dataset with columns ``id``,
        ``prediction``, ``confidence`` and ``probabilities`` (in :attr:`class_names` order)."""
        from datasets import Dataset

        logit_set = self.dataset_logits(dataset)
        proba = self.combiner.predict_proba(logit_set)
        best = proba.argmax(axis=1)
        return Dataset.from_dict({
            "id": [str(i) for i in logit_set.ids],
            "prediction": [self.class_names[k] for k in best],
            "confidence": proba.max(axis=1).astype(np.float32).tolist(),
            "probabilities": proba.astype(np.float32).tolist(),
        })

    def evaluate(self, dataset: Any, *, label_column: str = "label") -> dict[str, dict[str, float]]:
        """Accuracy, macro-F1, NLL, Brier and ECE of the fused model and of each expert on a
        labelled ``datasets.Dataset``; ``"oracle"`` holds the any-expert-right accuracy."""
        from . import metrics

        logit_set = self.dataset_logits(dataset)
        labels = LabelSpace(self.class_names).encode_column(dataset, label_column)
        results = {"fused": metrics.evaluate(labels, self.combiner.predict_proba(logit_set))}
        mask = np.asarray(logit_set.mask)
        probas = logit_set.probabilities()
        results.update({name: metrics.evaluate(labels, p) for name, p in probas.items()})
        masks = {name: mask[:, j] for j, name in enumerate(logit_set.expert_names)}
        results["oracle"] = {"accuracy": metrics.oracle_accuracy(labels, probas, masks)}
        return results

    # -- persistence --------------------------------------------------------------------------

    def save(self, directory: str | os.PathLike[str], *,
             config: Mapping[str, Any] | None = None) -> Path:
        """Write a self-contained bundle: experts, combiner, label space, ``config.json``
        (with the resolved ``config``) and ``manifest.json`` (sha256 of every file)."""
        directory = Path(directory)
        resolved = dict(config if config is not None else self.config)
        with atomic_directory(directory) as tmp:
            for name, expert in self._experts.items():
                expert.save_pretrained(tmp / "experts" / name)
            self.combiner.save(tmp / "combiner")
            write_json(tmp / _LABELS, {"class_names": list(self.class_names)})
            write_json(tmp / _CONFIG, {
                "kind": _KIND,
                "format_version": FORMAT_VERSION,
                "experts": {name: f"experts/{name}" for name in self._experts},
                "inputs": {name: {"column": e.column, "modality": e.modality,
                                  "kind": e.registry_name}
                           for name, e in self._experts.items()},
                "combiner": "combiner",
                "combiner_name": getattr(self.combiner, "registry_name", ""),
                "class_names": list(self.class_names),
                "batch_size": self.batch_size,
                "resolved_config": resolved,
            })
            files = {path.relative_to(tmp).as_posix(): sha256_file(path)
                     for path in sorted(tmp.rglob("*")) if path.is_file()}
            write_json(tmp / MANIFEST, {
                "kind": "manifest",
                "format_version": FORMAT_VERSION,
                "files": files,
                "versions": library_versions(),
            })
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike[str], *, progress: bool = False,
             precision: str = "fp32", trusted_types: Sequence[str] = ()) -> FusionPredictor:
        """Load a bundle written by :meth:`save` after verifying every file against its
        manifest. Works offline; nothing is unpickled. ``precision`` is a run-time choice
        (see :class:`FusionPredictor`), not stored in the bundle. ``trusted_types`` lets a
        tabular expert load non-scikit-learn types you trust (see docs/experts.md).

        Example:
            >>> predictor = FusionPredictor.load("runs/quickstart/bundle")  # doctest: +SKIP
        """
        from .combiners import load_combiner
        from .experts import load_expert

        root = Path(directory)
        verify_bundle(root)
        config = read_json(root / _CONFIG)
        check_format_version(config, root)
        if config.get("kind") != _KIND:
            raise ArtifactError(f"{root} holds a {config.get('kind')!r}, not a {_KIND} bundle.")
        try:
            experts = {str(name): load_expert(_inside(root, str(path)),
                                              trusted_types=tuple(trusted_types))
                       for name, path in config["experts"].items()}
            combiner = load_combiner(_inside(root, str(config["combiner"])))
            names = read_json(root / _LABELS)["class_names"]
        except (KeyError, AttributeError, TypeError) as err:
            raise ArtifactError(f"{root}/{_CONFIG} is incomplete ({err}).") from err
        if list(names) != list(combiner.class_names_):
            raise ArtifactError(f"{root}: {_LABELS} and the combiner disagree on the classes.")
        predictor = cls(experts, combiner, batch_size=int(config.get("batch_size", 32)),
                        progress=progress, precision=precision)
        predictor.config = dict(config.get("resolved_config") or {})
        return predictor


def _inside(root: Path, relative: str) -> Path:
    """``root / relative``, refusing paths that are absolute or leave ``root``."""
    pure = PurePosixPath(relative)
    if (not relative or pure.is_absolute() or ".." in pure.parts or "\\" in relative
            or ":" in relative):
        raise ArtifactError(f"{root}: the path {relative!r} leaves the bundle; refusing it.")
    path = root / pure
    if not path.resolve().is_relative_to(root.resolve()):
        raise ArtifactError(f"{root}: {relative!r} resolves outside the bundle; refusing it.")
    return path


def require_bundle_directory(root: str | os.PathLike[str]) -> Path:
    """``root`` as a Path, refused when it is not a folder, or is a run folder (naming the
    bundle inside it). Cheap: reads no file, so the CLI checks it before loading anything."""
    root = Path(root)
    if not root.is_dir():
        raise ArtifactError(f"{str(root)!r} is not a bundle directory; give the folder written "
                            "by `ensemble run` or FusionPredictor.save() (e.g. "
                            "runs/<recipe>/bundle).")
    if not (root / MANIFEST).is_file() and (root / "bundle" / MANIFEST).is_file():
        raise ArtifactError(f"{root} is a run folder, not a bundle; give its bundle: "
                            f"{root / 'bundle'}.")
    return root


def verify_bundle(root: Path) -> dict[str, str]:
    """Check every file of a bundle against ``manifest.json``; return the manifest's files.

    Refuses missing or modified files, files the manifest does not list, symlinks and paths
    that leave the bundle.
    """
    require_bundle_directory(root)
    manifest = read_json(root / MANIFEST)
    check_format_version(manifest, root / MANIFEST)
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise ArtifactError(f"{root}/{MANIFEST} lists no files; the bundle is incomplete.")
    for relative, digest in files.items():
        path = _inside(root, str(relative))
        if path.is_symlink() or not path.is_file():
            raise ArtifactError(f"{root}: {relative} is missing (or a symlink); the bundle is "
                                "incomplete. Re-save it.")
        if sha256_file(path) != digest:
            raise ArtifactError(f"{root}: {relative} does not match its sha256 in {MANIFEST}; "
                                "the bundle was modified after saving. Re-save it.")
    for path in root.rglob("*"):
        relative = path.relative_to(root).as_posix()
        if path.is_symlink():
            raise ArtifactError(f"{root}: {relative} is a symlink; bundles hold plain files only.")
        if path.is_file() and relative != MANIFEST and relative not in files:
            raise ArtifactError(f"{root}: {relative} is not listed in {MANIFEST}; remove it or "
                                "re-save the bundle.")
    return {str(k): str(v) for k, v in files.items()}
