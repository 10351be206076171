"""The image modality: raw values to RGB PIL images, image columns checked at load time.

:func:`to_rgb_image` turns a PIL image, a file path, encoded bytes, a ``{"bytes"|"path"}``
dict or an array into an RGB image; :func:`verify_image` decodes a stored value once to
prove that it is a readable image. :class:`ImageModality` makes a column of file paths an
``Image`` feature with absolute paths and decodes every image of every split when the data
is loaded, so a corrupt or truncated file fails before any training.

Example:
    >>> from PIL import Image
    >>> to_rgb_image(Image.new("L", (4, 4)), ident="ex-1").mode
    'RGB'
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..exceptions import InvalidImageError
from .base import (
    ColumnContext,
    Modality,
    encoded_file_digest,
    is_missing_scalar,
    register_modality,
    replace_column,
    with_resolved_paths,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_IMAGE_PIXELS",
    "ImageModality",
    "is_remote",
    "to_rgb_image",
    "verify_image",
]

#: Images larger than this many pixels are refused instead of exhausting memory.
MAX_IMAGE_PIXELS = 64_000_000
#: File name endings taken for images (used to tell file paths from prose).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff",
                            ".ppm", ".pgm", ".ico", ".jfif"})
_STRING_DTYPES = ("string", "large_string")
_UNREADABLE = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError)


def is_remote(path: str) -> bool:
    """Whether ``path`` is a URL (``scheme://...``) rather than a local file."""
    return "://" in path


def to_rgb_image(value: Any, ident: str) -> Image.Image:
    """Return ``value`` (PIL image, path, bytes, ``{"path"|"bytes"}`` dict or array) as RGB.

    Transparent images are composited on white; palette, grey, CMYK and 16-bit images are
    converted. Anything unreadable raises :class:`InvalidImageError` naming ``ident``.

    Example:
        >>> import numpy as np
        >>> to_rgb_image(np.zeros((2, 3), dtype=np.uint8), ident="row-0").size
        (3, 2)
    """
    image = _open_image(value, ident)
    what = _describe(value, ident)
    width, height = image.size
    if width < 1 or height < 1:
        raise InvalidImageError(f"{what} is empty ({width}x{height}).")
    if width * height > MAX_IMAGE_PIXELS:
        raise InvalidImageError(
            f"{what} is {width}x{height}, above the limit of {MAX_IMAGE_PIXELS} pixels; "
            "downscale it before prediction."
        )
    try:
        return _as_rgb(image)
    except (OSError, ValueError) as err:
        raise InvalidImageError(f"{what} (mode {image.mode}) cannot be decoded: {err}") from err


def _describe(value: Any, ident: str) -> str:
    """``image of example 'x'``, naming the file too when the image came from one."""
    if isinstance(value, dict) and not value.get("bytes") and value.get("path"):
        value = value["path"]
    if isinstance(value, (str, os.PathLike)):
        return f"image file {str(value)!r} of example {ident!r}"
    return f"image of example {ident!r}"


def _open_image(value: Any, ident: str) -> Image.Image:
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, dict):
        if value.get("bytes"):
            return _open_image(bytes(value["bytes"]), ident)
        if value.get("path"):
            return _open_image(value["path"], ident)
        raise InvalidImageError(f"image of example {ident!r} is a dict without 'bytes' or 'path'.")
    if isinstance(value, np.ndarray):
        try:
            return Image.fromarray(_array_to_uint8(value))
        except (TypeError, ValueError) as err:
            raise InvalidImageError(
                f"image of example {ident!r} is an array of shape {value.shape} and dtype "
                f"{value.dtype}; give HxW or HxWx3/4 values."
            ) from err
    if isinstance(value, (str, os.PathLike)):
        path = Path(value)
        if not path.is_file():
            raise InvalidImageError(
                f"image file {str(path)!r} of example {ident!r} does not exist; check the path."
            )
        source: Any = path
    elif isinstance(value, (bytes, bytearray)):
        source = io.BytesIO(value)
    else:
        raise InvalidImageError(
            f"image of example {ident!r} is a {type(value).__name__}; give a PIL image, a file "
            "path, encoded bytes or an array."
        )
    try:
        with warnings.catch_warnings():
            # PIL warns above its own limit; ours is lower and refuses with an error below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(source)
        if image.width * image.height <= MAX_IMAGE_PIXELS:  # else refused without decoding
            image.load()
    except Image.DecompressionBombError as err:
        raise InvalidImageError(f"{_describe(value, ident)} is too large: {err}") from err
    except _UNREADABLE as err:
        raise InvalidImageError(
            f"{_describe(value, ident)} cannot be read ({err}); the file is corrupt, "
            "truncated or not an image."
        ) from err
    return image


