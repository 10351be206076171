"""Ensemble selection (Caruana et al., 2004): greedy forward selection with replacement."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import clone

from ..exceptions import ConfigError
from ._checks import check_choice, check_positive_ints
from ._math import masked_weights, mix
from .base import PREDICT_CHUNK_ROWS, Combiner, FusionData
from .graph import CombinerGraph, torch_masked_weights
from .registry import load_combiner, register_combiner

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
        pattern_guard: bool = True,
        random_state: int | None = 0,
    ) -> None:
        self.metric = metric
        self.n_iterations = n_iterations
        self.n_init = n_init
        self.n_bags = n_bags
        self.bag_fraction = bag_fraction
        self.candidates = candidates
        self.calibrate = calibrate
        self.pattern_guard = pattern_guard
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

    @property
    def _predict_chunk_rows(self) -> int | None:  # type: ignore[override]
        # Extra candidates read data.logits, which covers every row: no chunking then.
        return None if getattr(self, "candidates_", None) else PREDICT_CHUNK_ROWS

    # -- candidates -------------------------------------------------------------------------

    def _presence(self, data: FusionData) -> np.ndarray:
        extra = np.ones((data.n_rows, len(self.candidates_)), dtype=bool)
        return np.concatenate([data.mask, extra], axis=1)

    def _candidate_probas(self, data: FusionData) -> list[np.ndarray]:
        """The fitted combiners' probabilities ``[N, C]``, one per extra candidate."""
        return [combiner.predict_proba(data.logits) for combiner in self.candidates_]

    # -- fitting ----------------------------------------------------------------------------

    def _fit(self, data: FusionData, y: np.ndarray) -> None:
        self.candidates_ = [
            c if c.__sklearn_is_fitted__() else clone(c).fit(data.logits, y)
            for c in self.candidates or ()
        ]
        self.candidate_names_ = tuple(self.expert_names_) + tuple(
            f"{i}:{c.registry_name}" for i, c in enumerate(self.candidates_)
        )
        presence = self._presence(data).astype(np.float64)
        extra = self._candidate_probas(data)
        rows = np.arange(data.n_rows)
        true_proba = np.concatenate(
            [np.exp(data.log_probs[rows, :, y].astype(np.float64))]
            + [p[rows, y][:, None] for p in extra], axis=1)
        proba = None
        if self.metric != "nll":  # NLL needs only the probability of the true class
            proba = np.concatenate([np.exp(data.log_probs.astype(np.float64))]
                                   + [p[:, None, :] for p in extra], axis=1)
        rng = np.random.default_rng(self.random_state)
        n_candidates = presence.shape[1]
        counts = np.zeros(n_candidates)
        bag_size = max(1, round(self.bag_fraction * n_candidates))
        for _ in range(self.n_bags):
            pool = (np.arange(n_candidates) if self.n_bags == 1
                    else np.sort(rng.choice(n_candidates, bag_size, replace=False)))
            counts += self._greedy(_Trials(self.metric, proba, true_proba, presence, y), pool)
        self.counts_ = counts
        self.weights_ = counts / counts.sum()

    def _greedy(self, trials: _Trials, pool: np.ndarray) -> np.ndarray:
        counts = np.zeros(trials.presence.shape[1])
        singles = trials.losses(counts, pool)  # counts = 0: each candidate alone
        for k in pool[np.argsort(singles, kind="stable")[: self.n_init]]:
            counts[k] += 1
        for _ in range(self.n_iterations):
            counts[pool[int(np.argmin(trials.losses(counts, pool)))]] += 1
        return counts

    def _log_proba(self, data: FusionData) -> np.ndarray:
        weights = masked_weights(self.weights_, self._presence(data))
        n_experts = len(self.expert_names_)
        mixture = mix(weights[:, :n_experts], data.log_probs, exp=True)
        for j, proba in enumerate(self._candidate_probas(data)):
            mixture += weights[:, n_experts + j, None] * proba
        return np.log(np.maximum(mixture, 1e-300))

    def fusion_module(self) -> torch.nn.Module:
        # Each candidate reads the experts in its own fitted order (predict_proba selects
        # them by name); the graph permutes the columns the same way.
        orders = [[self.expert_names_.index(n) for n in c.expert_names_]
                  for c in self.candidates_]
        return _SelectionModule(self.weights_, [CombinerGraph(c) for c in self.candidates_],
                                orders)

    def reads_features(self) -> bool:
        return any(c.reads_features() for c in self.candidates_)

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

    def _weight_names(self) -> tuple[str, ...]:
        return tuple(self.candidate_names_)

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return {"counts": self.counts_}, {"candidate_names": list(self.candidate_names_)}

    def _restore(self, arrays: dict[str, np.ndarray], state: dict[str, Any],
                 directory: Path) -> None:
        self.candidates_ = list(self.candidates or ())
        self.candidate_names_ = tuple(str(n) for n in state["candidate_names"])
        counts = np.asarray(arrays["counts"], dtype=np.float64)
        expected = len(self.expert_names_) + len(self.candidates_)
        if counts.shape != (expected,) or len(self.candidate_names_) != expected:
            raise ValueError(f"counts have shape {counts.shape}, expected ({expected},)")
        if (counts < 0).any() or counts.sum() <= 0:
            raise ValueError("selection counts must be >= 0 and not all zero")
        self.counts_ = counts
        self.weights_ = counts / counts.sum()


