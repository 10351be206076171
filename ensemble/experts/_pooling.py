"""Mean pooling over token states for sentence-embedding checkpoints.

Sentence-transformers checkpoints (all-MiniLM-L6-v2, all-mpnet-base-v2, ...) were trained
so that the *mean* of the last hidden states is the sentence embedding; their ``[CLS]``
pooler is left over from masked-LM pre-training. :class:`MeanPoolingClassifier` puts the
classification head on that mean, which is what those checkpoints are good at.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

__all__ = ["MeanPoolingClassifier", "Pooling", "sentence_transformers_pooling"]

Pooling = Literal["auto", "model", "mean"]


def sentence_transformers_pooling(source: str | Path) -> Literal["model", "mean"]:
    """``"mean"`` when a checkpoint declares sentence-transformers mean pooling, else ``"model"``.

    Reads the sentence-transformers layout from a folder (or the Hub for a repo id):
    ``modules.json`` names the pooling module's folder, whose ``config.json`` sets
    ``pooling_mode_mean_tokens``.
    """
    try:
        modules = json.loads(_read(source, "modules.json"))
        for module in modules:
            if str(module.get("type", "")).endswith("Pooling"):
                folder = str(module.get("path", "")).strip("/")
                if ".." in folder.split("/"):
                    return "model"
                config = json.loads(_read(source, f"{folder}/config.json" if folder
                                          else "config.json"))
                return "mean" if config.get("pooling_mode_mean_tokens") else "model"
    except (OSError, ValueError, AttributeError, TypeError):
        return "model"
    return "model"


def _read(source: str | Path, relative: str) -> str:
    """A small file of a checkpoint folder, or of a Hub repo (cached download)."""
    root = Path(source)
    if root.is_dir():
        return (root / relative).read_text(encoding="utf-8")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return Path(hf_hub_download(str(source), relative)).read_text(encoding="utf-8")
    except HfHubHTTPError as err:
        raise OSError(str(err)) from err


class MeanPoolingClassifier(nn.Module):
    """A transformers encoder, the attention-masked mean of its last hidden states, a head.

    Returns a :class:`~transformers.modeling_outputs.SequenceClassifierOutput` so it is
    used exactly like an ``AutoModelForSequenceClassification`` model.
    """

    def __init__(self, backbone: nn.Module, num_labels: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.config = backbone.config
        hidden = int(self.config.hidden_size)
        rate = getattr(self.config, "classifier_dropout", None)
        if rate is None:
            rate = getattr(self.config, "hidden_dropout_prob", 0.1)
        self.dropout = nn.Dropout(float(rate))
        self.classifier = nn.Linear(hidden, num_labels)
        self.classifier.weight.data.normal_(mean=0.0, std=0.02)
        self.classifier.bias.data.zero_()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                **inputs: Any) -> SequenceClassifierOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        states = self.backbone(input_ids=input_ids, attention_mask=attention_mask,
                               **inputs).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return SequenceClassifierOutput(logits=self.classifier(self.dropout(pooled)))