def _array_to_uint8(array: np.ndarray) -> np.ndarray:
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.dtype == np.uint8:
        return array
    values = array.astype(np.float64)
    if not np.isfinite(values).all():
        raise ValueError("array holds NaN/inf")
    if values.max(initial=0.0) <= 1.0 and values.min(initial=0.0) >= 0.0:
        values = values * 255.0
    elif array.dtype == np.uint16:
        values = values / 257.0
    return np.clip(np.round(values), 0, 255).astype(np.uint8)


def _as_rgb(image: Image.Image) -> Image.Image:
    image = ImageOps.exif_transpose(image) or image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        scale = 257.0 if array.max(initial=0.0) > 255 else 1.0
        image = Image.fromarray(np.clip(array / scale, 0, 255).astype(np.uint8), mode="L")
    if image.mode == "F":
        image = Image.fromarray(_array_to_uint8(np.asarray(image)), mode="L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB") if image.mode != "RGB" else image


def verify_image(stored: Any, where: str) -> None:
    """Decode a stored image (``{"bytes", "path"}``, bytes or a path) once, or raise.

    ``where`` names the example (e.g. ``"row 5 of split 'train'"``); the
    :class:`InvalidImageError` names it, the file and the fix. Remote URLs are not fetched.

    Example:
        >>> verify_image(b"not a png", where="row 0 of split 'train'")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ensemble.exceptions.InvalidImageError: row 0 of split 'train': image bytes cannot be read...
    """
    data = stored.get("bytes") if isinstance(stored, dict) else None
    path = stored.get("path") if isinstance(stored, dict) else None
    if isinstance(stored, (bytes, bytearray)):
        data = bytes(stored)
    elif isinstance(stored, (str, os.PathLike)):
        path = os.fspath(stored)
    if data is None and (path is None or is_remote(path)):
        return
    what = "image bytes" if data is not None else f"image file {path!r}"
    fix = ("replace or remove the file, or set the value to None to mark the image as "
           "missing" if data is None else "replace the image, or set it to None to mark it as "
           "missing")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data) if data is not None else path) as image:
                size = image.size
                image.verify()
            if size[0] * size[1] > MAX_IMAGE_PIXELS:
                raise InvalidImageError(
                    f"{where}: {what} is {size[0]}x{size[1]}, above the limit of "
                    f"{MAX_IMAGE_PIXELS} pixels; downscale it."
                )
            with Image.open(io.BytesIO(data) if data is not None else path) as image:
                image.load()
    except InvalidImageError:
        raise
    except Image.DecompressionBombError as err:
        raise InvalidImageError(f"{where}: {what} is too large ({err}); downscale it.") from err
    except _UNREADABLE as err:
        raise InvalidImageError(
            f"{where}: {what} cannot be read ({err or type(err).__name__}); it is corrupt, "
            f"truncated or not an image: {fix}."
        ) from err


def _looks_like_prose(value: str) -> bool:
    """A sentence rather than a file path: words separated by spaces and no file suffix."""
    text = value.strip()
    return " " in text and Path(text).suffix.lower() not in IMAGE_SUFFIXES


