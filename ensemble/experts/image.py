"""``ImageExpert``: a timm image classifier fine-tuned on the shared label space."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import timm
import torch
from timm.data import create_transform, resolve_data_config
from torch import nn

from ..exceptions import CheckpointNotFoundError, ConfigError
from ._inputs import to_rgb_image
from .base import Batch, Expert

__all__ = ["ImageExpert"]


#: The ``timm.create_model`` argument that reads a weights file (with torch.load) even
#: when ``pretrained=False``; a saved expert's weights come from model.safetensors only.
_LOADS_WEIGHTS = "checkpoint_path"


def _jsonable(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}


class ImageExpert(Expert):
    """A timm classifier over images; preprocessing comes from the model's data config.

    ``checkpoint`` is any ``timm.create_model`` name (``"resnet18.a1_in1k"``,
    ``"hf-hub:timm/..."``, ``"local-dir:/path"``) or a local folder; with
    ``pretrained=True`` it is resolved through :mod:`ensemble.checkpoints`, so an offline
    mirror package can stand in for the Hub. ``image_size`` overrides the input
    resolution (useful for small images such as 64px emoji); ``augment`` turns on timm's
    training-time augmentation.

    Example:
        >>> expert = ImageExpert("test_resnet", ["cat", "dog"], pretrained=False)
        >>> expert.data_config["input_size"]
        (3, 160, 160)
    """

    modality = "image"

    def __init__(
        self,
        checkpoint: str,
        class_names: Sequence[str],
        *,
        pretrained: bool = True,
        image_size: int | None = None,
        augment: bool = False,
        data_config: Mapping[str, Any] | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
        input_column: str = "image",
        seed: int = 0,
    ) -> None:
        super().__init__(checkpoint, class_names, input_column=input_column, seed=seed)
        if image_size is not None and (not isinstance(image_size, int) or image_size < 8):
            raise ConfigError(f"image_size must be an integer >= 8, got {image_size!r}.")
        self.pretrained = pretrained
        self.image_size = image_size
        self.augment = augment
        self.model_kwargs = dict(model_kwargs or {})
        source = checkpoint
        if pretrained:
            from ..checkpoints import resolve_image_checkpoint

            source = resolve_image_checkpoint(checkpoint)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            try:
                self.model = timm.create_model(source, pretrained=pretrained,
                                               num_classes=self.num_classes, **self.model_kwargs)
            except RuntimeError as err:
                if "Unknown model" in str(err):
                    raise CheckpointNotFoundError(
                        f"timm has no model {checkpoint!r}; see timm.list_models() for names."
                    ) from err
                raise
        # oneDNN's (and cuDNN's) convolutions are faster in this layout, in training and in
        # inference (~1.3x, benchmarks/predict_overhead.py); values, saved files and the
        # fingerprint are the same as in the default layout.
        self.model.to(memory_format=torch.channels_last)
        self.architecture = str(self.model.pretrained_cfg.get("architecture") or checkpoint)
        resolved = resolve_data_config({}, model=self.model)
        if image_size is not None:
            resolved["input_size"] = (3, image_size, image_size)
        resolved.update(data_config or {})
        self.data_config: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in resolved.items()
        }
        self._eval_transform = create_transform(**self.data_config, is_training=False)
        self._train_transform = (create_transform(**self.data_config, is_training=True)
                                 if augment else self._eval_transform)

    def _collate_inputs(self, values: list[Any], ids: list[str], *, train: bool) -> Batch:
        transform = self._train_transform if train else self._eval_transform
        images = [transform(to_rgb_image(value, ident)) for value, ident in zip(values, ids,
                                                                               strict=True)]
        return {"pixel_values": torch.stack(images)}

    def _forward(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return model(batch["pixel_values"])

    def _classifier(self) -> nn.Module:
        return self.model.get_classifier()

    def _init_params(self) -> dict[str, Any]:
        return {
            "architecture": self.architecture,
            "image_size": self.image_size,
            "augment": self.augment,
            "data_config": _jsonable(self.data_config),
            "model_kwargs": self.model_kwargs,
        }

    @classmethod
    def _from_saved(cls, directory: Path, config: Mapping[str, Any], **kwargs: Any) -> Expert:
        params = config["params"]
        model_kwargs = {k: v for k, v in (params.get("model_kwargs") or {}).items()
                        if k != _LOADS_WEIGHTS}
        return cls(
            params["architecture"],
            config["class_names"],
            pretrained=False,
            image_size=params.get("image_size"),
            augment=params.get("augment", False),
            data_config=params.get("data_config"),
            model_kwargs=model_kwargs,
            input_column=config.get("input_column", "image"),
            seed=config.get("seed", 0),
        )
