"""``TorchExpert``: what every torch-backbone expert shares (image, text, audio, ...).

Subclasses say how to build their model (lazily, on first use), collate raw inputs into
tensors and run a forward pass. This base owns fine-tuning through
:func:`~ensemble.experts.training.train_classifier`, batched inference on the device
accelerate picks, pre-logit features and the weight fingerprint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import tempfile
import warnings
from abc import abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset
from tqdm.auto import tqdm

from ..exceptions import ConfigError, DataError, ExportError
from ..labels import LabelSpace
from .base import Expert
from .training import EpochRecord, TrainingConfig, make_accelerator, train_classifier

__all__ = ["EXPORTED_GRAPH", "Batch", "InputRows", "TorchExpert", "export_torch_experts"]

Batch = dict[str, Any]
#: The file name of an exported expert's ONNX graph.
EXPORTED_GRAPH = "model.onnx"


class InputRows(TorchDataset[dict[str, Any]]):
    """Rows ``indices`` of a Hugging Face dataset (one column), or of a list of inputs."""

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


class TorchExpert(Expert):
    """A torch classifier fine-tuned by the shared accelerate loop.

    Subclasses implement :meth:`build_model`, :meth:`collate_inputs`, :meth:`forward`
    and :meth:`classifier`.
    """

    def __init__(self, checkpoint: str, labels: LabelSpace | Sequence[str], *, column: str,
                 seed: int = 0) -> None:
        super().__init__(column=column, labels=labels, seed=seed)
        self._checkpoint = str(checkpoint)
        self._model: nn.Module | None = None
        self._fingerprint: str | None = None
        self.history_: list[EpochRecord] = []

    # -- subclass hooks -------------------------------------------------------------------

    @abstractmethod
    def build_model(self) -> nn.Module:
        """Create the model (and its preprocessing) from :attr:`checkpoint`."""

    @abstractmethod
    def collate_inputs(self, values: list[Any], ids: list[str], *, train: bool) -> Batch:
        """Tensors for a batch of raw inputs (PIL images, strings, ...)."""

    @abstractmethod
    def forward(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """Logits ``[B, C]`` for a collated batch."""

    @abstractmethod
    def classifier(self) -> nn.Module:
        """The final classification layer; its input is the pre-logit feature vector."""

    def last_class_layer(self, model: nn.Module, head: str) -> nn.Module:
        """``model``'s last linear layer with one output per class (the classification
        head); otherwise a :class:`ConfigError` suggesting a model class with ``head`` head
        (e.g. ``"an audio-classification"``)."""
        linear = [m for m in model.modules()
                  if isinstance(m, nn.Linear) and m.out_features == self.num_classes]
        if not linear:
            raise ConfigError(
                f"{type(model).__name__} has no linear layer with {self.num_classes} "
                f"outputs; use a model class with {head} head."
            )
        return linear[-1]

    @staticmethod
    def warn_missing_weights(source: str | Path, missing: Sequence[str]) -> None:
        """Warn, for the caller of a checkpoint loader, when body weights (``missing``:
        not the fresh head) were not in the checkpoint and start random."""
        if missing:
            warnings.warn(
                f"{source}: {len(missing)} backbone weight(s) were not in the checkpoint and "
                f"start random, e.g. {sorted(missing)[:5]!r}; check the checkpoint matches "
                "the architecture.",
                stacklevel=4,
            )

    # -- the lazily built model -----------------------------------------------------------

    @property
    def model(self) -> nn.Module:
        """The torch model, built on first use (skorch-style lazy initialisation)."""
        if self._model is None:
            with torch.random.fork_rng():
                torch.manual_seed(self.seed)
                self._model = self.build_model()
        return self._model

    @model.setter
    def model(self, value: nn.Module) -> None:
        self._model = value
        self._fingerprint = None

    # -- collation ------------------------------------------------------------------------

    def _collate(self, rows: list[dict[str, Any]], *, train: bool) -> Batch:
        ids = [row["id"] for row in rows]
        batch = self.collate_inputs([row[self.column] for row in rows], ids, train=train)
        if rows and "label" in rows[0]:
            batch["labels"] = torch.tensor([row["label"] for row in rows], dtype=torch.long)
        return batch

    def collate_train(self, rows: list[dict[str, Any]]) -> Batch:
        return self._collate(rows, train=True)

    def collate_eval(self, rows: list[dict[str, Any]]) -> Batch:
        return self._collate(rows, train=False)

    # -- training -------------------------------------------------------------------------

    data_parallel: ClassVar[bool] = True  # the shared accelerate loop and inference

    #: :class:`TrainingConfig` fields this kind sets where the caller leaves them out (a
    #: kind whose pretrained bodies want another learning rate than transformers' 5e-5).
    default_training: ClassVar[Mapping[str, Any]] = {}

    @classmethod
    def default_training_config(cls) -> TrainingConfig:
        """The :class:`TrainingConfig` that ``fit`` and recipes start from for this kind."""
        return TrainingConfig(**cls.default_training)

    @classmethod
    def training_config(cls, options: Mapping[str, Any], *, seed: int = 0,
                        progress: bool = True) -> TrainingConfig:
        """A :class:`TrainingConfig` from a recipe's ``training:`` mapping, on top of the
        kind's :attr:`default_training`."""
        config = TrainingConfig.from_options({**cls.default_training, "seed": seed, **options})
        return config.updated(progress=progress and config.progress)

    def resume_config(self, config: TrainingConfig | None, work_dir: Path) -> TrainingConfig:
        return (config or self.default_training_config()).updated(output_dir=str(work_dir),
                                                                   resume=True)

    def fold_config(self, config: TrainingConfig | None, work_dir: Path | None
                    ) -> TrainingConfig:
        """Each fold trains its full epoch count (the held-out fold must stay unseen), and
        resumes from ``work_dir`` when given."""
        fold = (config or self.default_training_config()).updated(
            early_stopping_patience=None)
        if work_dir is not None:
            fold = fold.updated(output_dir=str(work_dir), resume=True)
        return fold

    def input_view(self, data: Any) -> Any:
        """``data`` as :meth:`fit` and :meth:`predict_logits` read it: itself, unless a kind
        needs another view of its column (the audio kind reads clips undecoded)."""
        return data

    def fit(self, train: Any, eval_dataset: Any | None = None, *,
            config: TrainingConfig | None = None, label_column: str = "label",
            **train_args: Any) -> TorchExpert:
        """Fine-tune on ``train`` (a ``datasets.Dataset``), keeping the best eval epoch.

        ``train_args`` override fields of ``config`` (see :class:`TrainingConfig`; without
        ``config``, the kind's :meth:`default_training_config`). Rows whose input is ``None``
        are skipped.

        Example:
            >>> expert.fit(ds["train"], ds["validation"], epochs=3)  # doctest: +SKIP
        """
        config = (config or self.default_training_config()).updated(**train_args)
        view = self.input_view(train)
        labels = self.encode_labels(view, label_column)
        keep = np.flatnonzero(self.present_rows(view))
        if keep.size == 0:
            raise DataError(f"no training example has a {self.column!r} input; nothing to fit.")
        train_rows = InputRows(view, self.column, keep, labels)
        eval_rows = None
        if eval_dataset is not None:
            eval_view = self.input_view(eval_dataset)
            eval_labels = self.encode_labels(eval_view, label_column)
            eval_keep = np.flatnonzero(self.present_rows(eval_view))
            eval_rows = InputRows(eval_view, self.column, eval_keep, eval_labels)
        result = train_classifier(
            self.model,
            self.forward,
            train_rows,
            collate_train=self.collate_train,
            collate_eval=self.collate_eval,
            train_labels=labels[keep].tolist(),
            n_classes=self.num_classes,
            eval_data=eval_rows,
            config=config,
            head=self.classifier(),
            description=f"{self.column} expert",
        )
        self.history_ = result.history
        self.best_epoch_ = result.best_epoch
        self.training_config_ = config
        self.record_trained_on(train)  # the caller's dataset, not the view (leakage guard)
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
        the pre-logit features ``[N, D]`` from the same forward pass.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}.")
        source = _as_source(self.input_view(data))
        present = self.present_rows(source)
        rows = InputRows(source, self.column, np.flatnonzero(present))
        logits, features = self._infer(rows, batch_size=batch_size,
                                       return_features=return_features, progress=progress)
        full = np.zeros((len(present), self.num_classes), dtype=np.float32)
        full[present] = logits
        if not return_features:
            return full
        width = features.shape[1] if features.size else self.feature_size()
        embedded = np.zeros((len(present), width), dtype=np.float32)
        if present.any():
            embedded[present] = features
        return full, embedded

    def feature_size(self) -> int:
        """Width of the pre-logit features (the classifier layer's input size)."""
        layer = self.classifier()
        return int(getattr(layer, "in_features", 0))

    @contextlib.contextmanager
    def _capture_features(self, enabled: bool) -> Iterator[list[torch.Tensor]]:
        captured: list[torch.Tensor] = []
        if not enabled:
            yield captured
            return

        def hook(_module: nn.Module, args: tuple[Any, ...]) -> None:
            captured.append(args[0].detach().float())

        handle = self.classifier().register_forward_pre_hook(hook)
        try:
            yield captured
        finally:
            handle.remove()

    def _infer(self, rows: InputRows, *, batch_size: int, return_features: bool,
               progress: bool) -> tuple[np.ndarray, np.ndarray]:
        if len(rows) == 0:
            return (np.zeros((0, self.num_classes), dtype=np.float32),
                    np.zeros((0, 0), dtype=np.float32))
        accelerator = make_accelerator()
        loader = DataLoader(rows, batch_size=batch_size, shuffle=False,
                            collate_fn=self.collate_eval)
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
            for batch in tqdm(loader, desc=f"{self.column} logits", disable=not show,
                              leave=False, dynamic_ncols=True):
                captured.clear()
                logits = self.forward(model, batch).float()
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

    # -- export ---------------------------------------------------------------------------

    #: The ONNX op types int8 dynamic quantisation may rewrite (``None``: all it can).
    int8_op_types: ClassVar[tuple[str, ...] | None] = None

    def export_inputs(self) -> dict[str, torch.Tensor]:
        """Named example tensors of one collated batch: the inputs of the exported graph."""
        raise ExportError(f"the {self.registry_name} expert does not say which tensors its "
                          "model reads (export_inputs); it cannot be exported.")

    def export_batch(self, tensors: Mapping[str, torch.Tensor]) -> Batch:
        """The batch :meth:`forward` takes, from the named tensors of :meth:`export_inputs`."""
        return dict(tensors)

    def export_dynamic_axes(self) -> dict[str, tuple[int, ...]]:
        """Per input tensor, the axes that vary between batches (default: the batch axis)."""
        return {name: (0,) for name in self.export_inputs()}

    def export_preprocessing(self, directory: Path) -> dict[str, Any]:
        """Write what the runtime needs to turn raw inputs into the graph's tensors (files
        in ``directory``) and return its JSON description."""
        raise ExportError(f"the {self.registry_name} expert has no preprocessing export.")

    def export_onnx(self, directory: Path) -> dict[str, Any]:
        """The model as ``model.onnx`` (outputs ``logits`` and ``features``, dynamic axes),
        checked against torch on an example batch, plus its preprocessing."""
        return export_torch_experts([self], directory)

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

    def metadata(self, **extra: Any) -> dict[str, Any]:
        return super().metadata(
            history=[dataclasses.asdict(record) for record in self.history_],
            best_epoch=getattr(self, "best_epoch_", None),
            training_config=(dataclasses.asdict(self.training_config_)
                             if hasattr(self, "training_config_") else None),
            **extra,
        )

    def restore_training_record(self, directory: Path, metadata: Mapping[str, Any]) -> None:
        """After loading weights: check the fingerprint and restore history/best epoch."""
        self.model.eval()
        self._fingerprint = None
        self.check_loaded(directory, metadata)
        self.history_ = [EpochRecord(**record) for record in metadata.get("history") or []]
        if metadata.get("best_epoch") is not None:
            self.best_epoch_ = int(metadata["best_epoch"])
        if metadata.get("training_config") is not None:
            self.training_config_ = TrainingConfig().updated(**metadata["training_config"])


