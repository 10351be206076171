"""Raw inputs -> the tensors an exported expert graph reads, without torch.

Each exported torch expert describes its preprocessing as JSON (``"type"`` names the entry
here): images replay the expert's eval transform with PIL and numpy (the same PIL resize
torchvision calls, so pixels match), texts run the expert's own ``tokenizer.json`` with
``tokenizers`` and the padding/truncation settings it was collated with.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
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


@functools.cache
def _thread_pool() -> ThreadPoolExecutor:
    """One pool for the image steps of every preprocessor (PIL releases the GIL)."""
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1,
                              thread_name_prefix="ensemble-preprocess")


@PREPROCESSORS.register("image")
class ImagePreprocessor:
    """Replays resize / center_crop steps with PIL, images in parallel threads, and stacks
    the uint8 ``[N, H, W, 3]`` pixels the graph reads (it scales and normalises them)."""

    def __init__(self, spec: Mapping[str, Any], directory: Path,
                 input_names: Sequence[str]) -> None:
        self.steps = [dict(step) for step in spec["steps"]]
        ops = [step.get("op") for step in self.steps]
        if spec.get("output") != "uint8 NHWC" or not ops or any(
                op not in ("resize", "center_crop") for op in ops):
            raise ValueError(f"unsupported image steps {ops!r} with output "
                             f"{spec.get('output')!r}: expected resize/center_crop steps "
                             "giving uint8 NHWC pixels")
        last = self.steps[-1]
        if not (last["op"] == "center_crop" or len(last.get("size", ())) == 2):
            raise ValueError("the image steps must end in a fixed size (a center_crop, or a "
                             "resize to height and width)")
        for step in self.steps:
            if step["op"] == "resize":
                step["resample"] = _RESAMPLING[str(step["interpolation"])]
        self.name = input_names[0]

    def _pixels(self, value: Any, ident: str) -> np.ndarray:
        image = to_rgb_image(value, ident)
        for step in self.steps:
            if step["op"] == "resize":
                size = _resized_size(*image.size, step["size"], step.get("max_size"))
                if size != image.size:
                    image = image.resize(size, step["resample"])
            else:
                image = _center_crop(image, *step["size"])
        return np.asarray(image, dtype=np.uint8)

    def __call__(self, values: Sequence[Any], ids: Sequence[str]) -> dict[str, np.ndarray]:
        if len(values) > 1:
            pixels = list(_thread_pool().map(self._pixels, values, ids))
        else:
            pixels = [self._pixels(v, i) for v, i in zip(values, ids, strict=True)]
        return {self.name: np.stack(pixels)}


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
