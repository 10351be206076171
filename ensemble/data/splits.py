"""Splits: carving a stratified validation split out of ``train``, and requiring splits.

Example:
    >>> splits = {"train": None, "test": None}
    >>> require_splits(splits, {"data.fit_split": "validation"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ensemble.exceptions.DataError: the dataset has no split 'validation' ... validation_size=0.1...
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..exceptions import ConfigError, DataError
from .hints import keyword_hint

__all__ = ["carve_validation", "check_validation_size", "require_splits"]


def check_validation_size(size: Any, seed: Any) -> None:
    """``validation_size`` is a fraction in (0, 1) or a row count; ``split_seed`` is >= 0."""
    if size is not None:
        fraction = isinstance(size, float) and 0.0 < size < 1.0
        count = isinstance(size, int) and not isinstance(size, bool) and size >= 1
        if not (fraction or count):
            raise ConfigError(
                f"validation_size must be a fraction in (0, 1) or a number of rows >= 1, got "
                f"{size!r}; e.g. {keyword_hint('validation_size', 0.1)}."
            )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"split_seed must be a non-negative integer, got {seed!r}.")


def carve_validation(splits: dict[str, Any], size: float | int, seed: int) -> dict[str, Any]:
    """``splits`` with a stratified ``validation`` split taken out of ``train``.

    Both keep their original row order; the other splits are untouched.
    """
    from sklearn.model_selection import train_test_split

    if "validation" in splits:
        raise ConfigError(
            "validation_size was given but the data already has a 'validation' split; drop "
            "validation_size (or the split)."
        )
    if "train" not in splits:
        raise DataError(
            f"validation_size carves the validation split out of 'train', but the splits are "
            f"{sorted(splits)}; name the training split 'train' (e.g. data_files={{'train': "
            "...}})."
        )
    train = splits["train"]
    labels = np.asarray(train.with_format("arrow")["label"].to_pylist())
    try:
        keep, held = train_test_split(np.arange(train.num_rows), test_size=size,
                                      stratify=labels, random_state=seed)
    except ValueError as err:
        raise DataError(
            f"cannot carve a stratified validation split (validation_size={size!r}) out of "
            f"{train.num_rows} train rows with {len(np.unique(labels))} classes: {err}. Every "
            "class needs 2+ train rows and the validation split one row per class; raise "
            "validation_size or provide a validation split."
        ) from err
    out: dict[str, Any] = {}
    for split, dset in splits.items():
        if split == "train":
            out["train"] = dset.select(np.sort(keep))
            out["validation"] = dset.select(np.sort(held))
        else:
            out[split] = dset
    return out


def require_splits(dataset: Mapping[str, Any], needed: Mapping[str, str]) -> None:
    """Raise :class:`DataError` unless ``dataset`` has every split in ``needed``.

    ``needed`` maps the setting that names a split to the split (e.g.
    ``{"data.fit_split": "validation"}``). A missing ``validation`` next to a ``train``
    split points at ``validation_size=``, which carves one out of ``train``.
    """
    for setting, split in needed.items():
        if split in dataset:
            continue
        fix = f"set {setting} to one of them"
        if split == "validation" and "train" in dataset:
            fix = (f"carve one out of 'train' with {keyword_hint('validation_size', 0.1)} "
                   f"(in a recipe: data.options.validation_size: 0.1), or {fix}")
        raise DataError(
            f"the dataset has no split {split!r} (splits: {sorted(dataset)!r}); {fix}."
        )
