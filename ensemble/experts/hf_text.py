"""``TextExpert`` (kind ``transformers``): a Hugging Face text classifier on the label space.

A saved text expert with the model's own head (``pooling="model"``) is also a transformers
``save_pretrained`` folder (``config.json`` with ``id2label``, ``model.safetensors``, the
tokenizer), so ``AutoModelForSequenceClassification.from_pretrained(<folder>)`` loads it
without this library. With mean pooling the folder holds the encoder (``AutoModel``) and the
head in ``classifier.safetensors``. ``ensemble.json`` holds the ensemble's own metadata.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging as hf_logging

from .._io import atomic_directory
from ..exceptions import ArtifactError, ConfigError, ExportError
from ..labels import LabelSpace
from ..modalities.text import to_text
from ._pooling import MeanPoolingClassifier, Pooling, sentence_transformers_pooling
from .registry import register_expert
from .torch_expert import Batch, TorchExpert

__all__ = ["TextExpert", "quiet_transformers"]

_HEAD = "classifier.safetensors"
_TOKENIZER_FILE = "tokenizer.json"


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers without its load report and progress bars (restored afterwards)."""
    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


@register_expert("transformers")
class TextExpert(TorchExpert):
    """``AutoModelForSequenceClassification`` + ``AutoTokenizer`` over texts.

    ``checkpoint`` is a Hub id or a local folder, resolved through
    :mod:`ensemble.checkpoints` (so ``sentence-transformers/all-MiniLM-L6-v2`` works offline
    with the ``offline-models`` extra). ``id2label``/``label2id`` come from
    ``class_names``. ``trust_remote_code`` stays off unless you turn it on: it runs Python
    code shipped with the checkpoint.

    ``pooling`` picks what the head sees: ``"model"`` is the model's own
    sequence-classification head (``[CLS]`` pooler for BERT-likes), ``"mean"`` the
    attention-masked mean of the last hidden states (what sentence-transformers checkpoints
    are trained for), ``"auto"`` (default) reads the checkpoint's sentence-transformers
    pooling config and falls back to ``"model"``.

    Example:
        >>> expert = TextExpert("path/to/tiny-bert", ["neg", "pos"])  # doctest: +SKIP
        >>> expert.predict_logits(["great movie"]).shape  # doctest: +SKIP
        (1, 2)
    """

    modality = "text"

    def __init__(
        self,
        checkpoint: str,
        labels: LabelSpace | Sequence[str],
        *,
        column: str = "text",
        pretrained: bool = True,
        max_length: int = 128,
        pooling: Pooling = "auto",
        trust_remote_code: bool = False,
        model_kwargs: Mapping[str, Any] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(checkpoint, labels, column=column, seed=seed)
        self.pretrained = pretrained
        self.max_length = max_length
        self.pooling = pooling
        self.trust_remote_code = trust_remote_code
        self.model_kwargs = dict(model_kwargs or {})
        self._saved_dir: Path | None = None  # set when loading a saved expert

    def build_model(self) -> nn.Module:
        if isinstance(self.max_length, bool) or not isinstance(self.max_length, int) \
                or self.max_length < 2:
            raise ConfigError(f"max_length must be an integer >= 2, got {self.max_length!r}.")
        if self.pooling not in ("auto", "model", "mean"):
            raise ConfigError(f"pooling is {self.pooling!r}; choose 'auto', 'model' or 'mean'.")
        if self._saved_dir is not None:
            return self._build(self._saved_dir, pretrained=False)
        from ..checkpoints import resolve_text_checkpoint

        return self._build(resolve_text_checkpoint(self.checkpoint), pretrained=self.pretrained)

    @property
    def pooling_(self) -> str:
        """The pooling in use (``"model"`` or ``"mean"``; ``"auto"`` resolved on build)."""
        self.model  # noqa: B018
        return self._resolved_pooling

    @property
    def tokenizer(self) -> Any:
        """The checkpoint's own tokenizer (loaded with the model)."""
        self.model  # noqa: B018 - builds model and tokenizer on first use
        return self._tokenizer

    def _build(self, source: str | Path, *, pretrained: bool) -> nn.Module:
        self._resolved_pooling = (sentence_transformers_pooling(source) if self.pooling == "auto"
                         else self.pooling)
        saved = self._saved_dir is not None
        config = AutoConfig.from_pretrained(
            source,
            num_labels=self.num_classes,
            id2label=dict(enumerate(self.class_names)),
            label2id={name: i for i, name in enumerate(self.class_names)},
            trust_remote_code=self.trust_remote_code,
            **({} if saved else self.model_kwargs),
        )
        config.problem_type = "single_label_classification"
        if saved:
            model = self._load_saved_model(source, config)
        elif pretrained:
            model = self._load_pretrained(source, config)
        elif self._resolved_pooling == "mean":
            model = self._mean_pooling(
                AutoModel.from_config(config, trust_remote_code=self.trust_remote_code))
        else:
            model = AutoModelForSequenceClassification.from_config(
                config, trust_remote_code=self.trust_remote_code)
        self._tokenizer = AutoTokenizer.from_pretrained(
            source, trust_remote_code=self.trust_remote_code
        )
        # Never pad/truncate past what the model accepts (its tokenizer knows; transformers
        # uses a huge sentinel when it does not).
        limit = getattr(self._tokenizer, "model_max_length", None)
        self._max_tokens = (min(self.max_length, limit)
                            if isinstance(limit, int) and 0 < limit < 1_000_000_000
                            else self.max_length)
        self._head = self.last_class_layer(model, "a sequence-classification")
        return model

    def _load_saved_model(self, source: str | Path, config: Any) -> nn.Module:
        """The fine-tuned model of a folder written by :meth:`save_pretrained`."""
        with quiet_transformers():
            return self._read_saved_model(source, config)

    def _read_saved_model(self, source: str | Path, config: Any) -> nn.Module:
        try:
            if self._resolved_pooling == "mean":
                model = self._mean_pooling(AutoModel.from_pretrained(
                    source, config=config, trust_remote_code=self.trust_remote_code))
                head = load_file(str(Path(source) / _HEAD))
                model.classifier.load_state_dict(head)
            else:
                model = AutoModelForSequenceClassification.from_pretrained(
                    source, config=config, trust_remote_code=self.trust_remote_code)
        except (OSError, RuntimeError, ValueError, KeyError, SafetensorError) as err:
            weights = Path(source) / ("model.safetensors")
            raise ArtifactError(f"{weights} (the saved text model) cannot be loaded: {err}; "
                                "re-save the expert.") from err
        return model

    def _load_pretrained(self, source: str | Path, config: Any) -> nn.Module:
        """Load the backbone; warn only when weights other than the new head are missing.

        A fresh classification head is expected (the checkpoint was trained on other
        labels), so transformers' own load report is silenced and replaced by a warning
        that names any *unexpected* gap, e.g. a body layer that was not in the checkpoint.
        """
        mean = self._resolved_pooling == "mean"
        model_class = AutoModel if mean else AutoModelForSequenceClassification
        with quiet_transformers():
            model, info = model_class.from_pretrained(
                source, config=config, ignore_mismatched_sizes=True,
                trust_remote_code=self.trust_remote_code, output_loading_info=True,
            )
        head = {name for name, module in model.named_modules()
                if isinstance(module, nn.Linear) and module.out_features == self.num_classes}
        missing = [key for key in info.get("missing_keys", ())
                   if key.rsplit(".", 1)[0] not in head]
        self.warn_missing_weights(source, missing)
        return self._mean_pooling(model) if self._resolved_pooling == "mean" else model

    def _mean_pooling(self, backbone: nn.Module) -> nn.Module:
        # The [CLS] pooler gets no gradient under mean pooling; frozen, it cannot stall a
        # DistributedDataParallel reduction or collect weight decay.
        pooler = getattr(backbone, "pooler", None)
        if isinstance(pooler, nn.Module):
            pooler.requires_grad_(False)
        return MeanPoolingClassifier(backbone, self.num_classes)

    def fit(self, train: Any, eval_dataset: Any | None = None, **kwargs: Any) -> TextExpert:
        """Fine-tune (see :meth:`TorchExpert.fit`); first warns when the tokenizer does not
        know most words of the training texts (a tokenizer built for other data)."""
        self.require_column(train)  # before the model loads: a wrong column fails at once
        self.warn_unknown_tokens(train)
        super().fit(train, eval_dataset, **kwargs)
        return self

    def unknown_token_share(self, texts: Sequence[str]) -> float:
        """The share of ``texts``' tokens that the tokenizer maps to its unknown token."""
        unk = getattr(self.tokenizer, "unk_token_id", None)
        if unk is None or not texts:
            return 0.0
        encoded = self.tokenizer(list(texts), add_special_tokens=False, truncation=True,
                                 max_length=self._max_tokens)["input_ids"]
        total = sum(len(ids) for ids in encoded)
        return sum(ids.count(unk) for ids in encoded) / total if total else 0.0

    def warn_unknown_tokens(self, dataset: Any, *, sample: int = 512,
                            threshold: float = 0.5) -> None:
        """Warn when more than ``threshold`` of the tokens of (a sample of) ``dataset``'s
        texts are unknown to the tokenizer: the expert would learn from ``[UNK]``s."""
        if not hasattr(dataset, "column_names") or self.column not in dataset.column_names:
            return
        rows = dataset.select(range(min(sample, len(dataset))))
        texts = [t for t in rows[self.column] if isinstance(t, str) and t.strip()]
        share = self.unknown_token_share(texts)
        if share > threshold:
            warnings.warn(
                f"{share:.0%} of the tokens of column {self.column!r} are unknown to the "
                f"tokenizer of {self.checkpoint!r}; the text expert will learn little. Use a "
                "checkpoint whose tokenizer covers this data's language and vocabulary.",
                stacklevel=3,
            )

    def collate_inputs(self, values: list[Any], ids: list[str], *, train: bool) -> Batch:
        texts = [to_text(value, ident) for value, ident in zip(values, ids, strict=True)]
        encoded = self.tokenizer(texts, padding=True, truncation=True,
                                 max_length=self._max_tokens, return_tensors="pt")
        return {"inputs": dict(encoded)}

    def forward(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return model(**batch["inputs"]).logits

    def classifier(self) -> nn.Module:
        self.model  # noqa: B018
        return self._head

    # -- export ---------------------------------------------------------------------------

    def export_inputs(self) -> dict[str, torch.Tensor]:
        examples = ["an example", "a longer example sentence for the export"]
        inputs = self.collate_inputs(examples, ["0", "1"], train=False)["inputs"]
        return {name: tensor for name, tensor in inputs.items()}

    def export_batch(self, tensors: Mapping[str, torch.Tensor]) -> Batch:
        return {"inputs": dict(tensors)}

    def export_dynamic_axes(self) -> dict[str, tuple[int, ...]]:
        return {name: (0, 1) for name in self.export_inputs()}

    def export_preprocessing(self, directory: Path) -> dict[str, Any]:
        """``tokenizer.json`` (the fast tokenizer's own file, read by ``tokenizers``) and the
        settings :meth:`collate_inputs` uses."""
        tokenizer = self.tokenizer
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise ExportError(
                f"the tokenizer of {self.checkpoint!r} ({type(tokenizer).__name__}) is not a "
                "fast tokenizer; the ONNX runtime reads tokenizer.json, which only fast "
                "tokenizers have."
            )
        backend.save(str(directory / _TOKENIZER_FILE))
        return {
            "type": "text",
            "tokenizer": _TOKENIZER_FILE,
            "max_length": int(self._max_tokens),
            "pad_id": int(tokenizer.pad_token_id or 0),
            "pad_token": str(tokenizer.pad_token or ""),
            "pad_type_id": int(getattr(tokenizer, "pad_token_type_id", 0) or 0),
            "padding_side": str(tokenizer.padding_side),
            "truncation_side": str(tokenizer.truncation_side),
        }

    # -- persistence ----------------------------------------------------------------------

    def hyper_parameters(self) -> dict[str, Any]:
        self.model  # noqa: B018 - pooling_ is known once built
        return {"max_length": self.max_length, "pooling": self._resolved_pooling,
                "model_kwargs": self.model_kwargs}

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write a transformers ``save_pretrained`` folder (+ ``ensemble.json``) atomically."""
        directory = Path(directory)
        model = self.model
        with quiet_transformers():  # no "Writing model shards" bar for one small file
            self._save(model, directory)
        return directory

    def _save(self, model: nn.Module, directory: Path) -> None:
        with atomic_directory(directory) as tmp:
            if isinstance(model, MeanPoolingClassifier):
                model.backbone.config.id2label = dict(enumerate(self.class_names))
                model.backbone.config.label2id = {n: i for i, n in enumerate(self.class_names)}
                model.backbone.save_pretrained(tmp)
                save_file({k: v.contiguous() for k, v in model.classifier.state_dict().items()},
                          str(tmp / _HEAD))
            else:
                model.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            self.write_metadata(tmp)

    @classmethod
    def load_saved(cls, directory: Path, metadata: Mapping[str, Any], *,
                   trust_remote_code: bool = False, **kwargs: Any) -> TextExpert:
        params = metadata.get("params") or {}
        pooling = params.get("pooling", "model")
        if pooling not in ("model", "mean"):
            raise ArtifactError(
                f"{directory}: unknown pooling {pooling!r} in ensemble.json; the expert was "
                "written by a newer version of ensemble."
            )
        expert = cls(
            str(metadata.get("checkpoint") or directory),
            metadata["class_names"],
            column=str(metadata["column"]),
            pretrained=False,
            max_length=int(params.get("max_length", 128)),
            pooling=pooling,
            trust_remote_code=trust_remote_code,
            model_kwargs=params.get("model_kwargs") or {},
            seed=int(metadata.get("seed", 0)),
        )
        expert._saved_dir = directory
        expert.restore_training_record(directory, metadata)
        return expert
