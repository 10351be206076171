"""``AudioExpert`` (kind ``transformers-audio``): a Hugging Face audio classifier on the labels.

``AutoModelForAudioClassification`` (wav2vec2, HuBERT, WavLM, AST, Whisper-encoder, ...) with
the checkpoint's own ``AutoFeatureExtractor``. Clips are read by the audio modality
(:func:`~ensemble.modalities.to_waveform`: files, bytes, arrays, ``datasets.Audio`` values),
mixed down to mono, cut to ``max_duration`` seconds and resampled to the extractor's rate. A
saved audio expert is a transformers ``save_pretrained`` folder (``config.json`` with
``id2label``, ``model.safetensors``, ``preprocessor_config.json``) plus ``ensemble.json``, so
``AutoModelForAudioClassification.from_pretrained(<folder>)`` loads it without this library.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from safetensors import SafetensorError
from torch import nn
from transformers import AutoConfig, AutoFeatureExtractor, AutoModelForAudioClassification

from .._io import atomic_directory
from ..exceptions import ArtifactError, ConfigError, ExportError
from ..labels import LabelSpace
from ..modalities import get_modality
from ..modalities.audio import to_waveform
from .hf_text import quiet_transformers
from .registry import register_expert
from .torch_expert import Batch, TorchExpert

__all__ = ["AudioExpert", "Padding"]

#: How a batch of waveforms is padded (see :class:`AudioExpert`).
Padding = Literal["auto", "longest", "max_duration"]
_PADDINGS = ("auto", "longest", "max_duration")


@register_expert("transformers-audio")
class AudioExpert(TorchExpert):
    """``AutoModelForAudioClassification`` + the checkpoint's ``AutoFeatureExtractor``.

    ``checkpoint`` is a Hub id or a local folder (config, weights and
    ``preprocessor_config.json``), resolved through :mod:`ensemble.checkpoints`.
    ``id2label``/``label2id`` come from the label space. Each clip is mixed down to mono,
    cut to ``max_duration`` seconds (longer clips are cut, not refused; a long file is only
    read that far) and resampled to the feature extractor's ``sampling_rate``.

    ``padding`` says how waveform models (wav2vec2, HuBERT, WavLM: extractors that pass the
    samples through, one value per sample) see a batch: ``"longest"`` pads to the longest
    clip and passes the attention mask, ``"max_duration"`` pads every clip to
    ``max_duration``. ``"auto"`` (the default) is ``"longest"`` when the extractor returns
    attention masks
    (``return_attention_mask``: models trained with masks) and ``"max_duration"`` when it
    does not (wav2vec2-base-like models with group norm, trained on zero-padded clips: a
    fixed length keeps a clip's logits independent of its batch). Spectrogram extractors
    (AST, Whisper) pad to their own fixed length. Clips shorter than the model's receptive
    field are padded with silence to it.

    ``freeze_feature_encoder`` (default on) keeps the convolutional feature encoder of
    wav2vec2-style models fixed during fine-tuning, as transformers' audio-classification
    example does. ``trust_remote_code`` stays off unless you turn it on.

    Example:
        >>> expert = AudioExpert("path/to/tiny-wav2vec2", ["dog", "cat"])  # doctest: +SKIP
        >>> expert.predict_logits([{"array": wave, "sampling_rate": 16000}]).shape  # doctest: +SKIP
        (1, 2)
    """

    modality = "audio"
    #: wav2vec2/HuBERT fine-tuning recipes use 3e-5 (transformers' audio-classification
    #: example on keyword spotting); 5e-5, the text default, is at the edge where wav2vec2
    #: fine-tuning diverges. The fresh head still gets 10x (``head_learning_rate``).
    default_training: ClassVar[Mapping[str, Any]] = {"learning_rate": 3e-5}

    def __init__(
        self,
        checkpoint: str,
        labels: LabelSpace | Sequence[str],
        *,
        column: str = "audio",
        pretrained: bool = True,
        max_duration: float = 10.0,
        padding: Padding = "auto",
        freeze_feature_encoder: bool = True,
        trust_remote_code: bool = False,
        model_kwargs: Mapping[str, Any] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(checkpoint, labels, column=column, seed=seed)
        self.pretrained = pretrained
        self.max_duration = max_duration
        self.padding = padding
        self.freeze_feature_encoder = freeze_feature_encoder
        self.trust_remote_code = trust_remote_code
        self.model_kwargs = dict(model_kwargs or {})
        self._saved_dir: Path | None = None  # set when loading a saved expert

    # -- the model and its feature extractor ----------------------------------------------

    def _check_options(self) -> None:
        duration = self.max_duration
        if isinstance(duration, bool) or not isinstance(duration, (int, float)) \
                or not math.isfinite(duration) or duration <= 0:
            raise ConfigError(f"max_duration must be a positive number of seconds, got "
                              f"{duration!r}.")
        if self.padding not in _PADDINGS:
            raise ConfigError(f"padding is {self.padding!r}; choose one of {_PADDINGS}.")

    def build_model(self) -> nn.Module:
        self._check_options()
        if self._saved_dir is not None:
            return self._build(self._saved_dir, pretrained=False)
        from ..checkpoints import resolve_checkpoint_for

        source = resolve_checkpoint_for("transformers-audio", self.checkpoint)
        return self._build(source, pretrained=self.pretrained)

    @property
    def feature_extractor(self) -> Any:
        """The checkpoint's own feature extractor (loaded with the model)."""
        self.model  # noqa: B018 - builds model and extractor on first use
        return self._extractor

    @property
    def sampling_rate(self) -> int:
        """The rate clips are resampled to: the feature extractor's ``sampling_rate``."""
        self.model  # noqa: B018
        return self._sampling_rate

    @property
    def padding_(self) -> str:
        """The padding in use (``"auto"`` resolved on build; ``"fixed"`` for spectrogram
        extractors, which pad to their own length)."""
        self.model  # noqa: B018
        return self._resolved_padding

    def _build(self, source: str | Path, *, pretrained: bool) -> nn.Module:
        saved = self._saved_dir is not None
        remote = self.trust_remote_code
        config = AutoConfig.from_pretrained(
            source,
            num_labels=self.num_classes,
            id2label=dict(enumerate(self.class_names)),
            label2id={name: i for i, name in enumerate(self.class_names)},
            trust_remote_code=remote,
            **({} if saved else self.model_kwargs),
        )
        config.problem_type = "single_label_classification"
        if saved:
            model = self._load_saved_model(source, config)
        elif pretrained:
            model = self._load_pretrained(source, config)
        else:
            model = AutoModelForAudioClassification.from_config(config, trust_remote_code=remote)
        try:
            self._extractor = AutoFeatureExtractor.from_pretrained(source,
                                                                   trust_remote_code=remote)
        except (OSError, ValueError) as err:
            raise ArtifactError(
                f"{source} has no usable feature extractor (preprocessor_config.json): {err}; "
                "save one with feature_extractor.save_pretrained(folder)."
            ) from err
        rate = getattr(self._extractor, "sampling_rate", None)
        if isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0:
            raise ConfigError(f"the feature extractor of {self.checkpoint!r} has no positive "
                              f"integer sampling_rate (got {rate!r}).")
        self._sampling_rate = rate
        self._waveform_input = _reads_waveforms(self._extractor, rate)
        self._use_mask = bool(getattr(self._extractor, "return_attention_mask", False))
        if not self._waveform_input:
            self._resolved_padding = "fixed"
        elif self.padding == "auto":
            self._resolved_padding = "longest" if self._use_mask else "max_duration"
        else:
            self._resolved_padding = self.padding
        self._min_samples = _min_samples(model.config)
        if self.freeze_feature_encoder and callable(getattr(model, "freeze_feature_encoder",
                                                            None)):
            model.freeze_feature_encoder()
        self._head = self.last_class_layer(model, "an audio-classification")
        return model

    def _load_saved_model(self, source: str | Path, config: Any) -> nn.Module:
        """The fine-tuned model of a folder written by :meth:`save_pretrained`."""
        try:
            with quiet_transformers():
                return AutoModelForAudioClassification.from_pretrained(
                    source, config=config, trust_remote_code=self.trust_remote_code)
        except (OSError, RuntimeError, ValueError, KeyError, SafetensorError) as err:
            raise ArtifactError(f"{Path(source) / 'model.safetensors'} (the saved audio model) "
                                f"cannot be loaded: {err}; re-save the expert.") from err

    def _load_pretrained(self, source: str | Path, config: Any) -> nn.Module:
        """Load the backbone; warn only when weights other than the new head are missing
        (the head, and a wav2vec2-style projector, are expected to start fresh)."""
        with quiet_transformers():
            model, info = AutoModelForAudioClassification.from_pretrained(
                source, config=config, ignore_mismatched_sizes=True,
                trust_remote_code=self.trust_remote_code, output_loading_info=True,
            )
        fresh = ("classifier.", "projector.")
        missing = [key for key in info.get("missing_keys", ()) if not key.startswith(fresh)]
        self.warn_missing_weights(source, missing)
        return model

    # -- reading a dataset without datasets' own audio decoding ----------------------------

    def input_view(self, data: Any) -> Any:
        """``data`` with a decoding ``Audio`` column cast to ``decode=False``: the clips are
        decoded here (soundfile), not by ``datasets`` (which needs torchcodec)."""
        if not hasattr(data, "column_names") or self.column not in data.column_names:
            return data
        feature = data.features[self.column]
        if getattr(feature, "decode", False) and get_modality("audio").matches(feature):
            return data.cast_column(self.column, type(feature)(decode=False))
        return data

    # -- the torch hooks ------------------------------------------------------------------

    def waveforms(self, values: Sequence[Any], ids: Sequence[str]) -> list[np.ndarray]:
        """Mono float32 waveforms at :attr:`sampling_rate`, cut to ``max_duration`` and
        padded with silence to the model's receptive field."""
        rate = self.sampling_rate
        out = []
        for value, ident in zip(values, ids, strict=True):
            wave = to_waveform(value, ident, sampling_rate=rate,
                               max_duration=self.max_duration)["array"]
            if wave.shape[0] < self._min_samples:
                wave = np.pad(wave, (0, self._min_samples - wave.shape[0]))
            out.append(wave)
        return out

    def collate_inputs(self, values: list[Any], ids: list[str], *, train: bool) -> Batch:
        waves = self.waveforms(values, ids)
        options: dict[str, Any] = {"sampling_rate": self.sampling_rate, "return_tensors": "pt"}
        if self._waveform_input:
            if self._resolved_padding == "longest":
                longest = max(len(w) for w in waves)
                options.update(padding="max_length", max_length=longest)
            else:
                fixed = max(math.ceil(self.max_duration * self.sampling_rate - 1e-9),
                            self._min_samples)
                options.update(padding="max_length", max_length=fixed, truncation=True)
            options["return_attention_mask"] = self._use_mask
        encoded = self.feature_extractor(waves, **options)
        return {"inputs": dict(encoded)}

    def forward(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return model(**batch["inputs"]).logits

    def classifier(self) -> nn.Module:
        """The final linear layer. Its input, the pre-logit features, is for wav2vec2-style
        models the attention-masked mean over time of the projector's output
        (``classifier_proj_size`` wide)."""
        self.model  # noqa: B018
        return self._head

    # -- export ---------------------------------------------------------------------------

    def export_onnx(self, directory: Path) -> dict[str, Any]:
        """Refused: the torch-free runtime cannot prepare audio yet (see the message)."""
        raise ExportError(
            f"the {self.registry_name} expert on column {self.column!r} has no ONNX export: "
            "the torch-free runtime has no audio preprocessing (decoding files, resampling, "
            "the feature extractor's normalisation and padding), so an exported graph could "
            "not be fed. Predict with FusionPredictor (torch) instead, or leave this expert "
            "out of the predictor you export."
        )

    # -- persistence ----------------------------------------------------------------------

    def hyper_parameters(self) -> dict[str, Any]:
        return {"max_duration": self.max_duration, "padding": self.padding,
                "freeze_feature_encoder": self.freeze_feature_encoder,
                "model_kwargs": self.model_kwargs}

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write a transformers ``save_pretrained`` folder (+ ``ensemble.json``) atomically."""
        directory = Path(directory)
        model = self.model
        with quiet_transformers(), atomic_directory(directory) as tmp:
            model.save_pretrained(tmp)
            self.feature_extractor.save_pretrained(tmp)
            self.write_metadata(tmp)
        return directory

    @classmethod
    def load_saved(cls, directory: Path, metadata: Mapping[str, Any], *,
                   trust_remote_code: bool = False, **kwargs: Any) -> AudioExpert:
        params = metadata.get("params") or {}
        expert = cls(
            str(metadata.get("checkpoint") or directory),
            metadata["class_names"],
            column=str(metadata["column"]),
            pretrained=False,
            max_duration=float(params.get("max_duration", 10.0)),
            padding=params.get("padding", "auto"),
            freeze_feature_encoder=bool(params.get("freeze_feature_encoder", True)),
            trust_remote_code=trust_remote_code,
            model_kwargs=params.get("model_kwargs") or {},
            seed=int(metadata.get("seed", 0)),
        )
        expert._saved_dir = directory
        expert.restore_training_record(directory, metadata)
        return expert


def _reads_waveforms(extractor: Any, rate: int) -> bool:
    """Whether the extractor hands the model the samples themselves (wav2vec2-style, one
    value per sample: ours to pad) rather than a spectrogram (AST, Whisper: padded to the
    extractor's own length), found by running it on a tenth of a second of silence."""
    probe = np.zeros(max(1, rate // 10), dtype=np.float32)
    try:
        encoded = extractor([probe], sampling_rate=rate, return_tensors="np")
    except (TypeError, ValueError):
        return False
    names = list(getattr(extractor, "model_input_names", None) or encoded.keys())
    values = np.asarray(encoded.get(names[0], next(iter(encoded.values()))))
    return values.ndim == 2 and values.shape[-1] == probe.size


def _min_samples(config: Any) -> int:
    """The fewest samples a convolutional feature encoder (wav2vec2 family) turns into
    enough frames: one, or SpecAugment's ``mask_time_length`` when it masks in training."""
    kernels, strides = getattr(config, "conv_kernel", None), getattr(config, "conv_stride", None)
    if not kernels or not strides:
        return 1
    field = 1
    for kernel, stride in zip(reversed(list(kernels)), reversed(list(strides)), strict=False):
        field = (field - 1) * int(stride) + int(kernel)
    frames = 1
    if getattr(config, "apply_spec_augment", False) and \
            float(getattr(config, "mask_time_prob", 0.0) or 0.0) > 0:
        frames = max(1, int(getattr(config, "mask_time_length", 1) or 1))
    return field + (frames - 1) * math.prod(int(s) for s in strides)
