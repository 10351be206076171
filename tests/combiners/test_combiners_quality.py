"""Fusion quality on generated logits where each expert is reliable on different classes."""

from __future__ import annotations

import numpy as np
import pytest

from ensemble.combiners import list_combiners
from ensemble.combiners._math import softmax
from ensemble.metrics import accuracy, nll

ALL = list_combiners()


@pytest.fixture(scope="module")
def missing_sets(make):
    return make(3000, seed=0, missing=0.3), make(3000, seed=1, missing=0.3)


@pytest.fixture(scope="module")
def complete_scores(train_set, test_set, combiner_factory):
    (train, y), (test, y_test) = train_set, test_set
    scores = {}
    for name in ALL:
        proba = combiner_factory(name).fit(train, y).predict_proba(test)
        scores[name] = (accuracy(y_test, proba), nll(y_test, proba))
    return scores


def _single_expert_scores(test, y_test) -> list[tuple[float, float]]:
    return [
        (accuracy(y_test, softmax(test.logits[m])), nll(y_test, softmax(test.logits[m])))
        for m in test.expert_names
    ]


@pytest.mark.parametrize("name", ALL)
def test_each_combiner_beats_the_best_single_expert(name, complete_scores, test_set) -> None:
    test, y_test = test_set
    singles = _single_expert_scores(test, y_test)
    best_accuracy = max(a for a, _ in singles)
    best_nll = min(n for _, n in singles)
    fused_accuracy, fused_nll = complete_scores[name]
    assert fused_accuracy > best_accuracy + 0.1
    assert fused_nll < best_nll - 0.3


def test_gating_beats_fixed_weight_voting(complete_scores) -> None:
    gate_accuracy, gate_nll = complete_scores["gating"]
    vote_accuracy, vote_nll = complete_scores["voting"]
    assert gate_accuracy > vote_accuracy + 0.01
    assert gate_nll < vote_nll - 0.1


@pytest.mark.parametrize("name", ALL)
def test_thirty_percent_missing_per_modality(name, missing_sets, combiner_factory) -> None:
    (train, y), (test, y_test) = missing_sets
    mask = np.asarray(test.mask)
    assert 0.25 < 1 - mask.mean() < 0.35
    proba = combiner_factory(name).fit(train, y).predict_proba(test)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    for j, modality in enumerate(test.expert_names):
        rows = ~mask[:, j] & (mask.sum(axis=1) >= 2)
        available = [softmax(test.logits[m][rows]) for m in test.expert_names if m != modality]
        best = max(accuracy(y_test[rows], p) for p in available)
        assert accuracy(y_test[rows], proba[rows]) > best + 0.05, modality
