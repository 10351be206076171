"""Tiny, offline stand-ins for pretrained checkpoints: for tests, smoke runs and demos.

Nothing here is pretrained: the models are randomly initialised and exist so the whole
pipeline can run in seconds without network access.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

__all__ = ["SPECIAL_TOKENS", "build_tiny_text_checkpoint"]

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def build_tiny_text_checkpoint(
    directory: str | Path,
    words: Iterable[str],
    *,
    hidden_size: int = 32,
    num_layers: int = 2,
    seed: int = 0,
) -> Path:
    """Save a random tiny BERT and a word-level tokenizer over ``words`` like a Hub folder.

    The folder loads with ``AutoModelForSequenceClassification.from_pretrained`` and
    ``AutoTokenizer.from_pretrained``, so ``TextExpert(str(folder), names)`` works offline.

    Example:
        >>> path = build_tiny_text_checkpoint("/tmp/tiny-bert", ["red", "blue"])  # doctest: +SKIP
    """
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    tokens = [*SPECIAL_TOKENS, *sorted(set(words) - set(SPECIAL_TOKENS))]
    vocab = {token: i for i, token in enumerate(tokens)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_max_length=64,
    )
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=2, intermediate_size=2 * hidden_size, max_position_embeddings=64,
        num_labels=2,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = BertForSequenceClassification(config)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