class _SelectionModule(torch.nn.Module):
    """:meth:`EnsembleSelection._log_proba` as a module (see :mod:`.graph`)."""

    def __init__(self, weights: np.ndarray, candidates: list[CombinerGraph],
                 orders: list[list[int]]) -> None:
        super().__init__()
        self.register_buffer("weights", torch.as_tensor(weights, dtype=torch.float32))
        self.candidates = torch.nn.ModuleList(candidates)
        self.orders = orders

    def forward(self, log_probs: torch.Tensor, mask: torch.Tensor, logits: torch.Tensor,
                features: list[torch.Tensor]) -> torch.Tensor:
        extra = torch.ones(mask.shape[0], len(self.candidates), dtype=torch.bool,
                           device=mask.device)
        weights = torch_masked_weights(self.weights, torch.cat([mask, extra], dim=1))
        n_experts = mask.shape[1]
        mixture = (weights[:, :n_experts, None] * log_probs.exp()).sum(dim=1)
        for j, (candidate, order) in enumerate(zip(self.candidates, self.orders,
                                                   strict=True)):
            inputs = [features[i] for i in order] if features else []
            proba = candidate(logits[:, order], mask[:, order], *inputs).exp()
            mixture = mixture + weights[:, n_experts + j, None] * proba
        return torch.log(mixture.clamp_min(1e-30))


class _Trials:
    """Loss of the average of the selected candidates plus one more, for every candidate.

    Weights are the counts renormalised over the candidates present on each row (a row
    where none of the selected is present averages all present candidates), exactly as at
    predict time. NLL is computed from the ``[N, K]`` true-class probabilities alone, in one
    vectorised step; the other metrics add each candidate's ``[N, C]`` to a running sum.
    """

    def __init__(self, metric: str, proba: np.ndarray | None, true_proba: np.ndarray,
                 presence: np.ndarray, y: np.ndarray) -> None:
        self.metric, self.proba, self.true_proba = metric, proba, true_proba
        self.presence, self.y = presence, y
        self.fallback = presence / np.maximum(presence.sum(axis=1, keepdims=True), 1.0)

    def losses(self, counts: np.ndarray, pool: np.ndarray) -> np.ndarray:
        weighted = counts * self.presence
        denominator = weighted.sum(axis=1, keepdims=True) + self.presence[:, pool]
        used = denominator > 0
        safe = np.where(used, denominator, 1.0)
        if self.metric == "nll":
            numerator = ((weighted * self.true_proba).sum(axis=1, keepdims=True)
                         + self.presence[:, pool] * self.true_proba[:, pool])
            fallback = (self.fallback * self.true_proba).sum(axis=1, keepdims=True)
            chosen = np.where(used, numerator / safe, fallback)
            return -np.log(np.maximum(chosen, 1e-12)).mean(axis=0)
        assert self.proba is not None
        running = mix(weighted, self.proba)
        fallback_mixture = mix(self.fallback, self.proba)
        loss = _LOSSES[self.metric]
        return np.array([
            loss(np.where(used[:, [i]],
                          (running + self.presence[:, [k]] * self.proba[:, k]) / safe[:, [i]],
                          fallback_mixture), self.y)
            for i, k in enumerate(pool)
        ])
