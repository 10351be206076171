"""ensemble: late-fusion ensembles over pretrained image and text models."""

from __future__ import annotations

from . import exceptions
from .exceptions import EnsembleError

__version__ = "0.1.0"

__all__ = ["EnsembleError", "__version__", "exceptions"]
