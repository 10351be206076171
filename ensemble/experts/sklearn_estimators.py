"""scikit-learn estimators for the kinds built on them (``sklearn``, ``tfidf``): made from a
dotted class path, checked to be classifiers with ``predict_proba``, saved as ``skops`` bytes
and loaded back from trusted types only.

Nothing is pickled. A skops file is loaded only when every type in it that skops does not
trust by default is a scikit-learn *class*, a numpy scalar type (``numpy.float64``: a data
type, e.g. a vectorizer's ``dtype``), one of :data:`TRUSTED_EXTRA`, or listed by the caller
in ``trusted_types``. Functions are never trusted by module name: skops calls some loaded
callables while it loads (e.g. ``builtins.exec``), so a file naming one could run code.
Callers check a file's bytes against the fingerprint recorded next to it *before* calling
:func:`load_estimator`.

Example:
    >>> model = estimator_from_name("sklearn.linear_model.LogisticRegression", {"C": 2.0})
    >>> model = model.fit([[0.0], [1.0]], [0, 1])
    >>> again = load_estimator(estimator_bytes(model), "model.skops")
    >>> again.predict([[1.0]]).tolist(), again.C
    ([1], 2.0)
    >>> is_sklearn_class("sklearn.linear_model.LogisticRegression"), is_sklearn_class("os.system")
    (True, False)
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping, Sequence
from typing import Any

from ..exceptions import ArtifactError, ConfigError

__all__ = [
    "TRUSTED_EXTRA",
    "check_classifier",
    "estimator_bytes",
    "estimator_from_name",
    "is_numpy_scalar_type",
    "is_sklearn_class",
    "load_estimator",
    "refused_types",
]

#: Types beyond scikit-learn's classes that its own classifiers store and that are safe to
#: load (HistGradientBoosting with categorical features binds ``check_array`` in a partial;
#: the partial's function is checked on its own).
TRUSTED_EXTRA = frozenset({"functools.partial", "sklearn.utils.validation.check_array"})


def estimator_from_name(name: str, params: Mapping[str, Any], *,
                        example: str = "sklearn.ensemble.RandomForestClassifier") -> Any:
    """A new ``name(**params)``, where ``name`` is a scikit-learn class's dotted path
    (``example`` is the one the error message suggests); nothing outside ``sklearn`` is
    imported."""
    module_name, _, class_name = name.rpartition(".")
    if not module_name.startswith("sklearn.") or not class_name:
        raise ConfigError(
            f"estimator {name!r} must be a scikit-learn classifier's dotted path, e.g. "
            f"{example!r} (other estimators: pass an instance from Python)."
        )
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"estimator {name!r} cannot be imported ({err}).") from None
    return cls(**params)


def check_classifier(estimator: Any, *,
                     suggestion: str = "HistGradientBoostingClassifier or LogisticRegression"
                     ) -> Any:
    """``estimator``, unless it is not a scikit-learn classifier with ``predict_proba``
    (:class:`~ensemble.exceptions.ConfigError` naming it and ``suggestion``)."""
    from sklearn.base import is_classifier

    if not is_classifier(estimator) or not hasattr(estimator, "predict_proba"):
        raise ConfigError(
            f"estimator {type(estimator).__name__} is not a scikit-learn classifier with "
            f"predict_proba; use e.g. {suggestion}."
        )
    return estimator


def _resolve(name: str, package: str) -> Any:
    """The attribute ``module.attribute`` named by ``name`` when its module is ``package`` or
    inside it (nothing outside ``package`` is imported), else ``None``."""
    module_name, _, attribute = name.rpartition(".")
    if module_name != package and not module_name.startswith(package + "."):
        return None
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError):
        return None


def is_sklearn_class(name: str) -> bool:
    """Whether ``name`` (``module.Class``) is a class defined in scikit-learn."""
    value = _resolve(name, "sklearn")
    return isinstance(value, type) and str(value.__module__).startswith("sklearn.")


def is_numpy_scalar_type(name: str) -> bool:
    """Whether ``name`` is a numpy scalar type such as ``numpy.float64`` (a data type, never a
    function).

    Example:
        >>> is_numpy_scalar_type("numpy.float64"), is_numpy_scalar_type("numpy.load")
        (True, False)
    """
    import numpy as np

    value = _resolve(name, "numpy")
    return isinstance(value, type) and issubclass(value, np.generic)


def estimator_bytes(estimator: Any) -> bytes:
    """The fitted ``estimator`` as the bytes of a skops file."""
    import skops.io

    return skops.io.dumps(estimator)


def refused_types(untrusted: Sequence[str], trusted_types: Sequence[str] = ()) -> list[str]:
    """The names in ``untrusted`` (skops' list) that this library does not load unasked."""
    allowed = TRUSTED_EXTRA | set(trusted_types)
    return [t for t in untrusted if t not in allowed and not is_sklearn_class(t)
            and not is_numpy_scalar_type(t)]


def load_estimator(blob: bytes, path: str | os.PathLike[str],
                   trusted_types: Sequence[str] = ()) -> Any:
    """The estimator in the skops bytes ``blob`` (read from ``path``, named in messages).

    Raises :class:`~ensemble.exceptions.ArtifactError` when ``blob`` is not a skops file,
    names a type that is not trusted (see the module docstring) or cannot be loaded.
    Check ``blob`` against its recorded fingerprint first: nothing of it is loaded here
    before its types are checked.
    """
    import skops.io

    try:
        untrusted = skops.io.get_untrusted_types(data=blob)
    except Exception as err:  # skops raises several types on a damaged zip
        raise ArtifactError(f"{path} is not a skops file ({err}).") from err
    refused = refused_types(untrusted, trusted_types)
    if refused:
        raise ArtifactError(
            f"{path} contains types that are not scikit-learn classes: "
            f"{refused!r}; load it only if you trust its author, with "
            f"load_expert(..., trusted_types={refused!r})."
        )
    try:
        return skops.io.loads(blob, trusted=list(untrusted))
    except Exception as err:  # skops and the estimators' own __setstate__ raise many types
        raise ArtifactError(f"{path} cannot be loaded ({err}).") from err
