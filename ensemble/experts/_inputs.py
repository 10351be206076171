"""Turning raw user inputs into clean PIL images and strings, with errors that name the row."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..exceptions import InvalidImageError, InvalidTextError

__all__ = ["MAX_IMAGE_PIXELS", "to_rgb_image", "to_text"]

#: Images larger than this many pixels are refused instead of exhausting memory.
MAX_IMAGE_PIXELS = 64_000_000


def to_rgb_image(value: Any, ident: str) -> Image.Image:
    """Return ``value`` (PIL image, path, bytes, ``{"path"|"bytes"}`` dict or array) as RGB.

    Transparent images are composited on white; palette, grey, CMYK and 16-bit images are
    converted. Anything unreadable raises :class:`InvalidImageError` naming ``ident``.
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
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
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


def to_text(value: Any, ident: str) -> str:
    """Return ``value`` as a non-empty string; bytes are decoded as UTF-8."""
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError as err:
            raise InvalidTextError(
                f"text of example {ident!r} is not valid UTF-8 ({err}); decode it first."
            ) from err
    if not isinstance(value, str):
        raise InvalidTextError(
            f"text of example {ident!r} is a {type(value).__name__}, not a string; pass str, or "
            "None for a missing text."
        )
    if not value.strip():
        raise InvalidTextError(
            f"text of example {ident!r} is empty; pass None to mark the text as missing."
        )
    return value
