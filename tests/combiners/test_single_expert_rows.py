"""The combiner contract: on a row with exactly one expert present, every combiner returns
that expert's own (calibrated) distribution, so it is never worse than that expert."""

from __future__ import annotations

import numpy as np
import pytest

from ensemble.combiners import list_combiners
from ensemble.labels import softmax


@pytest.mark.parametrize("name", list_combiners())
def test_one_present_expert_decides_the_row(name: str, make, combiner_factory) -> None:
    train, y = make(600, seed=3, missing=0.2)
    test, _ = make(300, seed=4)
    params = ({"candidates": [combiner_factory("voting"), combiner_factory("stacking")]}
              if name == "selection" else {})
    combiner = combiner_factory(name, **params).fit(train, y)
    names = test.expert_names
    for j, expert in enumerate(names):
        mask = np.zeros((test.n_rows, len(names)), dtype=bool)
        mask[:, j] = True
        proba = combiner.predict_proba(test.with_mask(mask))
        own = softmax(test.logits[expert] / combiner.temperatures_[j], axis=1)
        np.testing.assert_array_equal(proba.argmax(axis=1), own.argmax(axis=1))
        np.testing.assert_allclose(proba, own, atol=1e-5)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)


def test_rows_with_two_experts_are_still_fused(make, combiner_factory) -> None:
    train, y = make(600, seed=3)
    test, _ = make(300, seed=4)
    combiner = combiner_factory("stacking").fit(train, y)
    mask = np.zeros((test.n_rows, 3), dtype=bool)
    mask[:, :2] = True
    proba = combiner.predict_proba(test.with_mask(mask))
    alone = softmax(test.logits[test.expert_names[0]], axis=1)
    assert not np.allclose(proba, alone, atol=1e-3)
