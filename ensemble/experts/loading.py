"""``load_expert``: load any saved expert folder, whatever its kind.

The folder's ``ensemble.json`` names the registered kind; that class rebuilds the expert
(never by unpickling). Bagged fold experts are registered as kind ``bagged``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..exceptions import ArtifactError, UnknownNameError
from .base import read_metadata
from .registry import get_expert_class

__all__ = ["load_expert"]

def load_expert(directory: str | os.PathLike[str], **kwargs: Any) -> Any:
    """Load a saved expert of any registered kind.

    Example:
        >>> expert = load_expert("runs/quickstart/experts/image")  # doctest: +SKIP
    """
    directory = Path(directory)
    metadata = read_metadata(directory)
    kind = metadata.get("kind")
    try:
        cls = get_expert_class(str(kind))
    except UnknownNameError as err:
        raise ArtifactError(
            f"{directory} holds an expert of kind {kind!r}, which is not registered here "
            f"({err}); import the module that registers it first."
        ) from None
    return cls.load_saved(directory, metadata, **kwargs)
