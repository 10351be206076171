"""Ensemble selection (Caruana et al., 2004): greedy forward selection with replacement."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import clone

from ..exceptions import ConfigError
from ._checks import check_choice, check_positive_ints
from ._math import masked_weights
from ._registry import load_combiner, register_combiner
from .base import Combiner, FusionData

__all__ = ["EnsembleSelection"]

_CANDIDATES_DIR = "candidates"


def _nll(proba: np.ndarray, y: np.ndarray) -> float:
    return float(-np.log(np.maximum(proba[np.arange(y.size), y], 1e-12)).mean())


def _error(proba: np.ndarray, y: np.ndarray) -> float:
    return float((proba.argmax(axis=1) != y).mean())


def _brier(proba: np.ndarray, y: np.ndarray) -> float:
    return float(((proba**2).sum(axis=1) - 2 * proba[np.arange(y.size), y] + 1).mean())


# Every scorer is a loss: lower is better.
_LOSSES: Mapping[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "nll": _nll,
    "accuracy": _error,
    "brier": _brier,
}


@register_combiner("selection")
class EnsembleSelection(Combiner):
    """Greedy forward selection with replacement over experts and fitted combiners.

    Starts from the ``n_init`` best single candidates (sorted initialisation), then adds,
    ``n_iterations`` times, the candidate (possibly again) that most improves ``metric``
    (``"nll"``, ``"accuracy"`` or ``"brier"``) of the averaged probabilities. With
    ``n_bags > 1`` the search runs on random ``bag_fraction`` subsets of the candidates
    and the selection counts are summed. ``candidates`` adds other combiners' outputs as
    candidates (unfitted ones are fitted on the same data first). ``weights_`` are the
    normalised selection counts over ``candidate_names_``.

    Missing experts: each row averages the selected candidates present on it, weights
    renormalised.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> y = rng.integers(0, 3, 300)
        >>> logits = {"image": 3 * np.eye(3)[y] + rng.normal(size=(300, 3)),
        ...           "text": rng.normal(size=(300, 3))}
        >>> selection = EnsembleSelection().fit(logits, y)
        >>> selection.candidate_names_
        ('image', 'text')
    """

    def __init__(
        self,
        *,
        metric: str = "nll",
        n_iterations: int = 25,
        n_init: int = 1,
        n_bags: int = 1,
        bag_fraction: float = 0.5,
        candidates: Sequence[Combiner] | None = None,
        calibrate: bool = False,
        random_state: int | None = 0,
    ) -> None:
        self.metric = metric
        self.n_iterations = n_iterations
        self.n_init = n_init
        self.n_bags = n_bags
        self.bag_fraction = bag_fraction
        self.candidates = candidates
        self.calibrate = calibrate
        self.random_state = random_state

    def _check_params(self) -> None:
        check_choice("metric", self.metric, _LOSSES)
        check_positive_ints(self, ("n_iterations", "n_init", "n_bags"))
        if not isinstance(self.bag_fraction, (int, float)) or not 0 < self.bag_fraction <= 1:
            raise ConfigError(f"bag_fraction must be in (0, 1], got {self.bag_fraction!r}.")
        for candidate in self.candidates or ():
            if not isinstance(candidate, Combiner):
                raise ConfigError(
                    f"candidates must be combiners, got {type(candidate).__name__}."
                )

    # -- candidates -------------------------------------------------------------------------

    def _candidate_outputs(self, data: FusionData) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities ``[N, K, C]`` and presence ``[N, K]`` of every candidate."""
        outputs = [np.exp(data.log_probs.astype(np.float64))]
        presence = [data.mask]
        for combiner in self.candidates_:
            outputs.append(combiner.predict_proba(data.logits)[:, None, :])
            presence.append(np.ones((data.n_rows, 1), dtype=bool))
        return np.concatenate(outputs, axis=1), np.concatenate(presence, axis=1)

    # -- fitting ----------------------------------------------------------------------------

    def _fit(self, data: FusionData, y: np.ndarray) -> None:
        self.candidates_ = [
            c if c.__sklearn_is_fitted__() else clone(c).fit(data.logits, y)
            for c in self.candidates or ()
        ]
        self.candidate_names_ = tuple(self.modalities_) + tuple(
            f"{i}:{c.registry_name}" for i, c in enumerate(self.candidates_)
        )
        proba, presence = self._candidate_outputs(data)
        rng = np.random.default_rng(self.random_state)
        n_candidates = proba.shape[1]
        counts = np.zeros(n_candidates)
        bag_size = max(1, round(self.bag_fraction * n_candidates))
        for _ in range(self.n_bags):
            pool = (np.arange(n_candidates) if self.n_bags == 1
                    else np.sort(rng.choice(n_candidates, bag_size, replace=False)))
            counts += self._greedy(proba, presence, y, pool)
        self.counts_ = counts
        self.weights_ = counts / counts.sum()

    def _greedy(self, proba: np.ndarray, presence: np.ndarray, y: np.ndarray,
                pool: np.ndarray) -> np.ndarray:
        loss = _LOSSES[self.metric]
        counts = np.zeros(proba.shape[1])
        singles = [loss(self._mixture(proba, presence, _one_hot(k, counts.size)), y)
                   for k in pool]
        for k in pool[np.argsort(singles, kind="stable")[: self.n_init]]:
            counts[k] += 1
        for _ in range(self.n_iterations):
            trials = []
            for k in pool:
                trial = counts.copy()
                trial[k] += 1
                trials.append(loss(self._mixture(proba, presence, trial), y))
            counts[pool[int(np.argmin(trials))]] += 1
        return counts

    @staticmethod
    def _mixture(proba: np.ndarray, presence: np.ndarray, counts: np.ndarray) -> np.ndarray:
        weights = masked_weights(counts, presence)
        return np.einsum("nk,nkc->nc", weights, proba)

    def _log_proba(self, data: FusionData) -> np.ndarray:
        proba, presence = self._candidate_outputs(data)
        return np.log(np.maximum(self._mixture(proba, presence, self.weights_), 1e-300))

    # -- persistence ------------------------------------------------------------------------

    def _encoded_params(self) -> dict[str, Any]:
        params = {k: v for k, v in self.get_params(deep=False).items() if k != "candidates"}
        params["candidates"] = len(self.candidates) if self.candidates else None
        return params

    @classmethod
    def _decoded_params(cls, params: Mapping[str, Any], directory: Path) -> dict[str, Any]:
        decoded = dict(params)
        count = decoded.get("candidates")
        decoded["candidates"] = (
            [load_combiner(directory / _CANDIDATES_DIR / str(i)) for i in range(int(count))]
            if count else None
        )
        return decoded

    def _save_extra(self, directory: Path) -> None:
        for i, combiner in enumerate(self.candidates_):
            combiner.save(directory / _CANDIDATES_DIR / str(i))

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return {"counts": self.counts_}, {"candidate_names": list(self.candidate_names_)}

    def _restore(self, arrays: dict[str, np.ndarray], state: dict[str, Any],
                 directory: Path) -> None:
        self.candidates_ = list(self.candidates or ())
        self.candidate_names_ = tuple(str(n) for n in state["candidate_names"])
        counts = np.asarray(arrays["counts"], dtype=np.float64)
        expected = len(self.modalities_) + len(self.candidates_)
        if counts.shape != (expected,) or len(self.candidate_names_) != expected:
            raise ValueError(f"counts have shape {counts.shape}, expected ({expected},)")
        if (counts < 0).any() or counts.sum() <= 0:
            raise ValueError("selection counts must be >= 0 and not all zero")
        self.counts_ = counts
        self.weights_ = counts / counts.sum()


def _one_hot(index: int, size: int) -> np.ndarray:
    vector = np.zeros(size)
    vector[index] = 1.0
    return vector
