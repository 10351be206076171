"""Pattern routes: which answer a fitted combiner gives for each set of present experts.

A combiner learns mostly from the availability patterns it sees: on rows where some experts
are missing it can be worse than the best expert that is there (the contract says it must
not be). Routing fixes that per pattern. Every pattern (the set of present experts, coded as
the bits ``sum(mask[j] << j)``) maps to one of:

- :data:`FUSE` (``-1``): the combiner's own fused answer;
- ``j`` in ``[0, M)``: expert ``j``'s own (temperature-calibrated) distribution;
- :data:`average <AVERAGE_OFFSET>` ``M``: the plain average of the present experts'
  probabilities.

A pattern with one expert always routes to that expert (nothing to fuse). For patterns with
two or more, :func:`fit_routes` (the *pattern guard*) scores copies of the combiner on
held-out fit rows (3-fold cross-validation up to 3000 rows, so every row is held out once;
beyond that one split of at most 6000 rows, a third held out), masked down to each
pattern, against each present expert alone and their plain average. A pattern moves away from
fusion only when an alternative is better beyond the noise: with ``b`` held-out rows that
the alternative gets right and the fused answer wrong, and ``c`` the reverse, the
alternative must win by ``b - c > sqrt(b + c)`` (one standard deviation of the paired
difference, McNemar's statistic). Within that noise the combiner keeps fusing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.base import clone

from ._math import expert_log_probs, log_softmax, masked_weights, mix

if TYPE_CHECKING:
    from ..logits import LogitSet
    from .base import Combiner

__all__ = [
    "FUSE",
    "MAX_ROUTED_EXPERTS",
    "PatternCheck",
    "apply_routes",
    "check_routes",
    "default_routes",
    "describe_route",
    "fit_routes",
    "paired_margin",
    "pattern_codes",
    "pattern_name",
    "set_guard",
]

FUSE = -1
#: Tables have ``2 ** M`` entries; more experts than this keep the one-expert rule only.
MAX_ROUTED_EXPERTS = 16
#: The guard fits its copy on at most this many rows (two thirds of them) and checks on
#: the rest, so it costs at most a small fixed fit however large the fit data.
GUARD_ROWS = 6000
#: Up to this many fit rows the guard cross-validates (every row held out once).
CV_ROWS = 3000
#: A pattern is checked only when at least this many held-out rows can show it.
MIN_PATTERN_ROWS = 10
_HOLDOUT_SHARE = 1 / 3
_FOLDS = 3
_ALL_PATTERNS_UP_TO = 5


@dataclass(frozen=True)
class PatternCheck:
    """What the pattern guard measured for one pattern on its held-out rows."""

    pattern: str
    rows: int
    fused_accuracy: float
    alternative: str
    alternative_accuracy: float
    wins: int  # held-out rows the alternative gets right and fusion wrong
    losses: int  # ... and the reverse
    route: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pattern_codes(mask: np.ndarray) -> np.ndarray:
    """The ``[N]`` int64 pattern code of each row of a ``[N, M]`` presence mask."""
    bits = np.left_shift(1, np.arange(mask.shape[1], dtype=np.int64))
    return np.asarray(mask, dtype=np.int64) @ bits


def default_routes(n_experts: int) -> np.ndarray:
    """Every pattern fused, except that a lone expert answers for itself."""
    routes = np.full(1 << n_experts, FUSE, dtype=np.int16)
    routes[1 << np.arange(n_experts)] = np.arange(n_experts)
    return routes


def pattern_name(code: int, expert_names: Sequence[str]) -> str:
    """``"image+text"`` for the experts whose bits are set in ``code``."""
    return "+".join(name for j, name in enumerate(expert_names) if code >> j & 1) or "(none)"


def describe_route(route: int, expert_names: Sequence[str]) -> str:
    """``"fused"``, an expert's name or ``"average"``."""
    if route == FUSE:
        return "fused"
    return expert_names[route] if route < len(expert_names) else "average"


def check_routes(routes: np.ndarray, n_experts: int) -> np.ndarray:
    """``routes`` as int16 after checking shape and values (``ValueError`` otherwise)."""
    table = np.asarray(routes)
    if table.shape != (1 << n_experts,) or table.dtype.kind not in "iu":
        raise ValueError(f"pattern routes have shape {table.shape} and dtype {table.dtype}, "
                         f"expected ({1 << n_experts},) integers")
    if table.min() < FUSE or table.max() > n_experts:
        raise ValueError(f"pattern routes must lie in [{FUSE}, {n_experts}]")
    codes = np.arange(table.size)
    alone = (table >= 0) & (table < n_experts)
    if (alone & ((codes >> np.where(alone, table, 0)) & 1 == 0)).any():
        raise ValueError("pattern routes name an expert outside its pattern")
    return table.astype(np.int16)


def apply_routes(routes: np.ndarray, mask: np.ndarray, log_probs: np.ndarray,
                 fused: np.ndarray) -> np.ndarray:
    """Replace the rows of normalised ``fused`` ``[N, C]`` whose pattern routes elsewhere
    (in place); ``log_probs`` is the ``[N, M, C]`` stack of the experts' log-probabilities,
    zero where absent."""
    route = routes[pattern_codes(mask)]
    n_experts = mask.shape[1]
    alone = np.flatnonzero((route >= 0) & (route < n_experts))
    if alone.size:
        fused[alone] = log_softmax(log_probs[alone, route[alone]].astype(np.float64))
    averaged = np.flatnonzero(route == n_experts)
    if averaged.size:
        equal = masked_weights(np.ones(n_experts), mask[averaged])
        mean = mix(equal, log_probs[averaged], exp=True)  # soft voting's plain average
        fused[averaged] = log_softmax(np.log(np.maximum(mean, 1e-300)))
    return fused


