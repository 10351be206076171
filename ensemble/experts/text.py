"""``TextExpert``: a Hugging Face sequence classifier fine-tuned on the shared label space."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging as hf_logging

from ..exceptions import ArtifactError, ConfigError
from ._inputs import to_text
from ._pooling import MeanPoolingClassifier, Pooling, sentence_transformers_pooling
from .base import Batch, Expert

__all__ = ["TextExpert"]

_BACKBONE = "backbone"


class TextExpert(Expert):
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
        class_names: Sequence[str],
        *,
        pretrained: bool = True,
        max_length: int = 128,
        pooling: Pooling = "auto",
        trust_remote_code: bool = False,
        model_kwargs: Mapping[str, Any] | None = None,
        input_column: str = "text",
        seed: int = 0,
    ) -> None:
        super().__init__(checkpoint, class_names, input_column=input_column, seed=seed)
        if not isinstance(max_length, int) or max_length < 2:
            raise ConfigError(f"max_length must be an integer >= 2, got {max_length!r}.")
        if pooling not in ("auto", "model", "mean"):
            raise ConfigError(f"pooling is {pooling!r}; choose 'auto', 'model' or 'mean'.")
        self.pretrained = pretrained
        self.max_length = max_length
        self.pooling = pooling
        self.trust_remote_code = trust_remote_code
        self.model_kwargs = dict(model_kwargs or {})
        from ..checkpoints import resolve_text_checkpoint

        source = resolve_text_checkpoint(checkpoint)
        self._build(source, pretrained=pretrained)

    def _build(self, source: str | Path, *, pretrained: bool) -> None:
        self.pooling_ = (sentence_transformers_pooling(source) if self.pooling == "auto"
                         else self.pooling)
        config = AutoConfig.from_pretrained(
            source,
            num_labels=self.num_classes,
            id2label=dict(enumerate(self.class_names)),
            label2id={name: i for i, name in enumerate(self.class_names)},
            trust_remote_code=self.trust_remote_code,
            **self.model_kwargs,
        )
        config.problem_type = "single_label_classification"
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            if pretrained:
                self.model = self._load_pretrained(source, config)
            elif self.pooling_ == "mean":
                self.model = self._mean_pooling(
                    AutoModel.from_config(config, trust_remote_code=self.trust_remote_code))
            else:
                self.model = AutoModelForSequenceClassification.from_config(
                    config, trust_remote_code=self.trust_remote_code
                )
        self.tokenizer = AutoTokenizer.from_pretrained(
            source, trust_remote_code=self.trust_remote_code
        )
        # Never pad/truncate past what the model accepts (its tokenizer knows; transformers
        # uses a huge sentinel when it does not).
        limit = getattr(self.tokenizer, "model_max_length", None)
        self._max_tokens = (min(self.max_length, limit)
                            if isinstance(limit, int) and 0 < limit < 1_000_000_000
                            else self.max_length)
        self._head = self._find_head()

    def _load_pretrained(self, source: str | Path, config: Any) -> nn.Module:
        """Load the backbone; warn only when weights other than the new head are missing.

        A fresh classification head is expected (the checkpoint was trained on other
        labels), so transformers' own load report is silenced and replaced by a warning
        that names any *unexpected* gap, e.g. a body layer that was not in the checkpoint.
        """
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        model_class = AutoModel if self.pooling_ == "mean" else AutoModelForSequenceClassification
        try:
            model, info = model_class.from_pretrained(
                source, config=config, ignore_mismatched_sizes=True,
                trust_remote_code=self.trust_remote_code, output_loading_info=True,
            )
        finally:
            hf_logging.set_verbosity(verbosity)
            hf_logging.enable_progress_bar()
        head = {name for name, module in model.named_modules()
                if isinstance(module, nn.Linear) and module.out_features == self.num_classes}
        missing = [key for key in info.get("missing_keys", ())
                   if key.rsplit(".", 1)[0] not in head]
        if missing:
            warnings.warn(
                f"{source}: {len(missing)} backbone weight(s) were not in the checkpoint and "
                f"start random, e.g. {sorted(missing)[:5]!r}; check the checkpoint matches "
                "the architecture.",
                stacklevel=3,
            )
        return self._mean_pooling(model) if self.pooling_ == "mean" else model

    def _mean_pooling(self, backbone: nn.Module) -> nn.Module:
        # The [CLS] pooler gets no gradient under mean pooling; frozen, it cannot stall a
        # DistributedDataParallel reduction or collect weight decay.
        pooler = getattr(backbone, "pooler", None)
        if isinstance(pooler, nn.Module):
            pooler.requires_grad_(False)
        return MeanPoolingClassifier(backbone, self.num_classes)

    def _find_head(self) -> nn.Module:
        linear = [m for m in self.model.modules()
                  if isinstance(m, nn.Linear) and m.out_features == self.num_classes]
        if not linear:
            raise ConfigError(
                f"{type(self.model).__name__} has no linear layer with {self.num_classes} "
                "outputs; use a model class with a sequence-classification head."
            )
        return linear[-1]

    def _collate_inputs(self, values: list[Any], ids: list[str], *, train: bool) -> Batch:
        texts = [to_text(value, ident) for value, ident in zip(values, ids, strict=True)]
        encoded = self.tokenizer(texts, padding=True, truncation=True,
                                 max_length=self._max_tokens, return_tensors="pt")
        return {"inputs": dict(encoded)}

    def _forward(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return model(**batch["inputs"]).logits

    def _classifier(self) -> nn.Module:
        return self._head

    def _init_params(self) -> dict[str, Any]:
        return {"max_length": self.max_length, "pooling": self.pooling_,
                "model_kwargs": self.model_kwargs}

    def _save_extra(self, directory: Path) -> None:
        self.model.config.save_pretrained(directory / _BACKBONE)
        self.tokenizer.save_pretrained(directory / _BACKBONE)

    @classmethod
    def _from_saved(cls, directory: Path, config: Mapping[str, Any],
                    *, trust_remote_code: bool = False, **kwargs: Any) -> Expert:
        expert = cls.__new__(cls)
        Expert.__init__(expert, config["checkpoint"], config["class_names"],
                        input_column=config.get("input_column", "text"),
                        seed=config.get("seed", 0))
        params = config["params"]
        expert.pretrained = False
        expert.max_length = int(params.get("max_length", 128))
        expert.pooling = params.get("pooling", "model")
        if expert.pooling not in ("model", "mean"):
            raise ArtifactError(
                f"{directory}: unknown pooling {expert.pooling!r} in config.json; the expert "
                "was written by a newer version of ensemble."
            )
        expert.trust_remote_code = trust_remote_code
        # The saved backbone config already holds these; kept so a re-save records them.
        expert.model_kwargs = dict(params.get("model_kwargs") or {})
        expert._build(directory / _BACKBONE, pretrained=False)
        return expert
