"""``ImageExpert`` (kind ``timm``): a timm image classifier fine-tuned on the label space.

A saved image expert is also a timm ``local-dir`` model folder: ``config.json``
(architecture, num_classes, label_names, model_args, pretrained_cfg with the data config)
and ``model.safetensors``, so ``timm.create_model("local-dir:<folder>", pretrained=True)``
loads it without this library. ``ensemble.json`` holds the ensemble's own metadata.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import timm
import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from timm.data import create_transform, resolve_data_config
from torch import nn

from .._io import atomic_directory, read_json, write_json
from ..exceptions import ArtifactError, CheckpointNotFoundError, ConfigError, ExportError
from ..labels import LabelSpace
from ..modalities.image import to_rgb_image
from .registry import register_expert
from .torch_expert import Batch, TorchExpert

__all__ = ["ImageExpert"]

_TIMM_CONFIG = "config.json"
_WEIGHTS = "model.safetensors"
#: The ``timm.create_model`` argument that reads a weights file (with torch.load) even
#: when ``pretrained=False``; a saved expert's weights come from model.safetensors only.
_LOADS_WEIGHTS = "checkpoint_path"


def _jsonable(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}


def _is_to_tensor(transform: Any) -> bool:
    from torchvision import transforms

    return isinstance(transform, transforms.ToTensor) or type(transform).__name__ == "MaybeToTensor"


def _transform_step(transform: Any) -> dict[str, Any]:
    """One torchvision/timm eval transform as a JSON step of the ONNX runtime's image
    preprocessing (:mod:`ensemble.runtime.preprocessing`)."""
    from torchvision import transforms

    name = type(transform).__name__
    if isinstance(transform, transforms.Resize):
        size = transform.size
        return {"op": "resize", "size": [size] if isinstance(size, int) else list(size),
                "interpolation": transform.interpolation.value,
                "max_size": transform.max_size}
    if isinstance(transform, transforms.CenterCrop):
        return {"op": "center_crop", "size": list(transform.size)}
    if isinstance(transform, transforms.Normalize):
        return {"op": "normalize", "mean": [float(v) for v in transform.mean],
                "std": [float(v) for v in transform.std]}
    raise ExportError(
        f"the image transform {name} has no ONNX-runtime equivalent (supported: Resize, "
        "CenterCrop, ToTensor, Normalize); build the expert with data_config "
        "crop_mode='center'."
    )


@register_expert("timm")
class ImageExpert(TorchExpert):
    """A timm classifier over images; preprocessing comes from the model's data config.

    ``checkpoint`` is any ``timm.create_model`` name (``"resnet18.a1_in1k"``,
    ``"hf-hub:timm/..."``, ``"local-dir:/path"``) or a local folder; with
    ``pretrained=True`` it is resolved through :mod:`ensemble.checkpoints`, so an offline
    mirror package can stand in for the Hub. ``image_size`` overrides the input
    resolution (useful for small images such as 64px emoji); ``augment`` turns on timm's
    training-time augmentation. Nothing is built or downloaded until first use.

    Example:
        >>> expert = ImageExpert("test_resnet", ["cat", "dog"], pretrained=False)
        >>> expert.data_config["input_size"]
        (3, 160, 160)
    """

    modality = "image"
    #: ImageNet-pretrained convolutional bodies fine-tune well at 1e-3 (AdamW; the fresh head
    #: at 10x): at transformers' 5e-5 the emoji image expert reached 0.631 against 0.770.
    default_training: ClassVar[Mapping[str, Any]] = {"learning_rate": 1e-3}

    def __init__(
        self,
        checkpoint: str,
        labels: LabelSpace | Sequence[str],
        *,
        column: str = "image",
        pretrained: bool = True,
        image_size: int | None = None,
        augment: bool = False,
        data_config: Mapping[str, Any] | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(checkpoint, labels, column=column, seed=seed)
        self.pretrained = pretrained
        self.image_size = image_size
        self.augment = augment
        self.data_config_override = dict(data_config or {})
        self.model_kwargs = dict(model_kwargs or {})
        self._weights_dir: Path | None = None  # set when loading a saved expert

    # -- building -------------------------------------------------------------------------

    def build_model(self) -> nn.Module:
        size = self.image_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 8):
            raise ConfigError(f"image_size must be an integer >= 8, got {size!r}.")
        source = self.checkpoint
        pretrained = self.pretrained and self._weights_dir is None
        if pretrained:
            from ..checkpoints import resolve_image_checkpoint

            source = resolve_image_checkpoint(self.checkpoint)
        try:
            model = timm.create_model(source, pretrained=pretrained,
                                      num_classes=self.num_classes, **self.model_kwargs)
        except RuntimeError as err:
            if "Unknown model" in str(err):
                raise CheckpointNotFoundError(
                    f"timm has no model {self.checkpoint!r}; see timm.list_models() for names."
                ) from err
            raise
        # oneDNN's (and cuDNN's) convolutions are faster in this layout, in training and in
        # inference (~1.3x, benchmarks/predict_overhead.py); values, saved files and the
        # fingerprint are the same as in the default layout.
        model.to(memory_format=torch.channels_last)
        resolved = resolve_data_config({}, model=model)
        if size is not None:
            resolved["input_size"] = (3, size, size)
        resolved.update(self.data_config_override)
        self._data_config = {k: tuple(v) if isinstance(v, list) else v
                             for k, v in resolved.items()}
        self._eval_transform = create_transform(**self._data_config, is_training=False)
        self._train_transform = (create_transform(**self._data_config, is_training=True)
                                 if self.augment else self._eval_transform)
        self._architecture = str(model.pretrained_cfg.get("architecture") or self.checkpoint)
        return model

    @property
    def data_config(self) -> dict[str, Any]:
        """timm's resolved data config (input size, mean, std, crop, interpolation)."""
        self.model  # noqa: B018 - builds the model and its preprocessing on first use
        return self._data_config

    @property
    def architecture(self) -> str:
        self.model  # noqa: B018
        return self._architecture

    # -- the torch hooks ------------------------------------------------------------------

    def collate_inputs(self, values: list[Any], ids: list[str], *, train: bool) -> Batch:
        self.model  # noqa: B018
        transform = self._train_transform if train else self._eval_transform
        images = [transform(to_rgb_image(value, ident))
                  for value, ident in zip(values, ids, strict=True)]
        return {"pixel_values": torch.stack(images)}

    def forward(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return model(batch["pixel_values"])

    def classifier(self) -> nn.Module:
        return self.model.get_classifier()

    def feature_size(self) -> int:
        return int(getattr(self.model, "num_features", 0) or super().feature_size())

    # -- export ---------------------------------------------------------------------------

    #: int8 leaves convolutions in float32: ONNX Runtime's dynamic ConvInteger ran the
    #: quickstart's EfficientNet-Lite0 13x slower than float32 and flipped 7% of its
    #: argmaxes (benchmarks, docs/export.md); only the classifier's MatMul/Gemm go int8.
    int8_op_types = ("MatMul", "Gemm")

    def _export_split(self) -> tuple[list[Any], list[Any]]:
        """The eval transform split at ``ToTensor``: the PIL steps before it (the runtime
        replays them) and the tensor steps after it (they go into the graph)."""
        self.model  # noqa: B018
        transforms = list(self._eval_transform.transforms)
        cut = next((i for i, t in enumerate(transforms) if _is_to_tensor(t)), None)
        if cut is None:
            raise ExportError("the image transform has no ToTensor step; it cannot be split "
                              "into PIL steps and graph steps.")
        return transforms[:cut], transforms[cut + 1:]

    def export_inputs(self) -> dict[str, torch.Tensor]:
        """Example ``pixels``: uint8 ``[N, H, W, 3]`` after the PIL steps (resize, crop); the
        graph does what follows (scale to [0, 1], normalise, NCHW), ONNX Runtime being
        faster at it than numpy."""
        from PIL import Image

        pil_steps, _ = self._export_split()
        examples = [Image.new("RGB", (48, 40), (200, 30, 30)),
                    Image.new("RGB", (40, 56), (20, 90, 220))]
        pixels = []
        for image in examples:
            for step in pil_steps:
                image = step(image)
            pixels.append(torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()))
        return {"pixels": torch.stack(pixels)}

    def export_batch(self, tensors: Mapping[str, torch.Tensor]) -> Batch:
        _, tensor_steps = self._export_split()
        values = tensors["pixels"].permute(0, 3, 1, 2).to(torch.float32) / 255.0
        for step in tensor_steps:
            if type(step).__name__ != "Normalize":
                raise ExportError(f"the image transform {type(step).__name__} after ToTensor "
                                  "has no export; only Normalize is supported there.")
            # From the data config's plain floats: reading the transform's tensors (or
            # calling it: it checks std == 0) would be data-dependent while tracing.
            config = self.data_config
            mean = torch.tensor(config["mean"], dtype=torch.float32).view(1, -1, 1, 1)
            std = torch.tensor(config["std"], dtype=torch.float32).view(1, -1, 1, 1)
            values = (values - mean) / std
        return {"pixel_values": values}

    def export_preprocessing(self, directory: Path) -> dict[str, Any]:
        """The PIL part of the eval transform as JSON steps the torch-free runtime replays
        (the graph holds the rest; ``in_graph`` records it for other runtimes)."""
        pil_steps, tensor_steps = self._export_split()
        return {"type": "image", "steps": [_transform_step(t) for t in pil_steps],
                "output": "uint8 NHWC",
                "in_graph": [{"op": "to_tensor"}, *(_transform_step(t) for t in tensor_steps)]}

    # -- persistence ----------------------------------------------------------------------

    def hyper_parameters(self) -> dict[str, Any]:
        return {
            "architecture": self.architecture,
            "image_size": self.image_size,
            "augment": self.augment,
            "data_config": _jsonable(self.data_config),
            "model_kwargs": self.model_kwargs,
        }

    def timm_config(self) -> dict[str, Any]:
        """The ``config.json`` timm's ``local-dir:`` source reads."""
        pretrained_cfg = {k: v for k, v in dict(self.model.pretrained_cfg).items()
                          if isinstance(v, (str, int, float, bool, list, tuple)) and v is not None
                          and k not in ("file", "source", "hf_hub_id", "url", "state_dict")}
        pretrained_cfg.update(_jsonable(self.data_config))
        pretrained_cfg.update(num_classes=self.num_classes, label_names=self.class_names,
                              architecture=self.architecture)
        return {
            "architecture": self.architecture,
            "num_classes": self.num_classes,
            "num_features": int(getattr(self.model, "num_features", 0) or 0),
            "label_names": self.class_names,
            "model_args": {k: v for k, v in self.model_kwargs.items() if k != _LOADS_WEIGHTS},
            "pretrained_cfg": _jsonable(pretrained_cfg),
        }

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write a timm local-dir folder (+ ``ensemble.json``) atomically."""
        directory = Path(directory)
        with atomic_directory(directory) as tmp:
            save_model(self.model, str(tmp / _WEIGHTS))
            write_json(tmp / _TIMM_CONFIG, self.timm_config())
            self.write_metadata(tmp)
        return directory

    @classmethod
    def load_saved(cls, directory: Path, metadata: Mapping[str, Any],
                   **kwargs: Any) -> ImageExpert:
        params = metadata.get("params") or {}
        timm_config = read_json(directory / _TIMM_CONFIG)
        model_kwargs = {k: v for k, v in (params.get("model_kwargs") or {}).items()
                        if k != _LOADS_WEIGHTS}
        expert = cls(
            str(timm_config.get("architecture") or params.get("architecture")),
            metadata["class_names"],
            column=str(metadata["column"]),
            pretrained=False,
            image_size=params.get("image_size"),
            augment=bool(params.get("augment", False)),
            data_config=params.get("data_config"),
            model_kwargs=model_kwargs,
            seed=int(metadata.get("seed", 0)),
        )
        expert._weights_dir = directory
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
        # The model is built (from the architecture); record where its weights came from.
        expert._checkpoint = str(metadata.get("checkpoint") or expert.checkpoint)
        expert.restore_training_record(directory, metadata)
        return expert
