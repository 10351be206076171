"""The :class:`Expert` base: one pretrained classifier for one modality.

Subclasses say how to build their backbone, collate raw inputs into tensors and run a
forward pass; this base owns everything they share: label checks, fine-tuning through
:func:`~ensemble.experts.training.train_classifier`, batched inference, pre-logit
embeddings, fingerprints and pickle-free persistence.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset
from tqdm.auto import tqdm

from .._io import (
    FORMAT_VERSION,
    atomic_directory,
    library_versions,
    read_config,
    write_json,
)
from ..exceptions import (
    ArtifactError,
    ClassMismatchError,
    ConfigError,
    DataError,
    LabelError,
)
from .training import EpochRecord, TrainingConfig, make_accelerator, train_classifier

__all__ = ["Expert", "load_expert"]

_CONFIG = "config.json"
_WEIGHTS = "model.safetensors"
_EXPERT_TYPES: dict[str, type[Expert]] = {}

Batch = dict[str, Any]


class _Rows(TorchDataset[dict[str, Any]]):
    """Rows ``indices`` of a Hugging Face dataset, or a plain list of inputs."""

    def __init__(self, source: Any, column: str, indices: Sequence[int],
                 labels: np.ndarray | None = None) -> None:
        if not isinstance(source, list):
            # Read only what the expert needs: a text expert never decodes images.
            source = source.select_columns([c for c in (column, "id")
                                            if c in source.column_names])
        self.source = source
        self.column = column
        self.indices = list(indices)
        self.labels = labels

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> dict[str, Any]:
        index = self.indices[position]
        if isinstance(self.source, list):
            row = {"id": str(index), self.column: self.source[index]}
        else:
            row = self.source[index]
            row = {"id": str(row.get("id", index)), self.column: row[self.column]}
        if self.labels is not None:
            row["label"] = int(self.labels[index])
        return row


class DerivedOutputs(ABC):
    """``embed`` and ``predict_proba`` from ``predict_logits`` (experts, bagged experts)."""

    @abstractmethod
    def predict_logits(self, data: Any, *, batch_size: int = 64, return_features: bool = False,
                       progress: bool = True) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Logits ``[N, C]`` (and embeddings ``[N, D]`` with ``return_features``)."""

    def embed(self, data: Any, *, batch_size: int = 64, progress: bool = True) -> np.ndarray:
        """Pre-logit embeddings ``[N, D]`` (the classifier layer's input)."""
        _, features = self.predict_logits(data, batch_size=batch_size, return_features=True,
                                          progress=progress)
        return features

    def predict_proba(self, data: Any, *, batch_size: int = 64,
                      progress: bool = True) -> np.ndarray:
        """Softmax probabilities ``[N, C]``."""
        logits = np.asarray(self.predict_logits(data, batch_size=batch_size, progress=progress),
                            dtype=np.float64)
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


