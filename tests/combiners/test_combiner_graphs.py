"""Every combiner's torch graph (what the ONNX export writes) computes ``predict_logits``:
all kinds, meta-learners, fusions and calibration, on rows with every presence pattern."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from _custom_combiner import MedianCombiner
from sklearn.linear_model import LogisticRegression, RidgeClassifier, SGDClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import LinearSVC

from ensemble.combiners import create_combiner
from ensemble.combiners.graph import CombinerGraph
from ensemble.exceptions import ExportError
from ensemble.logits import LogitSet

NAMES = ["image", "text", "meta"]
N_ROWS, N_CLASSES = 300, 4


@pytest.fixture(scope="module")
def data() -> tuple[LogitSet, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, N_CLASSES, N_ROWS)
    logits = {m: ((2 + i) * np.eye(N_CLASSES)[y] + 1.5 * rng.normal(size=(N_ROWS, N_CLASSES))
                  ).astype(np.float32) for i, m in enumerate(NAMES)}
    features = {m: (np.eye(N_CLASSES)[y] @ rng.normal(size=(N_CLASSES, 5 + i))
                    + rng.normal(size=(N_ROWS, 5 + i))).astype(np.float32)
                for i, m in enumerate(NAMES)}
    mask = rng.random((N_ROWS, len(NAMES))) > 0.3
    mask[:15] = np.eye(len(NAMES), dtype=bool)[np.arange(15) % len(NAMES)]  # one expert
    mask[15:20] = False  # no expert at all
    for j, name in enumerate(NAMES):
        logits[name][~mask[:, j]] = 0.0
    logit_set = LogitSet(logits, [str(c) for c in range(N_CLASSES)],
                         mask={m: mask[:, j] for j, m in enumerate(NAMES)}, features=features)
    return logit_set, y, mask


CASES: list[tuple[str, dict[str, Any]]] = [
    ("voting", {}),
    ("voting", {"method": "hard", "weights": "fit"}),
    ("voting", {"method": "geometric", "calibrate": True}),
    ("stacking", {}),
    ("stacking", {"structure": "full",
                  "meta_features": ("log_proba", "entropy", "max_proba")}),
    ("stacking", {"meta_learner": LogisticRegression(max_iter=300)}),
    ("stacking", {"meta_learner": RidgeClassifier()}),
    ("stacking", {"meta_learner": SGDClassifier(loss="log_loss", random_state=0)}),
    ("stacking", {"meta_learner": LinearSVC(), "meta_features": ("entropy",)}),
    ("gating", {"max_epochs": 5}),
    ("gating", {"max_epochs": 5, "fusion": "logits", "calibrate": True}),
    ("selection", {}),
    ("selection", {"candidates": [create_combiner("stacking"),
                                  create_combiner("feature_stacking")]}),
    ("feature_stacking", {}),
    ("auto", {"choices": ["average", "stacking", "gating"], "cv": 3}),
    ("gating", {"max_epochs": 5, "read_features": False}),
    ("feature_stacking", {"include_log_proba": True,
                          "classifier": LogisticRegression(max_iter=200)}),
]


@pytest.mark.parametrize(("name", "params"), CASES,
                         ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_the_graph_computes_predict_logits(data: tuple[LogitSet, np.ndarray, np.ndarray],
                                           name: str, params: dict[str, Any]) -> None:
    logit_set, y, mask = data
    combiner = create_combiner(name, **params).fit(logit_set, y)
    expected = combiner.predict_logits(logit_set)
    inputs = [torch.from_numpy(np.stack([logit_set.logits[m] for m in NAMES], axis=1)),
              torch.from_numpy(mask)]
    if combiner.reads_features():
        inputs += [torch.from_numpy(logit_set.features[m]) for m in NAMES]
    with torch.no_grad():
        got = CombinerGraph(combiner).eval()(*inputs).double().numpy()
    np.testing.assert_allclose(np.exp(got), np.exp(expected), atol=1e-5)
    assert (got.argmax(axis=1) == expected.argmax(axis=1)).all()
    reads = ((name in ("feature_stacking", "gating") and params.get("read_features", True))
             or bool(params.get("candidates"))
             or getattr(combiner, "chosen_", "") in ("gating", "feature_stacking"))
    assert combiner.reads_features() == reads


def test_a_combiner_without_a_graph_names_itself(
        data: tuple[LogitSet, np.ndarray, np.ndarray]) -> None:
    logit_set, y, _ = data
    with pytest.raises(ExportError, match=r"MedianCombiner combiner .* fusion_module"):
        CombinerGraph(MedianCombiner().fit(logit_set, y))
    with pytest.raises(ExportError, match="KNeighborsClassifier meta-learner has no ONNX"):
        CombinerGraph(create_combiner("feature_stacking", classifier=KNeighborsClassifier()
                                      ).fit(logit_set, y))
    with pytest.raises(ExportError, match="modified_huber"):
        CombinerGraph(create_combiner(
            "stacking", meta_learner=SGDClassifier(loss="modified_huber")).fit(logit_set, y))


def test_selection_candidates_read_the_experts_in_their_own_order(
        data: tuple[LogitSet, np.ndarray, np.ndarray]) -> None:
    """A candidate fitted with the experts in another order gets its columns permuted."""
    logit_set, y, mask = data
    reordered = logit_set.select(tuple(reversed(NAMES)))
    candidates = [create_combiner(name).fit(reordered, y)
                  for name in ("stacking", "feature_stacking")]
    selection = create_combiner("selection", candidates=candidates, n_init=3).fit(logit_set, y)
    assert selection.counts_[len(NAMES):].sum() > 0
    inputs = [torch.from_numpy(np.stack([logit_set.logits[m] for m in NAMES], axis=1)),
              torch.from_numpy(mask), *(torch.from_numpy(logit_set.features[m]) for m in NAMES)]
    with torch.no_grad():
        got = CombinerGraph(selection).eval()(*inputs).double().numpy()
    np.testing.assert_allclose(np.exp(got), selection.predict_proba(logit_set), atol=1e-5)
