"""Simulated held-out logits of complementary experts (for benchmarks and tests; no torch).

:func:`complementary_logits` draws the logits (and small pre-logit features) that several
experts would produce on held-out examples, built so that fusing them pays off and so that a
combiner has something to learn beyond averaging:

* **complementary blocks** – the classes are split into ``n_experts`` contiguous blocks;
  expert ``j`` sees a strong signal for the classes of its own block and a weak one
  elsewhere (a photo model that is good at animals, a text model good at symbols, ...);
* **differently calibrated** – each expert's logits are multiplied by its own scale
  (1.0, 1.6, 0.7, repeating): one expert is over-, another under-confident;
* **hard examples** – on a share ``hard_share`` of the rows one random present expert fails:
  half of those times it is *confidently wrong* (the strong signal lands on a wrong class,
  as when an image is mistaken for a look-alike), otherwise it is *flat* (no signal and
  shrunken logits, as for a blank image or an empty text: the expert abstains); either way
  the expert's embedding shows it (a shift along a direction its classifier head ignores);
* **missing experts** – a share ``missing_rate`` of the rows lack one random expert (mask
  false, logits zero); every row keeps at least one expert.

The experts themselves (class blocks, calibration scales, embedding directions) depend on
``n_classes``, ``n_experts`` and ``n_features`` only, never on ``seed``: two calls with
different seeds are two samples of examples seen by the *same* experts, e.g. a fit set and a
test set.

Example:
    >>> fit, y_fit = complementary_logits(300, seed=0)
    >>> test, y_test = complementary_logits(300, seed=1)
    >>> fit.expert_names, fit.n_classes, test.features["e0"].shape
    (('e0', 'e1', 'e2'), 12, (300, 16))
"""

from __future__ import annotations

import numpy as np

from .logits import LogitSet

__all__ = ["complementary_logits", "expert_blocks"]

#: Signal added to the true class's logit by an expert on its own block of classes.
STRONG_SIGNAL = 3.0
#: Signal added to the true class's logit by an expert outside its own block.
WEAK_SIGNAL = 1.0
#: How much of the noise a flat (abstaining) expert keeps.
FLAT_SCALE = 0.2
#: How far a hard row's embedding moves along the expert's corruption direction.
CORRUPTION_SHIFT = 3.0
#: Per-expert multipliers of the logits (cycled): over- and under-confident experts.
CALIBRATION_SCALES = (1.0, 1.6, 0.7)


def expert_blocks(n_classes: int, n_experts: int) -> np.ndarray:
    """``[n_classes]`` int array: the expert whose block each class belongs to.

    Contiguous blocks of (nearly) equal size, expert 0 first.

    Example:
        >>> expert_blocks(5, 2).tolist()
        [0, 0, 0, 1, 1]
    """
    if n_experts < 1 or n_classes < n_experts:
        raise ValueError(f"need 1 <= n_experts <= n_classes, got {n_experts} experts for "
                         f"{n_classes} classes.")
    owner = np.empty(n_classes, dtype=np.int64)
    for j, block in enumerate(np.array_split(np.arange(n_classes), n_experts)):
        owner[block] = j
    return owner


