"""Raw inputs -> the tensors an exported expert graph reads, without torch.

Each exported torch expert describes its preprocessing as JSON (``"type"`` names the entry
here): images replay the expert's eval transform with PIL and numpy (the same PIL resize
torchvision calls, so pixels match), texts run the expert's own ``tokenizer.json`` with
``tokenizers`` and the padding/truncation settings it was collated with.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..exceptions import ArtifactError
from ..modalities.image import to_rgb_image
from ..modalities.text import to_text
from ..registry import Registry

__all__ = ["PREPROCESSORS", "ImagePreprocessor", "Preprocessor", "TextPreprocessor",
           "create_preprocessor"]

Preprocessor = Callable[[Sequence[Any], Sequence[str]], dict[str, np.ndarray]]

#: Preprocessing kinds by the ``"type"`` of an exported expert's description.
PREPROCESSORS: Registry[type] = Registry("preprocessing type")

_RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


def create_preprocessor(spec: Mapping[str, Any], directory: Path,
                        input_names: Sequence[str]) -> Preprocessor:
    """The preprocessor an exported expert's ``spec`` describes (files in ``directory``)."""
    try:
        cls = PREPROCESSORS.get(str(spec.get("type")))
        return cls(spec, directory, input_names)
    except (KeyError, TypeError, ValueError, LookupError) as err:
        raise ArtifactError(f"{directory}: invalid preprocessing description ({err}); export "
                            "again with this version of ensemble.") from err


def _resized_size(width: int, height: int, size: Sequence[int],
                  max_size: int | None) -> tuple[int, int]:
    """torchvision's Resize output size: ``[s]`` scales the shorter side to ``s``."""
    if len(size) == 2:
        return int(size[1]), int(size[0])
    short, long = min(width, height), max(width, height)
    new_short, new_long = int(size[0]), int(int(size[0]) * long / short)
    if max_size is not None and new_long > max_size:
        new_short, new_long = int(max_size * new_short / new_long), int(max_size)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def _center_crop(image: Image.Image, height: int, width: int) -> Image.Image:
    """torchvision's CenterCrop: zero-pad to at least the crop, then crop the centre."""
    w, h = image.size
    if width > w or height > h:
        padded = Image.new(image.mode, (max(w, width), max(h, height)))
        padded.paste(image, ((width - w) // 2 if width > w else 0,
                             (height - h) // 2 if height > h else 0))
        image, (w, h) = padded, padded.size
    top, left = round((h - height) / 2.0), round((w - width) / 2.0)
    return image.crop((left, top, left + width, top + height))


@PREPROCESSORS.register("image")
class ImagePreprocessor:
    """Replays resize / center_crop (PIL, per image), then to_tensor / normalize (numpy, on
    the whole batch at once: one fused multiply-add per pixel)."""

    def __init__(self, spec: Mapping[str, Any], directory: Path,
                 input_names: Sequence[str]) -> None:
        steps = [dict(step) for step in spec["steps"]]
        ops = [step.get("op") for step in steps]
        pil_ops = {"resize", "center_crop"}
        split = next((i for i, op in enumerate(ops) if op not in pil_ops), len(ops))
        if ops[split:] not in (["to_tensor"], ["to_tensor", "normalize"]) \
                or any(op not in pil_ops for op in ops[:split]):
            raise ValueError(f"unsupported image steps {ops!r}: expected resize/center_crop "
                             "steps, then to_tensor and an optional normalize")
        self.pil_steps = steps[:split]
        last = self.pil_steps[-1] if self.pil_steps else {}
        if not (last.get("op") == "center_crop" or len(last.get("size", ())) == 2):
            raise ValueError("the image steps must end in a fixed size (a center_crop, or a "
                             "resize to height and width)")
        for step in self.pil_steps:
            if step["op"] == "resize":
                step["resample"] = _RESAMPLING[str(step["interpolation"])]
        mean, std = np.zeros(3), np.ones(3)
        if ops[-1] == "normalize":
            mean = np.asarray(steps[-1]["mean"], dtype=np.float64)
            std = np.asarray(steps[-1]["std"], dtype=np.float64)
        # (x / 255 - mean) / std == x * scale - offset, per channel (last axis of HWC).
        self.scale = (1.0 / (255.0 * std)).astype(np.float32)
        self.offset = (mean / std).astype(np.float32)
        self.name = input_names[0]

    def _pixels(self, value: Any, ident: str) -> np.ndarray:
        image = to_rgb_image(value, ident)
        for step in self.pil_steps:
            if step["op"] == "resize":
                size = _resized_size(*image.size, step["size"], step.get("max_size"))
                if size != image.size:
                    image = image.resize(size, step["resample"])
            else:
                image = _center_crop(image, *step["size"])
        return np.asarray(image, dtype=np.uint8)

    def __call__(self, values: Sequence[Any], ids: Sequence[str]) -> dict[str, np.ndarray]:
        pixels = [self._pixels(v, i) for v, i in zip(values, ids, strict=True)]
        batch = np.stack(pixels).astype(np.float32)
        batch *= self.scale
        batch -= self.offset
        return {self.name: np.ascontiguousarray(batch.transpose(0, 3, 1, 2))}


@PREPROCESSORS.register("text")
class TextPreprocessor:
    """The expert's ``tokenizer.json`` with its padding and truncation settings."""

    def __init__(self, spec: Mapping[str, Any], directory: Path,
                 input_names: Sequence[str]) -> None:
        from tokenizers import Tokenizer

        path = directory / str(spec["tokenizer"])
        try:
            self.tokenizer = Tokenizer.from_file(str(path))
        except Exception as err:  # tokenizers raises a bare Exception on bad JSON
            raise ArtifactError(f"{path} is not a tokenizer file ({err}).") from err
        self.tokenizer.enable_truncation(int(spec["max_length"]),
                                         direction=str(spec.get("truncation_side", "right")))
        self.tokenizer.enable_padding(direction=str(spec.get("padding_side", "right")),
                                      pad_id=int(spec["pad_id"]),
                                      pad_type_id=int(spec.get("pad_type_id", 0)),
                                      pad_token=str(spec.get("pad_token", "[PAD]")))
        self.names = list(input_names)

    def __call__(self, values: Sequence[Any], ids: Sequence[str]) -> dict[str, np.ndarray]:
        texts = [to_text(v, i) for v, i in zip(values, ids, strict=True)]
        encodings = self.tokenizer.encode_batch(texts)
        columns = {
            "input_ids": [e.ids for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
            "token_type_ids": [e.type_ids for e in encodings],
        }
        return {name: np.asarray(columns[name], dtype=np.int64) for name in self.names}