def export_torch_experts(experts: Sequence[TorchExpert], directory: Path) -> dict[str, Any]:
    """One ONNX graph for ``experts`` (one expert, or the members of a bagged one: their
    logits and features averaged, as :class:`~ensemble.experts.BaggedExpert` does), checked
    against torch on an example batch, and their (shared) preprocessing."""
    from ..export.onnx_graphs import check_outputs, export_graph

    first = experts[0]
    what = f"the {first.registry_name} expert on column {first.column!r}"
    spec = first.export_preprocessing(directory)
    for member in experts[1:]:
        _check_same_preprocessing(member, spec, directory, what)
    inputs = first.export_inputs()
    # On the CPU, where the example inputs are (a model sits wherever it last ran).
    module = _ExportedExperts([_ExportedExpert(expert, list(inputs))
                               for expert in experts]).cpu().eval()
    try:
        with torch.no_grad():
            expected = [t.float().numpy() for t in module(*inputs.values())]
    except RuntimeError as err:
        raise ExportError(f"{what} fails on its example batch before export: {err}") from err
    graph = directory / EXPORTED_GRAPH
    export_graph(module, inputs, graph, output_names=("logits", "features"),
                 dynamic_axes=first.export_dynamic_axes(), what=what)
    check_outputs(graph, {k: v.numpy() for k, v in inputs.items()}, expected,
                  atol=1e-3, what=what)
    return {"runtime": "onnx", "graph": EXPORTED_GRAPH, "inputs": list(inputs),
            "feature_size": int(expected[1].shape[1]), "preprocessing": spec,
            "int8_op_types": first.int8_op_types}