def complementary_logits(
    n_rows: int,
    *,
    n_classes: int = 12,
    n_experts: int = 3,
    hard_share: float = 0.3,
    missing_rate: float = 0.2,
    seed: int = 0,
    n_features: int = 16,
) -> tuple[LogitSet, np.ndarray]:
    """Held-out logits of ``n_experts`` complementary experts on ``n_rows`` examples.

    Returns the :class:`~ensemble.logits.LogitSet` (experts ``"e0"``, ``"e1"``, ...;
    classes ``"c0"`` .. ``"c{n_classes-1}"``; ids ``"{seed}-{row}"``, so sets drawn with
    different seeds never share an id; ``features`` ``[n_rows, n_features]`` per expert) and
    the true labels ``[n_rows]`` as class indices. The labels are uniform over the classes.

    Per row and expert the embedding (``features``) is standard normal noise plus a signal
    along the direction of one class: the true class, with ``STRONG_SIGNAL`` when it is in
    the expert's block, else ``WEAK_SIGNAL``. The logits are the classifier head's readout
    of the embedding along the class directions (orthonormal when ``n_features >
    n_classes``: then each logit is the signal on its class plus standard normal noise),
    times the expert's calibration scale. A hard row's chosen expert is either confidently
    wrong (``STRONG_SIGNAL`` on a random wrong class) or flat (no signal, noise times
    ``FLAT_SCALE``), and its embedding moves ``CORRUPTION_SHIFT`` along the expert's
    corruption direction, which the logits do not see (an out-of-distribution input that
    the embedding shows and the classifier ignores: a gate reading the embeddings can tell
    which expert to distrust; one reading only the logits cannot). See the module
    docstring for the design.
    """
    if n_rows < 1:
        raise ValueError(f"n_rows must be positive, got {n_rows}.")
    if not 0.0 <= hard_share <= 1.0 or not 0.0 <= missing_rate <= 1.0:
        raise ValueError(f"hard_share and missing_rate must lie in [0, 1], got {hard_share} "
                         f"and {missing_rate}.")
    if n_features < 1:
        raise ValueError(f"n_features must be positive, got {n_features}.")
    owner = expert_blocks(n_classes, n_experts)
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n_rows)

    mask = np.ones((n_rows, n_experts), dtype=bool)
    if n_experts > 1:
        missing = np.flatnonzero(rng.random(n_rows) < missing_rate)
        mask[missing, rng.integers(0, n_experts, missing.size)] = False

    # The hard rows: one present expert each, confidently wrong or flat.
    hard_expert = np.full(n_rows, -1)
    hard = np.flatnonzero(rng.random(n_rows) < hard_share)
    for i in hard:
        hard_expert[i] = rng.choice(np.flatnonzero(mask[i]))
    confidently_wrong = rng.random(n_rows) < 0.5
    wrong_class = (y + rng.integers(1, n_classes, n_rows)) % n_classes  # never the true class

    logits: dict[str, np.ndarray] = {}
    features: dict[str, np.ndarray] = {}
    for j in range(n_experts):
        name = f"e{j}"
        strength = np.where(owner[y] == j, STRONG_SIGNAL, WEAK_SIGNAL)
        target = y.copy()
        noise_scale = np.ones(n_rows)
        is_hard = hard_expert == j
        wrong = is_hard & confidently_wrong
        flat = is_hard & ~confidently_wrong
        strength[wrong], target[wrong] = STRONG_SIGNAL, wrong_class[wrong]
        strength[flat], noise_scale[flat] = 0.0, FLAT_SCALE

        classes, corruption = _directions(n_classes, n_features, expert=j)
        emb = rng.normal(0.0, 1.0, (n_rows, n_features)) * noise_scale[:, None]
        emb += strength[:, None] * classes[target]
        emb[is_hard] += CORRUPTION_SHIFT * corruption
        # The classifier head reads the embedding along the class directions: the logits
        # are blind to the corruption direction, the embedding shows it.
        scores = emb @ classes.T * CALIBRATION_SCALES[j % len(CALIBRATION_SCALES)]
        scores[~mask[:, j]] = 0.0
        emb[~mask[:, j]] = 0.0
        logits[name] = scores.astype(np.float32)
        features[name] = emb.astype(np.float32)

    class_names = [f"c{k}" for k in range(n_classes)]
    ids = [f"{seed}-{i}" for i in range(n_rows)]
    return LogitSet(logits, class_names, ids=ids, mask=mask, features=features), y


def _directions(n_classes: int, n_features: int, *, expert: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Expert ``expert``'s embedding geometry, fixed per expert (not per sample), so fit and
    test sets agree: ``[n_classes, n_features]`` unit class directions (orthonormal when
    ``n_features > n_classes``) and one unit corruption direction (orthogonal to them then,
    so the logits do not see it)."""
    rng = np.random.default_rng([n_classes, n_features, expert])
    basis, _ = np.linalg.qr(rng.normal(0.0, 1.0, (n_features, n_features)))
    if n_features > n_classes:
        return basis[:, :n_classes].T.copy(), basis[:, n_classes].copy()
    vectors = rng.normal(0.0, 1.0, (n_classes + 1, n_features))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors[:n_classes], vectors[n_classes]
