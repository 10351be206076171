"""``auto``: the candidate combiner that cross-validates best on the fit logits.

The fit logits are already held out from the experts (a validation split, or out-of-fold
under cross-fitting); ``auto`` adds the second level: K-fold cross-validation of every
candidate on those logits, then the winner refitted on all of them.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from ..exceptions import ConfigError, EnsembleError
from ..logits import LogitSet
from ._checks import check_choice
from ._inputs import LogitsLike, MaskLike
from .base import Combiner, FusionData
from .feature_stacking import FeatureStacking
from .gating import GatingCombiner
from .graph import CombinerGraph
from .pattern_routes import paired_margin, set_guard
from .registry import create_combiner, list_combiners, load_combiner, register_combiner
from .selection import EnsembleSelection
from .stacking import StackingCombiner
from .voting import VotingCombiner

__all__ = ["DEFAULT_CHOICES", "AutoCombiner"]

_CHOSEN_DIR = "chosen"
_SKLEARN_MAX_ITER = 1000
_Factory = Callable[[tuple[str, ...]], list[tuple[str, Combiner]]]

#: The menu, simplest first (exact ties go to the simpler candidate).
_MENU: Mapping[str, _Factory] = {
    "experts": lambda names: [
        (f"expert:{name}", VotingCombiner(weights={m: float(m == name) for m in names}))
        for name in names
    ],
    "average": lambda names: [("average", VotingCombiner())],
    "voting": lambda names: [("voting", VotingCombiner(weights="fit"))],
    "selection": lambda names: [("selection", EnsembleSelection())],
    "sklearn_stacking": lambda names: [(
        "sklearn_stacking",
        StackingCombiner(meta_learner=LogisticRegression(max_iter=_SKLEARN_MAX_ITER)),
    )],
    "stacking": lambda names: [("stacking", StackingCombiner())],
    "gating": lambda names: [("gating", GatingCombiner())],
    "feature_stacking": lambda names: [("feature_stacking", FeatureStacking())],
}
#: What ``choices=None`` tries.
DEFAULT_CHOICES: tuple[str, ...] = tuple(_MENU)
_METRICS = ("accuracy", "nll")


def _is_plain(name: str) -> bool:
    """An unfitted answer: one expert alone or the plain average."""
    return name == "average" or name.startswith("expert:")


def _candidates(names: Sequence[str], expert_names: tuple[str, ...]
                ) -> list[tuple[str, Combiner]]:
    """The named candidates, unguarded (the winner is refitted with the guard)."""
    built: list[tuple[str, Combiner]] = []
    for name in names:
        factory = _MENU.get(name)
        built += (factory(expert_names) if factory is not None
                  else [(name, create_combiner(name))])
    return [(name, set_guard(combiner, False)) for name, combiner in built]


@register_combiner("auto")
class AutoCombiner(Combiner):
    """Cross-validates every candidate on the fit logits and keeps the best.

    ``choices``: names from the menu ``"experts"`` (each expert alone: the best expert
    as a baseline), ``"average"`` (plain probability averaging), ``"voting"`` (fitted
    weights), ``"selection"``, ``"sklearn_stacking"`` (scikit-learn's stacker: a
    ``LogisticRegression`` on the experts' log-probabilities), ``"stacking"``, ``"gating"``,
    ``"feature_stacking"`` (skipped when the logits carry no features), or any other
    registered combiner's name (default parameters). Each is scored by ``cv``-fold
    stratified cross-validation on the fit rows: ``metric="accuracy"`` (default) ranks by
    out-of-fold accuracy, then NLL; ``"nll"`` the reverse. Accuracy first because NLL
    alone can prefer the strong expert when a weak one only breaks its ties. Exact ties go
    to the simpler candidate (menu order). A fitted candidate must also beat the best
    plain one (an expert alone, or ``"average"``) beyond the noise of the paired
    out-of-fold answers, ``b - c > sqrt(b + c)`` (the pattern guard's rule), or the plain
    one is kept: with few rows per class a one-row lead is luck, so the simple combiners
    win unless a learned one is measurably better. The winner is refitted on every fit row
    (with ``pattern_guard``) and predicts.

    ``chosen_`` names the winner, ``chosen_combiner_`` is it, and ``cv_results_`` lists
    every candidate's out-of-fold accuracy, NLL and fit seconds (not saved: a saved
    combiner is the same bytes every run), or why a candidate was skipped;
    :meth:`summary` says it in one line for reports and ``explain``.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> y = rng.integers(0, 3, 300)
        >>> logits = {"image": 3 * np.eye(3)[y] + rng.normal(size=(300, 3)),
        ...           "text": rng.normal(size=(300, 3))}
        >>> auto = AutoCombiner(choices=["experts", "average", "stacking"]).fit(logits, y)
        >>> auto.chosen_ in {"expert:image", "stacking"}
        True
    """

    #: The winner reads ``data.logits`` (every row): no chunking.
    _predict_chunk_rows = None
    #: The winner carries the pattern guard; ``auto`` keeps only the one-expert rule.
    _guards_itself: ClassVar[bool] = True

    def __init__(
        self,
        *,
        choices: Sequence[str] | None = None,
        cv: int = 5,
        metric: str = "accuracy",
        calibrate: bool = False,
        pattern_guard: bool = True,
        random_state: int | None = 0,
    ) -> None:
        self.choices = choices
        self.cv = cv
        self.metric = metric
        self.calibrate = calibrate
        self.pattern_guard = pattern_guard
        self.random_state = random_state

    def _check_params(self) -> None:
        check_choice("metric", self.metric, _METRICS)
        if not isinstance(self.cv, int) or isinstance(self.cv, bool) or self.cv < 2:
            raise ConfigError(f"cv must be an integer >= 2, got {self.cv!r}.")
        names = self._candidate_names()
        if not names or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"choices must be a non-empty list of names, got {names!r}.")
        known = set(_MENU) | set(list_combiners())
        unknown = [n for n in names if n not in known or n == self.registry_name]
        if unknown:
            raise ConfigError(
                f"auto cannot try {unknown!r}; choices are {sorted(_MENU)!r} or the "
                f"registered combiners {sorted(set(list_combiners()) - {'auto'})!r}."
            )

    def _candidate_names(self) -> list[str]:
        return list(DEFAULT_CHOICES if self.choices is None else self.choices)

    # -- fitting ----------------------------------------------------------------------------

    def _fit(self, data: FusionData, y: np.ndarray) -> None:
        logit_set = data.logits
        if logit_set.n_rows < 2 * self.cv:
            raise ConfigError(
                f"auto needs at least {2 * self.cv} fit rows for {self.cv}-fold "
                f"cross-validation, got {logit_set.n_rows}; lower cv or pick a combiner."
            )
        folds = self._folds(y)
        results: list[dict[str, Any]] = []
        right: dict[str, np.ndarray] = {}
        built = _candidates(self._candidate_names(), self.expert_names_)
        for name, candidate in built:
            row, right_rows = self._cross_validate(name, candidate, logit_set, y, folds)
            results.append(row)
            if right_rows is not None:
                right[name] = right_rows
        scored = [r for r in results if "skipped" not in r]
        if not scored:
            raise ConfigError(f"auto could fit none of its candidates: {results!r}")
        order = {name: i for i, (name, _) in enumerate(built)}
        key = ((lambda r: (-r["accuracy"], r["nll"], order[r["name"]]))
               if self.metric == "accuracy"
               else (lambda r: (r["nll"], -r["accuracy"], order[r["name"]])))
        winner = min(scored, key=key)
        plain = [r for r in scored if _is_plain(r["name"])]
        if plain and not _is_plain(winner["name"]):
            # A fitted combiner must beat the best plain one (an expert alone, averaging)
            # beyond the noise of the paired CV answers, or the plain one is kept: with few
            # rows per class a one-row lead is luck, and the plain answer generalises.
            fallback = min(plain, key=key)
            if paired_margin(right[winner["name"]], right[fallback["name"]]) <= 0:
                winner = fallback
        for result in results:
            result["chosen"] = result is winner
        chosen = set_guard(dict(built)[winner["name"]], self.pattern_guard)
        self.chosen_ = str(winner["name"])
        self.chosen_combiner_ = chosen.fit(logit_set, y)
        self.cv_results_ = results

    def _folds(self, y: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Stratified folds; fewer than ``cv`` (``cv_`` records how many) when even the
        largest class has fewer rows than ``cv``."""
        seed = 0 if self.random_state is None else int(self.random_state)
        self.cv_ = max(2, min(self.cv, int(np.bincount(y).max())))
        splitter = StratifiedKFold(self.cv_, shuffle=True, random_state=seed)
        with warnings.catch_warnings():  # classes rarer than the folds are fine here
            warnings.simplefilter("ignore", UserWarning)
            return list(splitter.split(np.zeros(y.size), y))

    def _cross_validate(self, name: str, candidate: Combiner, logit_set: LogitSet,
                        y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]]
                        ) -> tuple[dict[str, Any], np.ndarray | None]:
        """The candidate's CV row for ``cv_results_`` and which fit rows it got right."""
        log_proba = np.zeros((y.size, self.n_classes_))
        start = time.perf_counter()
        try:
            for train, test in folds:
                model = clone(candidate).fit(logit_set.subset(train), y[train])
                log_proba[test] = model.predict_logits(logit_set.subset(test))
        except EnsembleError as err:  # e.g. feature stacking on logits without features
            return {"name": name, "skipped": f"{type(err).__name__}: {err}"}, None
        correct = log_proba.argmax(axis=1) == y
        return {
            "name": name,
            "accuracy": float(correct.mean()),
            "correct": int(correct.sum()),
            "nll": float(-log_proba[np.arange(y.size), y].mean()),
            "fit_s": round(time.perf_counter() - start, 3),
        }, correct

    # -- prediction -------------------------------------------------------------------------

    def _log_proba(self, data: FusionData) -> np.ndarray:
        return self.chosen_combiner_.predict_logits(data.logits)

    def fusion_module(self) -> torch.nn.Module:
        return _AutoModule(CombinerGraph(self.chosen_combiner_))

    def reads_features(self) -> bool:
        return self.chosen_combiner_.reads_features()

    def explain_weights(self, logits: LogitsLike, *, mask: MaskLike = None
                        ) -> tuple[np.ndarray, tuple[str, ...], str] | None:
        """The winner's weights."""
        self._check_fitted()
        return self.chosen_combiner_.explain_weights(self._validated_set(logits, mask))

    def summary(self) -> dict[str, Any]:
        """The winner and why: its cross-validated accuracy against the runner-up, the best
        expert and plain averaging."""
        self._check_fitted()
        scored = [r for r in self.cv_results_ if "skipped" not in r]
        experts = [r for r in scored if r["name"].startswith("expert:")]
        average = [r for r in scored if r["name"] == "average"]
        reference = {
            "best_expert": max(experts, key=lambda r: r["accuracy"]) if experts else None,
            "average": average[0] if average else None,
        }
        why = f"{self.cv_}-fold CV accuracy {_pct(self._winner())}"
        for label, row in reference.items():
            if row is not None and row["name"] != self.chosen_:
                named = "" if row["name"] == label else f" ({row['name']})"
                why += f"; {label.replace('_', ' ')}{named} {_pct(row)}"
        chosen = self.chosen_combiner_.summary()
        chosen.pop("name", None)
        return {**super().summary(), **chosen, "chose": self.chosen_, "why": why,
                "cv": [{k: r[k] for k in ("name", "accuracy", "nll") if k in r}
                       for r in self.cv_results_]}

    def _winner(self) -> dict[str, Any]:
        return next(r for r in self.cv_results_ if r.get("chosen"))

    # -- persistence ------------------------------------------------------------------------

    def _save_extra(self, directory: Path) -> None:
        self.chosen_combiner_.save(directory / _CHOSEN_DIR)

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        # Without the seconds: two runs of one recipe write identical artifacts.
        results = [{k: v for k, v in r.items() if k != "fit_s"} for r in self.cv_results_]
        return {}, {"chosen": self.chosen_, "cv_results": results, "cv": self.cv_}

    def _restore(self, arrays: dict[str, np.ndarray], state: dict[str, Any],
                 directory: Path) -> None:
        self.chosen_ = str(state["chosen"])
        self.cv_ = int(state["cv"])
        self.cv_results_ = list(state["cv_results"])
        if sum(bool(r.get("chosen")) for r in self.cv_results_) != 1:
            raise ValueError("cv_results must mark exactly one chosen candidate")
        self.chosen_combiner_ = load_combiner(directory / _CHOSEN_DIR)
        if tuple(self.chosen_combiner_.expert_names_) != tuple(self.expert_names_):
            raise ValueError("the chosen combiner was fitted on other experts")
        if tuple(self.chosen_combiner_.class_names_) != tuple(self.class_names_):
            raise ValueError("the chosen combiner was fitted on other classes")


def _pct(row: Mapping[str, Any] | None) -> str:
    return "n/a" if not row else f"{row['accuracy']:.3f}"


class _AutoModule(torch.nn.Module):
    """:meth:`AutoCombiner._log_proba` as a module: the winner's whole graph."""

    def __init__(self, chosen: CombinerGraph) -> None:
        super().__init__()
        self.chosen = chosen

    def forward(self, log_probs: torch.Tensor, mask: torch.Tensor, logits: torch.Tensor,
                features: list[torch.Tensor]) -> torch.Tensor:
        return self.chosen(logits, mask, *features)

