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
from pathlib import Path
from typing import Any

import numpy as np

from ._io import (
    FORMAT_VERSION,
    atomic_directory,
    check_format_version,
    read_json,
    write_json,
)
from .exceptions import ArtifactError, ClassMismatchError, ConfigError, DataError, ModalityError
from .labels import LabelSpace
from .manifests import inside_bundle, require_bundle_directory, verify_bundle, write_manifest
from .prediction_inputs import PredictorInputs

__all__ = ["FusionPredictor", "require_bundle_directory", "verify_bundle"]

_CONFIG = "config.json"
_LABELS = "label_space.json"
_KIND = "FusionPredictor"
#: Inference precisions: full float32, or bfloat16 autocast (faster on CPUs with bf16
#: instructions; fused predictions matched float32 on the emoji test split, single experts
#: can flip near-ties — opt in per predictor).
PRECISIONS = ("fp32", "bf16")
#: Where a predictor runs: torch (a bundle) or ONNX Runtime (an export, see :meth:`export`).
BACKENDS = ("torch", "onnxruntime")


class FusionPredictor(PredictorInputs):
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

    def _inference_context(self) -> contextlib.AbstractContextManager[Any]:
        return self._autocast()

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
            write_manifest(tmp)
        return directory

    def export(self, directory: str | os.PathLike[str], *, format: str = "onnx",
               quantize: bool = False) -> Path:
        """Export to a directory ONNX Runtime runs without torch (see docs/export.md);
        ``quantize=True`` adds int8 graphs. Load it with
        ``FusionPredictor.load(directory, backend="onnxruntime")``."""
        if format != "onnx":
            raise ConfigError(f"format must be 'onnx' (the only export format), got {format!r}.")
        from .export import export_predictor

        return export_predictor(self, directory, quantize=quantize)

    @classmethod
    def load(cls, directory: str | os.PathLike[str], *, progress: bool = False,
             precision: str = "fp32", trusted_types: Sequence[str] = (),
             backend: str = "torch") -> Any:
        """Load a bundle written by :meth:`save` after verifying every file against its
        manifest. Works offline; nothing is unpickled. ``precision`` is a run-time choice
        (see :class:`FusionPredictor`), not stored in the bundle. ``trusted_types`` lets a
        tabular expert load non-scikit-learn types you trust (see docs/experts.md).

        ``backend="onnxruntime"`` loads a directory written by :meth:`export` instead and
        returns an :class:`~ensemble.runtime.OnnxPredictor` (``precision`` ``"fp32"`` or
        ``"int8"``), which never imports torch.

        Example:
            >>> predictor = FusionPredictor.load("runs/quickstart/bundle")  # doctest: +SKIP
        """
        if backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {BACKENDS!r}, got {backend!r}.")
        if backend == "onnxruntime":
            from .runtime import OnnxPredictor

            return OnnxPredictor.load(directory, precision=precision,
                                      trusted_types=trusted_types)
        from .combiners import load_combiner
        from .experts import load_expert

        root = Path(directory)
        verify_bundle(root)
        config = read_json(root / _CONFIG)
        check_format_version(config, root)
        if config.get("kind") != _KIND:
            raise ArtifactError(f"{root} holds a {config.get('kind')!r}, not a {_KIND} bundle.")
        try:
            experts = {str(name): load_expert(inside_bundle(root, str(path)),
                                              trusted_types=tuple(trusted_types))
                       for name, path in config["experts"].items()}
            combiner = load_combiner(inside_bundle(root, str(config["combiner"])))
            names = read_json(root / _LABELS)["class_names"]
        except (KeyError, AttributeError, TypeError) as err:
            raise ArtifactError(f"{root}/{_CONFIG} is incomplete ({err}).") from err
        if list(names) != list(combiner.class_names_):
            raise ArtifactError(f"{root}: {_LABELS} and the combiner disagree on the classes.")
        predictor = cls(experts, combiner, batch_size=int(config.get("batch_size", 32)),
                        progress=progress, precision=precision)
        predictor.config = dict(config.get("resolved_config") or {})
        return predictor