class Expert(DerivedOutputs):
    """A pretrained classifier for one modality, fine-tuned on the shared label space.

    Subclasses implement :meth:`_collate_inputs`, :meth:`_forward`, :meth:`_classifier`,
    :meth:`_init_params` and :meth:`_from_saved`.
    """

    modality: ClassVar[str] = ""

    model: nn.Module
    checkpoint: str
    class_names: list[str]
    input_column: str

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _EXPERT_TYPES[cls.__name__] = cls

    def __init__(self, checkpoint: str, class_names: Sequence[str], *, input_column: str,
                 seed: int = 0) -> None:
        names = [str(name) for name in class_names]
        if len(names) < 2 or len(set(names)) != len(names):
            raise ClassMismatchError(
                f"class_names must list at least two distinct classes, got {names!r}."
            )
        self.checkpoint = str(checkpoint)
        self.class_names = names
        self.input_column = input_column
        self.seed = seed
        self.trained_on_: list[str] = []
        self.history_: list[EpochRecord] = []
        self._fingerprint: str | None = None

    # -- subclass hooks -------------------------------------------------------------------

    @abstractmethod
    def _collate_inputs(self, values: list[Any], ids: list[str], *, train: bool) -> Batch:
        """Tensors for a batch of raw inputs (PIL images, strings, ...)."""

    @abstractmethod
    def _forward(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """Logits ``[B, C]`` for a collated batch."""

    @abstractmethod
    def _classifier(self) -> nn.Module:
        """The final classification layer; its input is the pre-logit embedding."""

    @abstractmethod
    def _init_params(self) -> dict[str, Any]:
        """JSON-able constructor arguments that rebuild this expert's architecture."""

    @classmethod
    @abstractmethod
    def _from_saved(cls, directory: Path, config: Mapping[str, Any],
                    **kwargs: Any) -> Expert:
        """Rebuild the architecture (no pretrained download) from a saved directory."""

    def _save_extra(self, directory: Path) -> None:
        """Write extra files (e.g. a tokenizer) next to the weights."""

    # -- data plumbing --------------------------------------------------------------------

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _collate(self, rows: list[dict[str, Any]], *, train: bool) -> Batch:
        ids = [row["id"] for row in rows]
        batch = self._collate_inputs([row[self.input_column] for row in rows], ids, train=train)
        if rows and "label" in rows[0]:
            batch["labels"] = torch.tensor([row["label"] for row in rows], dtype=torch.long)
        return batch

    def _collate_train(self, rows: list[dict[str, Any]]) -> Batch:
        return self._collate(rows, train=True)

    def _collate_eval(self, rows: list[dict[str, Any]]) -> Batch:
        return self._collate(rows, train=False)

    def present_rows(self, dataset: Any) -> np.ndarray:
        """Boolean ``[N]``: rows whose input for this expert is not ``None``."""
        if isinstance(dataset, list):
            return np.array([value is not None for value in dataset], dtype=bool)
        self._require_column(dataset, self.input_column)
        column = dataset
        feature = dataset.features.get(self.input_column)
        if getattr(feature, "decode", False):
            column = dataset.cast_column(self.input_column, type(feature)(decode=False))
        return np.array([value is not None for value in column[self.input_column]], dtype=bool)

    @staticmethod
    def _require_column(dataset: Any, column: str) -> None:
        names = getattr(dataset, "column_names", None)
        if names is None:
            raise DataError(
                f"expected a datasets.Dataset or a list of inputs, got {type(dataset).__name__}."
            )
        if column not in names:
            raise DataError(
                f"dataset has no column {column!r} (columns: {names!r}); rename the column or "
                f"pass input_column= to the expert."
            )

    def _labels(self, dataset: Any, label_column: str) -> np.ndarray:
        """Labels of ``dataset`` as indices into ``self.class_names``, matched by name."""
        self._require_column(dataset, label_column)
        feature = dataset.features[label_column]
        values = dataset[label_column]
        ids = dataset["id"] if "id" in dataset.column_names else list(range(len(values)))
        names = getattr(feature, "names", None)
        if names is not None:
            missing = sorted(set(names) - set(self.class_names))
            if missing:
                raise ClassMismatchError(
                    f"dataset labels include {missing!r}, unknown to this expert "
                    f"({self.class_names!r}); build the expert with the dataset's class names."
                )
            values = [names[v] if isinstance(v, (int, np.integer)) and 0 <= v < len(names)
                      else v for v in values]
        position = {name: i for i, name in enumerate(self.class_names)}
        labels = np.empty(len(values), dtype=np.int64)
        for row, (value, ident) in enumerate(zip(values, ids, strict=True)):
            if isinstance(value, str) and value in position:
                labels[row] = position[value]
            elif (names is None and isinstance(value, (int, np.integer))
                  and 0 <= value < self.num_classes):
                labels[row] = int(value)
            else:
                raise LabelError(
                    f"label {value!r} of example {ident!r} is not in the label space "
                    f"{self.class_names!r}; fix the label or the class list."
                )
        return labels

    # -- training -------------------------------------------------------------------------

    def fit(
        self,
        train: Any,
        eval_dataset: Any | None = None,
        *,
        config: TrainingConfig | None = None,
        label_column: str = "label",
        **train_args: Any,
    ) -> Expert:
        """Fine-tune on ``train`` (a ``datasets.Dataset``), keeping the best eval epoch.

        ``train_args`` override fields of ``config`` (see :class:`TrainingConfig`). Rows
        whose input is ``None`` are skipped.

        Example:
            >>> expert.fit(ds["train"], ds["validation"], epochs=3)  # doctest: +SKIP
        """
        config = (config or TrainingConfig()).updated(**train_args)
        labels = self._labels(train, label_column)
        keep = np.flatnonzero(self.present_rows(train))
        if keep.size == 0:
            raise DataError(
                f"no training example has a {self.input_column!r} input; nothing to fit."
            )
        train_rows = _Rows(train, self.input_column, keep, labels)
        eval_rows = None
        if eval_dataset is not None:
            eval_labels = self._labels(eval_dataset, label_column)
            eval_keep = np.flatnonzero(self.present_rows(eval_dataset))
            eval_rows = _Rows(eval_dataset, self.input_column, eval_keep, eval_labels)
        result = train_classifier(
            self.model,
            self._forward,
            train_rows,
            collate_train=self._collate_train,
            collate_eval=self._collate_eval,
            train_labels=labels[keep].tolist(),
            n_classes=self.num_classes,
            eval_data=eval_rows,
            config=config,
            head=self._classifier(),
            description=f"{self.modality} expert",
        )
        self.history_ = result.history
        self.best_epoch_ = result.best_epoch
        self.training_config_ = config
        fingerprint = str(getattr(train, "_fingerprint", "") or "")
        if fingerprint and fingerprint not in self.trained_on_:
            self.trained_on_.append(fingerprint)
        self._fingerprint = None
        return self

    # -- inference ------------------------------------------------------------------------

    def predict_logits(
        self,
        data: Any,
        *,
        batch_size: int = 64,
        return_features: bool = False,
        progress: bool = True,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Logits ``[N, C]`` float32 for a dataset or a list of raw inputs.

        Rows whose input is ``None`` get zero logits (mark them missing in a
        :class:`~ensemble.logits.LogitSet`). With ``return_features=True`` also returns
        the pre-logit embeddings ``[N, D]`` from the same forward pass.

        Example:
            >>> expert.predict_logits(["a red apple", "a sad face"]).shape  # doctest: +SKIP
            (2, 9)
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}.")
        source = self._as_source(data)
        present = self.present_rows(source)
        rows = _Rows(source, self.input_column, np.flatnonzero(present))
        logits, features = self._infer(rows, batch_size=batch_size,
                                       return_features=return_features, progress=progress)
        full = np.zeros((len(present), self.num_classes), dtype=np.float32)
        full[present] = logits
        if not return_features:
            return full
        embedded = np.zeros((len(present), features.shape[1]), dtype=np.float32)
        embedded[present] = features
        return full, embedded

    def _as_source(self, data: Any) -> Any:
        if isinstance(data, (list, tuple)):
            return list(data)
        if hasattr(data, "column_names"):
            return data
        return [data]

    @contextlib.contextmanager
    def _capture_features(self, enabled: bool) -> Iterator[list[torch.Tensor]]:
        captured: list[torch.Tensor] = []
        if not enabled:
            yield captured
            return

        def hook(_module: nn.Module, args: tuple[Any, ...]) -> None:
            captured.append(args[0].detach().float())

        handle = self._classifier().register_forward_pre_hook(hook)
        try:
            yield captured
        finally:
            handle.remove()

    def _infer(self, rows: _Rows, *, batch_size: int, return_features: bool,
               progress: bool) -> tuple[np.ndarray, np.ndarray]:
        empty = np.zeros((0, self.num_classes), dtype=np.float32)
        if len(rows) == 0:
            return empty, np.zeros((0, 0), dtype=np.float32)
        accelerator = make_accelerator()
        loader = DataLoader(rows, batch_size=batch_size, shuffle=False,
                            collate_fn=self._collate_eval)
        prepared = accelerator.num_processes > 1 or accelerator.device.type != "cpu"
        if prepared:
            loader = accelerator.prepare(loader)  # shards rows, moves batches to the device
        model = self.model
        first = next(model.parameters(), None)
        if first is not None and first.device != accelerator.device:
            model = model.to(accelerator.device)  # a no-op .to() still walks every tensor
        model.eval()
        logits_out: list[np.ndarray] = []
        features_out: list[np.ndarray] = []
        show = progress and accelerator.is_local_main_process and len(loader) > 1
        with torch.inference_mode(), self._capture_features(return_features) as captured:
            for batch in tqdm(loader, desc=f"{self.modality} logits", disable=not show,
                              leave=False, dynamic_ncols=True):
                captured.clear()
                logits = self._forward(model, batch).float()
                outputs = (logits, captured[-1]) if return_features else (logits,)
                # Only a prepared loader may be gathered: accelerate trims the last batch
                # by the remainder of whichever loader it prepared last (e.g. training's).
                gathered = accelerator.gather_for_metrics(outputs) if prepared else outputs
                logits_out.append(gathered[0].cpu().numpy())
                if return_features:
                    features_out.append(gathered[1].cpu().numpy())
        logits_array = np.concatenate(logits_out).astype(np.float32)
        features_array = (np.concatenate(features_out).astype(np.float32) if return_features
                          else np.zeros((len(logits_array), 0), dtype=np.float32))
        return logits_array, features_array

    # -- identity and persistence ---------------------------------------------------------

    def fingerprint(self) -> str:
        """sha256 over the weights and label space; changes whenever the model does."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            digest.update(type(self).__name__.encode())
            digest.update("\x1f".join(self.class_names).encode())
            for name, tensor in sorted(self.model.state_dict().items()):
                digest.update(name.encode())
                data = tensor.detach().cpu().contiguous()
                digest.update(str(data.dtype).encode())
                digest.update(str(tuple(data.shape)).encode())
                digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes()
                              if data.numel() else b"")
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (+ extra files), atomically."""
        directory = Path(directory)
        config = {
            "kind": type(self).__name__,
            "format_version": FORMAT_VERSION,
            "modality": self.modality,
            "checkpoint": self.checkpoint,
            "class_names": self.class_names,
            "input_column": self.input_column,
            "seed": self.seed,
            "params": self._init_params(),
            "trained_on": self.trained_on_,
            "history": [dataclasses.asdict(record) for record in self.history_],
            "best_epoch": getattr(self, "best_epoch_", None),
            "training_config": (dataclasses.asdict(self.training_config_)
                                if hasattr(self, "training_config_") else None),
            "fingerprint": self.fingerprint(),
            "versions": library_versions(),
        }
        with atomic_directory(directory) as tmp:
            save_model(self.model, str(tmp / _WEIGHTS))
            self._save_extra(tmp)
            write_json(tmp / _CONFIG, config)
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike[str], **kwargs: Any) -> Expert:
        """Load an expert written by :meth:`save_pretrained`; never unpickles."""
        directory = Path(directory)
        config = read_config(directory, _CONFIG)
        kind = config.get("kind")
        expert_type = _EXPERT_TYPES.get(str(kind))
        if expert_type is None:
            raise ArtifactError(
                f"{directory} holds a {kind!r}; known experts: {sorted(_EXPERT_TYPES)!r}."
            )
        if cls is not Expert and not issubclass(expert_type, cls):
            raise ArtifactError(f"{directory} holds a {kind}, not a {cls.__name__}.")
        expert = expert_type._from_saved(directory, config, **kwargs)
        try:
            missing, unexpected = load_model(expert.model, str(directory / _WEIGHTS),
                                             strict=False)
        except (OSError, RuntimeError, ValueError, SafetensorError) as err:
            raise ArtifactError(f"{directory / _WEIGHTS} cannot be loaded: {err}") from err
        if missing or unexpected:
            raise ArtifactError(
                f"{directory / _WEIGHTS} does not match the architecture: missing "
                f"{sorted(missing)[:5]!r}, unexpected {sorted(unexpected)[:5]!r}."
            )
        expert.model.eval()
        expert.trained_on_ = [str(f) for f in config.get("trained_on", [])]
        expert.history_ = [EpochRecord(**record) for record in config.get("history", [])]
        if config.get("best_epoch") is not None:
            expert.best_epoch_ = int(config["best_epoch"])
        if config.get("training_config") is not None:
            expert.training_config_ = TrainingConfig().updated(**config["training_config"])
        return expert


def load_expert(directory: str | os.PathLike[str], **kwargs: Any) -> Any:
    """Load any saved expert, whatever its type (read from its ``config.json``): an
    :class:`Expert` subclass or a :class:`~ensemble.experts.BaggedExpert`."""
    from .bagged import BaggedExpert, is_bagged

    if is_bagged(directory):
        return BaggedExpert.from_pretrained(directory, **kwargs)
    return Expert.from_pretrained(directory, **kwargs)
