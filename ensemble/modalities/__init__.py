"""Input modalities: one file per kind of input value (image, text, tabular, audio, ...).

Each modality is a :class:`Modality` registered by name. It coerces raw values into the
canonical in-memory value, says what counts as missing, gives the bytes hashed into content
ids, and prepares and checks a dataset column at load time. Adding a modality is one new
file with ``@register_modality("name")`` plus its import below.

Example:
    >>> from ensemble.modalities import get_modality, list_modalities, modality_of
    >>> list_modalities()
    ['audio', 'image', 'tabular', 'text']
    >>> get_modality("tabular").is_missing({"price": None, "brand": None})
    True
"""

from __future__ import annotations

from .audio import AudioModality, to_waveform, verify_audio
from .base import (
    MODALITIES,
    ColumnContext,
    Modality,
    get_modality,
    is_missing_scalar,
    list_modalities,
    modality_of,
    register_modality,
    replace_column,
)
from .image import MAX_IMAGE_PIXELS, ImageModality, to_rgb_image, verify_image
from .tabular import TabularFields, TabularModality
from .text import TextModality, to_text

__all__ = [
    "MAX_IMAGE_PIXELS",
    "MODALITIES",
    "AudioModality",
    "ColumnContext",
    "ImageModality",
    "Modality",
    "TabularFields",
    "TabularModality",
    "TextModality",
    "get_modality",
    "is_missing_scalar",
    "list_modalities",
    "modality_of",
    "register_modality",
    "replace_column",
    "to_rgb_image",
    "to_text",
    "to_waveform",
    "verify_audio",
    "verify_image",
]