def paired_margin(right: np.ndarray, versus: np.ndarray) -> float:
    """How far ``right`` (rows a model gets right) beats ``versus`` beyond the noise:
    ``(b - c) - sqrt(b + c)`` with ``b`` the rows only it gets right and ``c`` the rows only
    ``versus`` does (one standard deviation of the paired difference); > 0 is a real win."""
    wins = int((right & ~versus).sum())
    losses = int((versus & ~right).sum())
    return (wins - losses) - math.sqrt(wins + losses)


def set_guard(combiner: Combiner, enabled: bool) -> Combiner:
    """``combiner`` with its ``pattern_guard`` set to ``enabled`` (in place; a combiner
    without the parameter is returned unchanged)."""
    if "pattern_guard" in combiner.get_params(deep=False):
        combiner.set_params(pattern_guard=enabled)
    return combiner


def _checked_patterns(mask: np.ndarray) -> list[int]:
    """The patterns of two or more experts to check: all of them for up to
    :data:`_ALL_PATTERNS_UP_TO` experts, else those the rows show."""
    n_experts = mask.shape[1]
    codes = (range(1 << n_experts) if n_experts <= _ALL_PATTERNS_UP_TO
             else np.unique(pattern_codes(mask)).tolist())
    return [int(code) for code in codes if int(code).bit_count() >= 2]


def _guard_splits(n_rows: int, rng: np.random.Generator
                  ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, held-out) row splits: ``_FOLDS``-fold over every row up to
    :data:`CV_ROWS` rows (each row held out once), else one split of at most
    :data:`GUARD_ROWS` rows, a third held out."""
    rows = rng.permutation(n_rows)
    if n_rows <= CV_ROWS:
        folds = np.array_split(rows, _FOLDS)
        return [(np.sort(np.concatenate(folds[:k] + folds[k + 1:])), np.sort(folds[k]))
                for k in range(_FOLDS)]
    rows = rows[:GUARD_ROWS]
    n_held = int(rows.size * _HOLDOUT_SHARE)
    return [(np.sort(rows[n_held:]), np.sort(rows[:n_held]))]


def _held_out_answers(copy: Combiner, held_set: LogitSet, codes: list[int]
                      ) -> dict[int, tuple[np.ndarray, dict[int, np.ndarray]]]:
    """Per pattern: the held-out rows that can show it, and each answer's ``[n, C]`` scores
    there (``FUSE``: the combiner masked down to the pattern; ``j``: expert ``j``; ``M``:
    the plain average)."""
    names = held_set.expert_names
    n_experts = len(names)
    mask = np.asarray(held_set.mask)
    log_probs = expert_log_probs([held_set.logits[m] for m in names], copy.temperatures_, mask)
    answers = {}
    for code in codes:
        members = [j for j in range(n_experts) if code >> j & 1]
        rows = np.flatnonzero(mask[:, members].all(axis=1))
        if rows.size == 0:
            continue
        pattern_mask = np.zeros((rows.size, n_experts), dtype=bool)
        pattern_mask[:, members] = True
        scores = {FUSE: copy.predict_logits(held_set.subset(rows).with_mask(pattern_mask))}
        scores.update({j: log_probs[rows, j] for j in members})
        scores[n_experts] = np.log(np.exp(log_probs[rows][:, members]).mean(axis=1))
        answers[code] = (rows, scores)
    return answers


def fit_routes(combiner: Combiner, logit_set: LogitSet, labels: np.ndarray, *,
               seed: int) -> tuple[np.ndarray, list[PatternCheck]]:
    """The pattern guard (see the module docstring): routes for ``combiner`` (unfitted;
    fitted here on copies) on ``logit_set`` with integer ``labels``, and what it measured.
    Too few rows to check a pattern leave it fused."""
    names = logit_set.expert_names
    n_experts = len(names)
    if n_experts > MAX_ROUTED_EXPERTS:
        raise ValueError(f"pattern routes cover at most {MAX_ROUTED_EXPERTS} experts")
    routes = default_routes(n_experts)
    if n_experts < 2 or logit_set.n_rows < MIN_PATTERN_ROWS:
        return routes, []
    codes = _checked_patterns(np.asarray(logit_set.mask))
    right: dict[int, dict[int, list[np.ndarray]]] = {}
    for train, held in _guard_splits(logit_set.n_rows, np.random.default_rng(seed)):
        copy = set_guard(clone(combiner), False).fit(logit_set.subset(train), labels[train])
        for code, (rows, scores) in _held_out_answers(copy, logit_set.subset(held),
                                                      codes).items():
            y = labels[held][rows]
            for option, values in scores.items():
                right.setdefault(code, {}).setdefault(option, []).append(
                    values.argmax(axis=1) == y)
    checks: list[PatternCheck] = []
    for code in codes:
        if code not in right:
            continue
        correct = {option: np.concatenate(parts) for option, parts in right[code].items()}
        fused_right = correct.pop(FUSE)
        if fused_right.size < MIN_PATTERN_ROWS:
            continue
        best, best_margin = FUSE, 0.0
        for option, option_right in correct.items():
            margin = paired_margin(option_right, fused_right)
            if margin > best_margin:
                best, best_margin = option, margin
        alternative = best if best != FUSE else max(correct, key=lambda o: correct[o].sum())
        alt_right = correct[alternative]
        routes[code] = best
        checks.append(PatternCheck(
            pattern=pattern_name(code, names), rows=int(fused_right.size),
            fused_accuracy=float(fused_right.mean()),
            alternative=describe_route(alternative, names),
            alternative_accuracy=float(alt_right.mean()),
            wins=int((alt_right & ~fused_right).sum()),
            losses=int((fused_right & ~alt_right).sum()),
            route=describe_route(best, names),
        ))
    return routes, checks