@register_modality("image")
class ImageModality(Modality):
    """Images: a ``datasets.Image`` column; values coerce to RGB ``PIL.Image.Image``.

    At load time file paths are resolved (against ``ColumnContext.base_dir``) and checked to
    exist, and every image of the column is decoded once (:func:`verify_image`).

    Example:
        >>> from datasets import Image
        >>> ImageModality().matches(Image())
        True
    """

    file_paths = True
    blank_is_missing = True

    def matches(self, feature: Any) -> bool:
        from datasets import Image as ImageFeature

        return isinstance(feature, ImageFeature)

    def accepts(self, feature: Any) -> bool:
        # image paths (strings) and {"bytes", "path"} dicts are read by coerce as well
        return self.matches(feature) or getattr(feature, "dtype", None) in ("string",
                                                                            "large_string") \
            or (isinstance(feature, dict) and set(feature) <= {"bytes", "path"})

    def coerce(self, value: Any, ident: str) -> Image.Image:
        return to_rgb_image(value, ident)

    def digest(self, value: Any) -> bytes:
        """The encoded image: its bytes, else the file's bytes, else the path or URL."""
        return encoded_file_digest(value)

    def prepare_column(self, dataset: Any, column: str, split: str,
                       context: ColumnContext | None = None) -> Any:
        """Make ``column`` an ``Image(decode=True)`` column with absolute, existing paths."""
        from datasets import Image as ImageFeature
        from datasets import Value

        context = context or ColumnContext(source=column)
        base_dir = context.base_dir or Path.cwd()
        feature = dataset.features[column]
        values = dataset.with_format("arrow")[column]
        if isinstance(feature, Value) and feature.dtype in _STRING_DTYPES:
            paths = values.to_pylist()
            storage = [None if is_missing_scalar(p) else
                       {"bytes": None, "path": self._checked_path(p, base_dir, split, row,
                                                                  paths, context)}
                       for row, p in enumerate(paths)]
            return replace_column(dataset, column, storage, ImageFeature())
        if isinstance(feature, ImageFeature):
            return self._resolve_stored_paths(dataset, column, feature, split, base_dir, context)
        if values.null_count == len(values):  # e.g. an empty csv column read as float64
            return replace_column(dataset, column, [None] * len(values), ImageFeature())
        raise InvalidImageError(
            f"{context.describe(split)} holds {feature} values, which are not images (file "
            f"paths, PIL images, image bytes or a datasets.Image feature). Declare that column "
            f"with its own modality (e.g. tabular or text){context.or_fix()}."
        )

    def _resolve_stored_paths(self, dataset: Any, column: str, feature: Any, split: str,
                              base_dir: Path, context: ColumnContext) -> Any:
        from datasets import Image as ImageFeature

        new_feature = ImageFeature(mode=feature.mode, decode=True)
        resolved = with_resolved_paths(
            dataset, column, new_feature,
            lambda path, row, paths: self._checked_path(path, base_dir, split, row, paths,
                                                        context))
        if resolved is not None:
            return resolved
        return dataset if feature.decode else dataset.cast_column(column, new_feature)

    @staticmethod
    def _checked_path(path: str, base_dir: Path, split: str, row: int, paths: list[Any],
                      context: ColumnContext) -> str:
        where = context.row(split, row)
        if not path.strip():
            raise InvalidImageError(
                f"{where} has an empty image path in {context.describe(split)}; give a file "
                "path, or None to mark the image as missing."
            )
        if is_remote(path):
            return path
        candidate = Path(path).expanduser()
        resolved = str(candidate if candidate.is_absolute() else base_dir / candidate)
        if os.path.isfile(resolved):
            return resolved
        present = [p for p in paths if isinstance(p, str) and p.strip()]
        if _looks_like_prose(path) and sum(map(_looks_like_prose, present)) * 2 > len(present):
            raise InvalidImageError(
                f"{context.describe(split)} is declared as an image input but holds text such "
                f"as {path!r} ({where}), not image file paths. Declare it as a text input "
                f"(e.g. inputs={{{context.source!r}: 'text'}}){context.or_fix()}."
            )
        raise InvalidImageError(
            f"{where}: image file {path!r} not found (looked at {resolved}); fix the path, pass "
            "image_root= (CLI: --image-root) to resolve relative paths elsewhere, or use None "
            "for a missing image."
        )

    def check_column(self, dataset: Any, column: str, split: str,
                     context: ColumnContext | None = None) -> None:
        """The column is an ``Image`` feature and every image in it decodes."""
        context = context or ColumnContext(source=column)
        feature = dataset.features.get(column)
        if not self.matches(feature):
            raise InvalidImageError(
                f"{context.describe(split)} holds {feature}, not images{context.or_fix()}."
            )
        context.verify_values(dataset, column, split, verify_image, batch_size=256)
