"""``load_expert``: load any saved expert folder, whatever its kind.

The folder's ``ensemble.json`` names the registered kind; that class rebuilds the expert
(never by unpickling). Bagged fold experts are registered as kind ``bagged``.
"""

from __future__ import annotations

import os
from typing import Any

from .base import load_saved_expert

__all__ = ["load_expert"]


def load_expert(directory: str | os.PathLike[str], **kwargs: Any) -> Any:
    """Load a saved expert of any registered kind.

    Example:
        >>> expert = load_expert("runs/quickstart/experts/image")  # doctest: +SKIP
    """
    return load_saved_expert(directory, **kwargs)
