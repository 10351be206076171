"""Typed errors raised by ``ensemble``.

Every error a user can trigger with bad input is an :class:`EnsembleError` subclass whose
message names the offending value and says how to fix it. Several also derive from the
matching built-in (``ValueError``, ``FileNotFoundError``, ...) so generic handlers keep
working.
"""

from __future__ import annotations

from sklearn.exceptions import NotFittedError as _SklearnNotFittedError

__all__ = [
    "AlignmentError",
    "ArtifactError",
    "CheckpointNotFoundError",
    "ClassMismatchError",
    "ConfigError",
    "DataError",
    "DependencyError",
    "EnsembleError",
    "InvalidImageError",
    "InvalidLogitsError",
    "InvalidTextError",
    "LabelError",
    "LeakageError",
    "ModalityError",
    "NotFittedError",
    "OutputError",
    "UnknownNameError",
]


class EnsembleError(Exception):
    """Base class of every error raised on purpose by ``ensemble``."""


class ConfigError(EnsembleError, ValueError):
    """A configuration value (argument, dataclass field, recipe key) is invalid."""


class DataError(EnsembleError, ValueError):
    """A dataset or an example in it cannot be used as given."""


class InvalidImageError(DataError):
    """An image is missing, unreadable or has an unusable shape or mode."""


class InvalidTextError(DataError):
    """A text input is empty, not a string or cannot be decoded."""


class LabelError(DataError):
    """A label is not in the label space."""


class ClassMismatchError(EnsembleError, ValueError):
    """Two components disagree on the label space (class names or their order)."""


class AlignmentError(EnsembleError, ValueError):
    """Rows from two sources cannot be matched by example id."""


class InvalidLogitsError(EnsembleError, ValueError):
    """Logits or features have the wrong shape or non-finite values."""


class ModalityError(EnsembleError, ValueError):
    """A modality is missing, unexpected or not declared in the presence mask."""


class LeakageError(EnsembleError, ValueError):
    """A combiner would be fitted on logits of the split an expert was trained on."""


class CheckpointNotFoundError(EnsembleError, FileNotFoundError):
    """A checkpoint name resolves to no local path, Hub repository or offline mirror."""


class ArtifactError(EnsembleError, OSError):
    """A saved artifact is missing, incomplete, tampered with or from an unknown format."""


class OutputError(EnsembleError, OSError):
    """An output location cannot be written: read-only, no permission, or no space left."""


class DependencyError(EnsembleError, ImportError):
    """An optional dependency or external tool (e.g. ``npm``) is not available."""


class UnknownNameError(EnsembleError, LookupError):
    """A registry name is unknown; the message suggests close matches."""


class NotFittedError(EnsembleError, _SklearnNotFittedError):
    """An estimator was used before ``fit``; also scikit-learn's ``NotFittedError``."""
