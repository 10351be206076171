"""Datasets as named input columns: loading your own data, and the built-in datasets.

Every dataset returned here is a ``datasets.DatasetDict`` whose splits share an ``id``
column (unique across splits, stable across runs), a ``label`` column (a ``ClassLabel``:
its names are the label space) and one column per declared input (``image``, ``text``,
``tabular``, ... see :mod:`ensemble.modalities`), plus the source's other columns.

* :func:`load_multimodal` – your own data (Hub name, csv / json / parquet files, an
  imagefolder, a saved dataset or an in-memory ``DatasetDict``) with named inputs;
* :func:`load_emoji` – the real emoji dataset (image, name, keywords, code-point metadata);
* :func:`make_synthetic` – a tiny generated image+text dataset in which fusion is required;
* :func:`class_names` – the label space of a dataset.

Files: ``multimodal.py`` (the loader), ``inputs.py`` (declared inputs), ``files.py``
(reading sources), ``label_space.py`` (labels), ``ids.py`` (example ids), ``templates.py``
(image paths built from rows), ``splits.py`` (validation carving), ``hints.py`` (how
messages name options), ``sources/`` (the built-in datasets).

Example:
    >>> from ensemble.data import class_names, make_synthetic
    >>> class_names(make_synthetic(n_train=4, n_validation=4, n_test=4))[:2]
    ['red-alpha', 'red-beta']
"""

from __future__ import annotations

from .inputs import DataInput, parse_inputs
from .multimodal import STANDARD_COLUMNS, class_names, load_multimodal
from .sources import (
    EMOJI_META_FIELDS,
    EMOJI_PACKAGE,
    EMOJI_VERSION,
    SYNTHETIC_COLOURS,
    SYNTHETIC_FILLER,
    SYNTHETIC_WORDS,
    load_emoji,
    make_synthetic,
)
from .splits import require_splits

__all__ = [
    "EMOJI_META_FIELDS",
    "EMOJI_PACKAGE",
    "EMOJI_VERSION",
    "STANDARD_COLUMNS",
    "SYNTHETIC_COLOURS",
    "SYNTHETIC_FILLER",
    "SYNTHETIC_WORDS",
    "DataInput",
    "class_names",
    "load_emoji",
    "load_multimodal",
    "make_synthetic",
    "parse_inputs",
    "require_splits",
]
