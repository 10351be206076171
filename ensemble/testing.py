"""Tiny, offline stand-ins for pretrained checkpoints: for tests, smoke runs and demos.

Nothing here is pretrained: the models are randomly initialised and exist so the whole
pipeline can run in seconds without network access.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

__all__ = ["SPECIAL_TOKENS", "build_tiny_audio_checkpoint", "build_tiny_text_checkpoint",
           "tone_clip"]

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
    return _save_random_model(directory, lambda: BertForSequenceClassification(config),
                              tokenizer, seed)


def build_tiny_audio_checkpoint(
    directory: str | Path,
    *,
    hidden_size: int = 16,
    num_layers: int = 1,
    sampling_rate: int = 16000,
    return_attention_mask: bool = True,
    seed: int = 0,
) -> Path:
    """Save a random tiny wav2vec2 audio classifier and its feature extractor like a Hub folder.

    Three small convolutions (a stride of 80 samples: 200 frames per second at 16 kHz),
    ``num_layers`` transformer layers ``hidden_size`` wide, and a ``Wav2Vec2FeatureExtractor``
    at ``sampling_rate`` that returns attention masks unless ``return_attention_mask=False``
    (then the expert pads every clip to ``max_duration``, as for wav2vec2-base). The folder
    loads with ``AutoModelForAudioClassification.from_pretrained`` and
    ``AutoFeatureExtractor.from_pretrained``, so ``create_expert("transformers-audio",
    str(folder), ...)`` works offline; about 6,000 parameters.

    Example:
        >>> path = build_tiny_audio_checkpoint("/tmp/tiny-wav2vec2")  # doctest: +SKIP
    """
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForSequenceClassification,
    )

    config = Wav2Vec2Config(
        hidden_size=hidden_size, num_hidden_layers=num_layers, num_attention_heads=2,
        intermediate_size=2 * hidden_size, conv_dim=(16, 16, 16), conv_stride=(5, 4, 4),
        conv_kernel=(10, 4, 4), feat_extract_norm="layer" if return_attention_mask else "group",
        num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2,
        classifier_proj_size=hidden_size, num_labels=2,
    )
    extractor = Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=sampling_rate, padding_value=0.0, do_normalize=True,
        return_attention_mask=return_attention_mask,
    )
    return _save_random_model(directory, lambda: Wav2Vec2ForSequenceClassification(config),
                              extractor, seed)


def _save_random_model(directory: str | Path, build: Callable[[], Any], preprocessor: Any,
                       seed: int) -> Path:
    """``build()`` under ``seed`` (the caller's random state untouched), saved with its
    tokenizer or feature extractor into ``directory`` like a Hub folder."""
    import torch

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    preprocessor.save_pretrained(directory)
    return directory


def tone_clip(frequency: float, *, seconds: float = 0.3, sampling_rate: int = 16000,
              noise: float = 0.05, seed: int = 0) -> dict[str, Any]:
    """A sine tone near ``frequency`` Hz (jittered by up to 10%, random phase and loudness)
    plus white noise, as ``{"array": float32, "sampling_rate": int}``: a learnable audio
    class for tests (tones a few octaves apart are told apart by a tiny model in seconds).

    Example:
        >>> clip = tone_clip(440.0, seconds=0.25)
        >>> clip["array"].shape, clip["sampling_rate"]
        ((4000,), 16000)
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * sampling_rate)) / sampling_rate
    pitch = frequency * rng.uniform(0.9, 1.1)
    wave = rng.uniform(0.3, 0.8) * np.sin(2 * np.pi * pitch * t + rng.uniform(0, 2 * np.pi))
    wave += noise * rng.standard_normal(t.size)
    return {"array": wave.astype(np.float32), "sampling_rate": int(sampling_rate)}
