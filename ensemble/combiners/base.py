"""The combiner contract: a scikit-learn classifier over named per-expert logits.

Subclasses implement four hooks: ``_check_params`` (validate hyper-parameters), ``_fit``
(learn from a :class:`FusionData` and integer labels), ``_log_proba`` (fused
log-probabilities) and ``_state`` / ``_restore`` (learned arrays for persistence). The base
class owns input validation, label encoding, the leakage guard, optional per-expert
temperature scaling, missing-expert rows and the ``config.json`` + ``model.safetensors``
format.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from .._io import (
    FORMAT_VERSION,
    atomic_directory,
    check_format_version,
    library_versions,
    read_json,
    read_verified_tensors,
    write_json,
    write_tensors,
)
from ..exceptions import ArtifactError, ExportError, ModalityError, NotFittedError
from ..logits import LogitSet
from ._inputs import LogitsLike, MaskLike, encode_labels, to_logitset
from ._math import expert_log_probs, log_softmax
from ._sklearn_io import decode_estimator, encode_estimator
from .calibration import fit_temperatures
from .pattern_routes import (
    MAX_ROUTED_EXPERTS,
    PatternCheck,
    apply_routes,
    check_routes,
    default_routes,
    describe_route,
    fit_routes,
    pattern_name,
)
from .registry import load_combiner

__all__ = ["Combiner", "FusionData"]

CONFIG_FILE = "config.json"
TENSORS_FILE = "model.safetensors"
_KIND = "combiner"
_ALL_ROWS = slice(None)
PREDICT_CHUNK_ROWS = 8192


@dataclass(frozen=True)
class FusionData:
    """Validated combiner input.

    ``log_probs`` is the ``[N, M, C]`` float32 stack of (temperature-scaled) per-expert
    log-probabilities in fitted modality order, zero where an expert is absent; ``mask`` the
    ``[N, M]`` presence mask; ``logits`` the aligned :class:`LogitSet` (for features, ids;
    every row, also when predicting in chunks); ``features`` each expert's pre-logit
    features for these rows, in fitted order (``None`` when the logits carry none).
    """

    log_probs: np.ndarray
    mask: np.ndarray
    logits: LogitSet
    features: tuple[np.ndarray, ...] | None = None

    @property
    def n_rows(self) -> int:
        return int(self.mask.shape[0])


class Combiner(ClassifierMixin, BaseEstimator):
    """Base class of every combiner (see the module docstring for the hooks).

    Example:
        >>> import numpy as np
        >>> from ensemble.combiners import create_combiner
        >>> rng = np.random.default_rng(0)
        >>> y = rng.integers(0, 3, 200)
        >>> logits = {"image": 3 * np.eye(3)[y] + rng.normal(size=(200, 3)),
        ...           "text": 2 * np.eye(3)[y] + rng.normal(size=(200, 3))}
        >>> combiner = create_combiner("voting").fit(logits, y)
        >>> combiner.predict_proba(logits).shape
        (200, 3)
    """

    registry_name: ClassVar[str] = ""
    #: Predict in chunks of this many rows (bounded memory, cache-friendly); ``None`` predicts
    #: all rows at once. A chunked combiner's ``_log_proba`` must read only ``data.log_probs``
    #: and ``data.mask`` (``data.logits`` covers every row, not just the chunk).
    _predict_chunk_rows: ClassVar[int | None] = None
    calibrate: bool
    #: Built-in combiners take ``pattern_guard`` (default ``True``); one of your own without
    #: the parameter is not guarded (a lone expert still answers for itself).
    pattern_guard: bool
    #: A combiner whose inner combiner carries the guard (``auto``) skips its own.
    _guards_itself: ClassVar[bool] = False

    # -- hooks ------------------------------------------------------------------------------

    def _check_params(self) -> None:
        """Raise :class:`ConfigError` for invalid hyper-parameters."""

    def _fit(self, data: FusionData, y: np.ndarray) -> None:
        raise NotImplementedError

    def _log_proba(self, data: FusionData) -> np.ndarray:
        raise NotImplementedError

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Learned arrays (for safetensors) and JSON-able learned values."""
        return {}, {}

    def _restore(self, arrays: dict[str, np.ndarray], state: dict[str, Any],
                 directory: Path) -> None:
        """Inverse of :meth:`_state` on a freshly constructed instance."""

    def _save_extra(self, directory: Path) -> None:
        """Write additional files into the artifact directory (default: none)."""

    def fusion_module(self) -> Any:
        """The export hook: a torch module computing :meth:`_log_proba` from
        ``(log_probs, mask, logits, features)`` (see :mod:`.graph`)."""
        raise ExportError(
            f"the {type(self).__name__} combiner ({self.registry_name or 'unregistered'}) has "
            "no export to ONNX: it does not implement fusion_module(). Refit the bundle with "
            "a built-in combiner, or implement the hook."
        )

    def reads_features(self) -> bool:
        """Whether :meth:`_log_proba` (or a combiner inside it) reads the experts' pre-logit
        features."""
        return False

    # -- fitting ----------------------------------------------------------------------------

    def fit(
        self,
        logits: LogitsLike,
        y: Any,
        *,
        mask: MaskLike = None,
        class_names: Any = None,
    ) -> Combiner:
        """Fit on held-out ``logits`` (a :class:`LogitSet` or ``{modality: [N, C]}``) and ``y``.

        ``y`` holds integer class indices or class names. ``mask`` (array ``[N, M]`` or
        ``{modality: [N]}``) marks absent experts; ``class_names`` names the columns of a
        mapping (default ``"0" .. "C-1"``).
        """
        self._check_params()
        logit_set = to_logitset(logits, mask=mask, class_names=class_names)
        logit_set.check_held_out()
        labels, by_name = encode_labels(y, logit_set.class_names, logit_set.n_rows)
        self.class_names_ = tuple(logit_set.class_names)
        self.classes_ = (np.asarray(self.class_names_) if by_name
                         else np.arange(len(self.class_names_)))
        self.expert_names_ = tuple(logit_set.expert_names)
        self.n_classes_ = len(self.class_names_)
        self.temperatures_ = (
            fit_temperatures(logit_set.stacked(), np.asarray(logit_set.mask), labels)
            if self.calibrate
            else np.ones(len(self.expert_names_), dtype=np.float32)
        )
        self._fit_pattern_routes(logit_set, labels)
        self._fit(self._prepare(logit_set), labels)
        return self

    def _fit_pattern_routes(self, logit_set: LogitSet, labels: np.ndarray) -> None:
        """``pattern_routes_`` (see :mod:`.pattern_routes`) and ``pattern_checks_``, what
        the guard measured."""
        n_experts = len(self.expert_names_)
        self.pattern_checks_: list[PatternCheck] = []
        if n_experts > MAX_ROUTED_EXPERTS:
            self.pattern_routes_: np.ndarray | None = None
        elif getattr(self, "pattern_guard", False) and not self._guards_itself:
            seed = getattr(self, "random_state", None)
            self.pattern_routes_, self.pattern_checks_ = fit_routes(
                self, logit_set, labels, seed=0 if seed is None else int(seed))
        else:
            self.pattern_routes_ = default_routes(n_experts)

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "expert_names_")

    def _check_fitted(self) -> None:
        if not self.__sklearn_is_fitted__():
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call fit(logits, y) first."
            )

    def _prepare(self, logit_set: LogitSet, rows: slice = _ALL_ROWS) -> FusionData:
        mask = np.asarray(logit_set.mask)[rows]
        arrays = [logit_set.logits[m][rows] for m in logit_set.expert_names]
        log_probs = expert_log_probs(arrays, self.temperatures_, mask)
        available = logit_set.features or {}
        features = (tuple(np.asarray(available[m])[rows] for m in logit_set.expert_names)
                    if all(m in available for m in logit_set.expert_names) else None)
        return FusionData(log_probs=log_probs, mask=mask, logits=logit_set, features=features)

    # -- prediction -------------------------------------------------------------------------

    def _validated(self, logits: LogitsLike, mask: MaskLike) -> FusionData:
        return self._prepare(self._validated_set(logits, mask))

    def _validated_set(self, logits: LogitsLike, mask: MaskLike) -> LogitSet:
        self._check_fitted()
        names = None if isinstance(logits, LogitSet) else self.class_names_
        logit_set = to_logitset(logits, mask=mask, class_names=names)
        missing = [m for m in self.expert_names_ if m not in logit_set.expert_names]
        extra = [m for m in logit_set.expert_names if m not in self.expert_names_]
        if missing or extra:
            raise ModalityError(
                f"{type(self).__name__} was fitted on experts {list(self.expert_names_)!r}; "
                f"missing {missing!r}, unexpected {extra!r}. Pass every fitted expert "
                "(mark unavailable rows absent in the mask) and no others."
            )
        if logit_set.expert_names != self.expert_names_:
            logit_set = logit_set.select(self.expert_names_)
        return logit_set.align(class_names=self.class_names_)

    def predict_logits(self, logits: LogitsLike, *, mask: MaskLike = None) -> np.ndarray:
        """Fused log-probabilities ``[N, C]`` (float64) in the order of ``class_names_``.

        Rows with no expert present get the uniform distribution.
        """
        logit_set = self._validated_set(logits, mask)
        chunk = self._predict_chunk_rows or logit_set.n_rows
        result = np.empty((logit_set.n_rows, self.n_classes_), dtype=np.float64)
        for start in range(0, logit_set.n_rows, chunk):
            data = self._prepare(logit_set, slice(start, start + chunk))
            result[start:start + chunk] = self._finish(data, self._log_proba(data))
        return result

    def _finish(self, data: FusionData, scores: np.ndarray) -> np.ndarray:
        """Normalise the scores; rows with no expert get the uniform distribution, and the
        other rows follow their pattern's route (:mod:`.pattern_routes`): a row with
        exactly one expert gets that expert's own (temperature-calibrated) distribution
        (with one input there is nothing to fuse), and a pattern where the guard found
        fusion worse than an expert alone or the plain average gets that instead (the
        contract: never worse than the expert that is present)."""
        result = log_softmax(np.asarray(scores, dtype=np.float64))
        present = data.mask.sum(axis=1)
        result[present == 0] = -np.log(self.n_classes_)
        routes = getattr(self, "pattern_routes_", None)
        if routes is not None:
            return apply_routes(routes, data.mask, data.log_probs, result)
        single = np.flatnonzero(present == 1)
        if single.size:
            expert = data.mask[single].argmax(axis=1)
            result[single] = log_softmax(data.log_probs[single, expert].astype(np.float64))
        return result

    def summary(self) -> dict[str, Any]:
        """JSON-able: the combiner's name and the patterns it does not fuse (for reports
        and ``explain``); subclasses add what they chose."""
        self._check_fitted()
        rerouted = {p: r for p, r in self.describe_patterns().items() if r != "fused"}
        return {"name": self.registry_name or type(self).__name__,
                **({"rerouted_patterns": rerouted} if rerouted else {})}

    def describe_patterns(self) -> dict[str, str]:
        """What each pattern of present experts gets (``"fused"``, an expert's name or
        ``"average"``); patterns of one expert are left out (that expert answers)."""
        self._check_fitted()
        routes = self.pattern_routes_
        names = self.expert_names_
        if routes is None:
            return {}
        return {pattern_name(code, names): describe_route(int(route), names)
                for code, route in enumerate(routes) if code.bit_count() >= 2}

    def predict_proba(self, logits: LogitsLike, *, mask: MaskLike = None) -> np.ndarray:
        """Fused class probabilities ``[N, C]``; each row sums to 1."""
        log_proba = self.predict_logits(logits, mask=mask)
        return np.exp(log_proba, out=log_proba)

    def predict(self, logits: LogitsLike, *, mask: MaskLike = None) -> np.ndarray:
        """Predicted labels, as indices or class names like the ``y`` given to ``fit``."""
        return self.classes_[self.predict_logits(logits, mask=mask).argmax(axis=1)]

    # -- persistence ------------------------------------------------------------------------

    def explain_weights(self, logits: LogitsLike, *, mask: MaskLike = None
                        ) -> tuple[np.ndarray, tuple[str, ...], str] | None:
        """How this combiner weighs its inputs on ``logits``: ``(weights [N, K], names,
        kind)`` with ``kind`` ``"gate"`` (per example) or ``"fitted"`` (one vector for all
        rows), or ``None`` when it has no per-input weights (e.g. a meta-learner)."""
        self._check_fitted()
        fitted = getattr(self, "weights_", None)
        if fitted is None:
            return None
        names = tuple(self._weight_names())
        fitted = np.asarray(fitted, dtype=np.float64)
        if fitted.shape != (len(names),):
            return None
        rows = self._validated_set(logits, mask).n_rows
        return np.tile(fitted, (rows, 1)), names, "fitted"

    def _weight_names(self) -> tuple[str, ...]:
        """What ``weights_`` weighs (the experts, unless a subclass says otherwise)."""
        return tuple(self.expert_names_)

    def _encoded_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for key, value in self.get_params(deep=False).items():
            if isinstance(value, BaseEstimator):
                params[key] = encode_estimator(value)
            elif isinstance(value, tuple):
                params[key] = list(value)
            else:
                params[key] = value
        return params

    @classmethod
    def _decoded_params(cls, params: Mapping[str, Any], directory: Path) -> dict[str, Any]:
        return {
            key: decode_estimator(value)
            if isinstance(value, dict) and "__estimator__" in value
            else value
            for key, value in params.items()
        }

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``config.json`` + ``model.safetensors`` atomically into ``directory``."""
        self._check_fitted()
        arrays, state = self._state()
        arrays = {**arrays, "temperatures": np.asarray(self.temperatures_, dtype=np.float32)}
        if self.pattern_routes_ is not None:
            arrays["pattern_routes"] = np.asarray(self.pattern_routes_, dtype=np.int16)
        config: dict[str, Any] = {
            "kind": _KIND,
            "format_version": FORMAT_VERSION,
            "name": self.registry_name,
            "class": type(self).__name__,
            "params": self._encoded_params(),
            "class_names": list(self.class_names_),
            "labels": "names" if self.classes_.dtype.kind in "US" else "indices",
            "experts": list(self.expert_names_),
            "state": state,
            "pattern_checks": [check.to_dict() for check in self.pattern_checks_],
            "versions": library_versions(),
        }
        directory = Path(directory)
        with atomic_directory(directory) as tmp:
            config["tensors_sha256"] = write_tensors(tmp / TENSORS_FILE, arrays)
            self._save_extra(tmp)
            write_json(tmp / CONFIG_FILE, config)
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Combiner:
        """Read a combiner written by :meth:`save` (never unpickles)."""
        if not cls.registry_name:
            return load_combiner(directory)
        directory = Path(directory)
        config = read_json(directory / CONFIG_FILE)
        if config.get("kind") != _KIND:
            raise ArtifactError(f"{directory} holds a {config.get('kind')!r}, not a combiner.")
        check_format_version(config, directory)
        if config.get("name") != cls.registry_name:
            raise ArtifactError(
                f"{directory} holds combiner {config.get('name')!r}, not {cls.registry_name!r}; "
                "use ensemble.load_combiner() to load any combiner."
            )
        arrays = read_verified_tensors(
            directory / TENSORS_FILE, config.get("tensors_sha256"),
            remedy="Re-save it from the fitted combiner.",
        )
        try:
            combiner = cls(**cls._decoded_params(config["params"], directory))
            combiner._check_params()
            combiner.class_names_ = tuple(str(c) for c in config["class_names"])
            combiner.n_classes_ = len(combiner.class_names_)
            combiner.classes_ = {
                "names": np.asarray(combiner.class_names_),
                "indices": np.arange(combiner.n_classes_),
            }[config["labels"]]
            combiner.expert_names_ = tuple(str(m) for m in config["experts"])
            temperatures = np.asarray(arrays["temperatures"], dtype=np.float32)
            if temperatures.shape != (len(combiner.expert_names_),):
                raise ValueError(f"temperatures have shape {temperatures.shape}")
            combiner.temperatures_ = temperatures
            n_experts = len(combiner.expert_names_)
            combiner.pattern_routes_ = (
                check_routes(arrays["pattern_routes"], n_experts) if "pattern_routes" in arrays
                else None if n_experts > MAX_ROUTED_EXPERTS else default_routes(n_experts))
            combiner.pattern_checks_ = [PatternCheck(**check)
                                        for check in config.get("pattern_checks", [])]
            combiner._restore(arrays, dict(config.get("state", {})), directory)
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise ArtifactError(
                f"{directory} is incomplete or was tampered with ({type(err).__name__}: {err})."
            ) from err
        return combiner

