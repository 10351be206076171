"""The identity of a ``datasets.Dataset`` as this library uses it (one owner).

``datasets`` gives every Dataset a fingerprint that changes with its content and every
transform applied to it (``select``, ``map``, ``cast``, ...). It is stored on a private
attribute; this module is the only place that reads it, so experts, logits, cross-fitting
and the pipeline agree on what "the same data" means, and a change in ``datasets`` is fixed
here once.
"""

from __future__ import annotations

from typing import Any

__all__ = ["dataset_fingerprint"]


def dataset_fingerprint(dataset: Any) -> str:
    """The fingerprint of a ``datasets.Dataset`` (empty for anything else, e.g. a list).

    Example:
        >>> import datasets
        >>> a = datasets.Dataset.from_dict({"x": [1, 2]})
        >>> dataset_fingerprint(a) == dataset_fingerprint(a.select([0, 1]))
        False
    """
    return str(getattr(dataset, "_fingerprint", "") or "")