def _check_same_preprocessing(member: TorchExpert, spec: dict[str, Any], directory: Path,
                              what: str) -> None:
    """A bagged member must preprocess exactly as the first: same description, same files
    (e.g. ``tokenizer.json``) byte for byte."""
    with tempfile.TemporaryDirectory() as scratch:
        other = member.export_preprocessing(Path(scratch))
        files = sorted(p.relative_to(scratch) for p in Path(scratch).rglob("*") if p.is_file())
        same = other == spec and all(
            (directory / f).is_file()
            and (directory / f).read_bytes() == (Path(scratch) / f).read_bytes()
            for f in files)
    if not same:
        raise ExportError(f"the members of {what} preprocess their inputs differently; one "
                          "exported graph needs one preprocessing.")


class _ExportedExperts(nn.Module):
    """The mean ``(logits, features)`` of one or more exported experts on the same inputs."""

    def __init__(self, members: Sequence[_ExportedExpert]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = [member(*tensors) for member in self.members]
        if len(outputs) == 1:
            return outputs[0]
        return (torch.stack([o[0] for o in outputs]).mean(dim=0),
                torch.stack([o[1] for o in outputs]).mean(dim=0))


class _ExportedExpert(nn.Module):
    """An expert's model with named tensor inputs returning ``(logits, features)``: the
    features are the classifier layer's input, captured by a forward pre-hook."""

    def __init__(self, expert: TorchExpert, names: Sequence[str]) -> None:
        super().__init__()
        self.expert = expert
        self.model = expert.model
        self.names = list(names)

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        captured: list[torch.Tensor] = []
        handle = self.expert.classifier().register_forward_pre_hook(
            lambda _module, args: captured.append(args[0]))
        try:
            batch = self.expert.export_batch(dict(zip(self.names, tensors, strict=True)))
            logits = self.expert.forward(self.model, batch)
        finally:
            handle.remove()
        return logits.float(), captured[-1].float()


def _as_source(data: Any) -> Any:
    if isinstance(data, (list, tuple)):
        return list(data)
    if hasattr(data, "column_names"):
        return data
    return [data]
