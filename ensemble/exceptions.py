"""Typed errors raised by ``ensemble``.

Every error a user can trigger with bad input is an :class:`EnsembleError` subclass whose
message names the offending value and says how to fix it. Several also derive from the
matching built-in (``ValueError``, ``FileNotFoundError``, ...) so generic handlers keep
working.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AlignmentError",
    "ArtifactError",
    "CheckpointNotFoundError",
    "ClassMismatchError",
    "ConfigError",
    "DataError",
    "DependencyError",
    "EnsembleError",
    "ExportError",
    "InvalidAudioError",
    "InvalidImageError",
    "InvalidLogitsError",
    "InvalidTabularError",
    "InvalidTextError",
    "LabelError",
    "LeakageError",
    "ModalityError",
    "NotFittedError",  # noqa: F822 - built on first access (see __getattr__)
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


class InvalidAudioError(DataError):
    """An audio clip is missing, unreadable, empty, truncated or has unusable samples."""


class InvalidTabularError(DataError):
    """A tabular input (a group of numeric and categorical columns) holds an unusable value."""


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


class ExportError(EnsembleError, ValueError):
    """A model cannot be exported (to ONNX), or an export does not match its source."""


class UnknownNameError(EnsembleError, LookupError):
    """A registry name is unknown; the message suggests close matches."""


def _not_fitted_error() -> type:
    from sklearn.exceptions import NotFittedError as SklearnNotFittedError

    class NotFittedError(EnsembleError, SklearnNotFittedError):
        """An estimator was used before ``fit``; also scikit-learn's ``NotFittedError``."""

    NotFittedError.__module__ = __name__
    return NotFittedError


def __getattr__(name: str) -> Any:
    # NotFittedError derives from scikit-learn's, whose import takes seconds: built on first
    # use so that `import ensemble` (and every CLI call) does not pay for it.
    if name == "NotFittedError":
        cls = _not_fitted_error()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
