"""``FusionPredictor``: fine-tuned experts + a fitted combiner behind one prediction API.

Raw inputs go in (PIL images, file paths, arrays, strings; ``None`` where an example lacks a
modality), one fused distribution per example comes out. Experts run batched under
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
from .report import softmax

__all__ = ["FusionPredictor"]

MANIFEST = "manifest.json"
_CONFIG = "config.json"
_LABELS = "label_space.json"
_KIND = "FusionPredictor"
#: ``predict`` keyword -> the expert modality it feeds.
INPUT_KEYWORDS: dict[str, str] = {"images": "image", "texts": "text"}
#: Inference precisions: full float32, or bfloat16 autocast (faster on CPUs with bf16
#: instructions; fused predictions matched float32 on the emoji test split, single experts
#: can flip near-ties — opt in per predictor).
PRECISIONS = ("fp32", "bf16")


def _as_batch(value: Any) -> list[Any]:
    """One input or a batch of inputs as a list (a lone string/path/image is one example)."""
    from PIL import Image

    if isinstance(value, (str, bytes, bytearray, os.PathLike, Image.Image, dict)):
        return [value]
    if isinstance(value, np.ndarray):
        if value.ndim == 4:
            return list(value)
        if value.ndim in (2, 3):
            return [value]
        raise DataError(
            f"an image array must be HxW, HxWxC or a batch NxHxWxC, got shape {value.shape}."
        )
    if hasattr(value, "column_names"):
        raise DataError("got a datasets.Dataset; use predict_dataset(dataset) for datasets.")
    try:
        return list(value)
    except TypeError:
        raise DataError(
            f"cannot read a {type(value).__name__} as model input; give one input (PIL image, "
            "path, array or string) or a list of them, with None for a missing modality."
        ) from None


class FusionPredictor:
    """Experts (one per modality) and a fitted combiner, used as one classifier.

    ``experts`` maps the combiner's modality names to fine-tuned experts
    (:class:`~ensemble.ImageExpert`, :class:`~ensemble.TextExpert`); ``combiner`` is a
    fitted combiner whose ``modalities_`` are exactly those names. ``precision="bf16"``
    runs the experts under bfloat16 autocast (see :data:`PRECISIONS`).

    Example:
        >>> predictor = FusionPredictor({"image": image, "text": text}, stacking)  # doctest: +SKIP
        >>> predictor.predict(images=["cat.png", None], texts=["a cat", "a dog"])  # doctest: +SKIP
        array(['cat', 'dog'], dtype='<U3')
    """

    def __init__(self, experts: Mapping[str, Any], combiner: Any, *, batch_size: int = 32,
                 progress: bool = False, precision: str = "fp32") -> None:
        if not isinstance(experts, Mapping) or not experts:
            raise ConfigError("experts must be a non-empty mapping {modality name: expert}.")
        if not getattr(combiner, "__sklearn_is_fitted__", lambda: False)():
            raise ConfigError(
                f"the combiner {type(combiner).__name__} is not fitted; fit it on held-out "
                "logits (combiner.fit(LogitSet, y)) before building a predictor."
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}.")
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS!r}, got {precision!r}.")
        names = tuple(combiner.modalities_)
        if set(names) != set(experts):
            raise ModalityError(
                f"the combiner was fitted on modalities {list(names)!r} but the experts are "
                f"{sorted(experts)!r}; pass one expert per fitted modality, keyed by its name."
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
        """The experts by modality name (read-only mapping)."""
        return MappingProxyType(self._experts)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self._experts)

    # -- inputs -> logits -----------------------------------------------------------------

    def _inputs(self, images: Any, texts: Any, inputs: Mapping[str, Any] | None
                ) -> dict[str, list[Any]]:
        given: dict[str, Any] = {}
        by_keyword = {"images": images, "texts": texts}
        for keyword, value in by_keyword.items():
            if value is None:
                continue
            targets = [n for n, e in self._experts.items() if e.modality == INPUT_KEYWORDS[keyword]]
            if not targets:
                raise ModalityError(
                    f"{keyword}= was given but no expert reads {INPUT_KEYWORDS[keyword]!r} inputs "
                    f"(experts: {self._describe_experts()}); pass inputs={{name: [...]}}."
                )
            for name in targets:
                given[name] = value
        for name, value in (inputs or {}).items():
            if name not in self._experts:
                raise ModalityError(
                    f"inputs names an unknown expert {name!r}; experts: {list(self._experts)!r}."
                )
            given[name] = value
        if not given:
            raise DataError(
                "no inputs given; pass images=..., texts=... (or inputs={name: [...]})."
            )
        batches = {name: _as_batch(value) for name, value in given.items()}
        sizes = {name: len(batch) for name, batch in batches.items()}
        if len(set(sizes.values())) != 1:
            raise DataError(
                f"every modality needs one entry per example (None where it is missing); got "
                f"{sizes}."
            )
        n_rows = next(iter(sizes.values()))
        if n_rows == 0:
            raise DataError("the inputs are empty; give at least one example.")
        full = {name: batches.get(name, [None] * n_rows) for name in self._experts}
        empty = [i for i in range(n_rows) if all(full[n][i] is None for n in full)]
        if empty:
            raise DataError(
                f"example(s) {empty[:5]!r} have no input for any expert; give at least one "
                f"modality per example (experts: {self._describe_experts()})."
            )
        return full

    def _describe_experts(self) -> str:
        return ", ".join(f"{n}: {e.modality}" for n, e in self._experts.items())

    def _column_order(self, expert: Any) -> list[int]:
        position = {name: i for i, name in enumerate(expert.class_names)}
        return [position[name] for name in self.class_names]

    def _logit_set(self, inputs: Mapping[str, list[Any]], ids: Sequence[str] | None = None
                   ) -> Any:
        from .logits import LogitSet

        logits, features, mask = {}, {}, {}
        for name, expert in self._experts.items():
            values = inputs[name]
            present = np.array([v is not None for v in values], dtype=bool)
            with self._autocast():
                raw, embedded = expert.predict_logits(values, batch_size=self.batch_size,
                                                      return_features=True,
                                                      progress=self.progress)
            logits[name] = raw[:, self._column_order(expert)]
            features[name] = embedded
            mask[name] = present
        return LogitSet(logits, self.class_names, ids=ids, mask=mask, features=features)

    def _dataset_logit_set(self, dataset: Any) -> Any:
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

    def predict_proba(self, images: Any = None, texts: Any = None, *,
                      inputs: Mapping[str, Any] | None = None) -> np.ndarray:
        """Fused probabilities ``[N, C]``; columns follow :attr:`class_names`."""
        return self.combiner.predict_proba(self._logit_set(self._inputs(images, texts, inputs)))

    def predict(self, images: Any = None, texts: Any = None, *,
                inputs: Mapping[str, Any] | None = None) -> np.ndarray:
        """The most probable class name of each example."""
        proba = self.predict_proba(images, texts, inputs=inputs)
        return np.asarray(self.class_names)[proba.argmax(axis=1)]

    def explain(self, images: Any = None, texts: Any = None, *,
                inputs: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Per example: the fused prediction, each expert's probabilities and the combiner's
        weights (per-example gate weights for gating, fitted weights for voting and
        selection, ``None`` for combiners without expert weights)."""
        return self._explain(self._logit_set(self._inputs(images, texts, inputs)))

    def _explain(self, logit_set: Any) -> list[dict[str, Any]]:
        fused = self.combiner.predict_proba(logit_set)
        weights, kind = self._weights(logit_set)
        mask = np.asarray(logit_set.mask)
        rows = []
        for i in range(logit_set.n_rows):
            experts = {}
            for j, name in enumerate(logit_set.modalities):
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
        combiner = self.combiner
        if hasattr(combiner, "gate_weights"):
            return (combiner.gate_weights(logit_set), tuple(combiner.modalities_)), "gate"
        fitted = getattr(combiner, "weights_", None)
        if fitted is None:
            return None, None
        names = tuple(getattr(combiner, "candidate_names_", combiner.modalities_))
        fitted = np.asarray(fitted, dtype=np.float64)
        if fitted.shape != (len(names),):
            return None, None
        return (np.tile(fitted, (logit_set.n_rows, 1)), names), "fitted"

    # -- datasets ---------------------------------------------------------------------------

    def predict_dataset(self, dataset: Any) -> Any:
        """Predictions for a ``datasets.Dataset`` as a new Dataset with columns ``id``,
        ``prediction``, ``confidence`` and ``probabilities`` (in :attr:`class_names` order)."""
        from datasets import Dataset

        logit_set = self._dataset_logit_set(dataset)
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
        from .report import expert_probabilities

        logit_set = self._dataset_logit_set(dataset)
        labels = _label_indices(dataset, label_column, self.class_names)
        results = {"fused": metrics.evaluate(labels, self.combiner.predict_proba(logit_set))}
        mask = np.asarray(logit_set.mask)
        probas = expert_probabilities(logit_set)
        results.update({name: metrics.evaluate(labels, p) for name, p in probas.items()})
        masks = {name: mask[:, j] for j, name in enumerate(logit_set.modalities)}
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
                "modalities": {name: e.modality for name, e in self._experts.items()},
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
             precision: str = "fp32") -> FusionPredictor:
        """Load a bundle written by :meth:`save` after verifying every file against its
        manifest. Works offline; nothing is unpickled. ``precision`` is a run-time choice
        (see :class:`FusionPredictor`), not stored in the bundle.

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
            experts = {str(name): load_expert(_inside(root, str(path)))
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


def verify_bundle(root: Path) -> dict[str, str]:
    """Check every file of a bundle against ``manifest.json``; return the manifest's files.

    Refuses missing or modified files, files the manifest does not list, symlinks and paths
    that leave the bundle.
    """
    if not root.is_dir():
        raise ArtifactError(f"{root} is not a bundle directory; give the folder written by "
                            "FusionPredictor.save() (e.g. runs/<recipe>/bundle).")
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


def _label_indices(dataset: Any, column: str, class_names: Sequence[str]) -> np.ndarray:
    from .exceptions import LabelError

    if column not in dataset.column_names:
        raise DataError(f"dataset has no label column {column!r} (columns: "
                        f"{dataset.column_names!r}); pass label_column=.")
    feature = dataset.features[column]
    names = getattr(feature, "names", None)
    position = {name: i for i, name in enumerate(class_names)}
    labels = []
    for value in dataset[column]:
        name = names[value] if names is not None and isinstance(value, int) else value
        if name not in position:
            raise LabelError(f"label {name!r} is not in the predictor's classes "
                             f"{list(class_names)!r}.")
        labels.append(position[name])
    return np.asarray(labels, dtype=np.int64)
