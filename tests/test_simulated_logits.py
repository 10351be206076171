"""ensemble.simulated_logits: shapes, masks, determinism and complementary experts."""

from __future__ import annotations

import numpy as np
import pytest

from ensemble.logits import LogitSet
from ensemble.simulated_logits import complementary_logits, expert_blocks


def test_shapes_names_and_ids() -> None:
    logits, y = complementary_logits(500, n_classes=9, n_experts=4, n_features=6, seed=3)
    assert isinstance(logits, LogitSet)
    assert logits.expert_names == ("e0", "e1", "e2", "e3")
    assert logits.class_names == tuple(f"c{k}" for k in range(9))
    assert logits.n_rows == 500 and y.shape == (500,)
    assert y.dtype.kind == "i" and y.min() >= 0 and y.max() < 9
    assert logits.mask.shape == (500, 4)
    for name in logits.expert_names:
        assert logits.logits[name].shape == (500, 9)
        assert logits.features[name].shape == (500, 6)
    assert len(set(logits.ids)) == 500


def test_fit_and_test_sets_share_no_ids() -> None:
    fit, _ = complementary_logits(200, seed=0)
    test, _ = complementary_logits(200, seed=1)
    assert not set(fit.ids) & set(test.ids)


def test_mask_drops_at_most_one_expert_and_keeps_one() -> None:
    logits, _ = complementary_logits(4000, missing_rate=0.5, seed=2)
    absent = (~logits.mask).sum(axis=1)
    assert absent.max() == 1
    assert logits.mask.any(axis=1).all()
    assert 0.45 < (absent == 1).mean() < 0.55
    full, _ = complementary_logits(300, missing_rate=0.0, seed=2)
    assert full.mask.all()
    alone, _ = complementary_logits(300, n_experts=1, missing_rate=1.0, seed=2)
    assert alone.mask.all()  # the only expert is never dropped


def test_same_seed_same_data_other_seed_other_data() -> None:
    a, ya = complementary_logits(300, seed=5)
    b, yb = complementary_logits(300, seed=5)
    c, yc = complementary_logits(300, seed=6)
    np.testing.assert_array_equal(ya, yb)
    np.testing.assert_array_equal(a.mask, b.mask)
    for name in a.expert_names:
        np.testing.assert_array_equal(a.logits[name], b.logits[name])
        np.testing.assert_array_equal(a.features[name], b.features[name])
    assert not np.array_equal(a.logits["e0"], c.logits["e0"])
    assert not np.array_equal(ya, yc)


def test_each_expert_is_better_on_its_own_classes() -> None:
    logits, y = complementary_logits(6000, seed=0)
    owner = expert_blocks(logits.n_classes, len(logits.expert_names))
    probas = logits.probabilities()
    for j, name in enumerate(logits.expert_names):
        present = logits.present(name)
        right = probas[name].argmax(axis=1) == y
        own = right[present & (owner[y] == j)].mean()
        other = right[present & (owner[y] != j)].mean()
        assert own > other + 0.3, (name, own, other)


def test_features_carry_the_signal() -> None:
    from sklearn.linear_model import LogisticRegression

    fit, y_fit = complementary_logits(2000, hard_share=0.0, missing_rate=0.0, seed=0)
    test, y_test = complementary_logits(2000, hard_share=0.0, missing_rate=0.0, seed=1)
    model = LogisticRegression(max_iter=500).fit(np.hstack(list(fit.features.values())), y_fit)
    accuracy = model.score(np.hstack(list(test.features.values())), y_test)
    assert accuracy > 0.6  # chance is 1/12: the fit and test sets share the embeddings


def test_hard_rows_hurt_and_fusing_helps() -> None:
    easy, y_easy = complementary_logits(3000, hard_share=0.0, seed=0)
    hard, y_hard = complementary_logits(3000, hard_share=1.0, seed=0)

    def accuracy(logits: LogitSet, y: np.ndarray, name: str) -> float:
        present = logits.present(name)
        return float((logits.probabilities()[name].argmax(axis=1) == y)[present].mean())

    assert accuracy(hard, y_hard, "e0") < accuracy(easy, y_easy, "e0")
    probas = easy.probabilities()
    mean = sum(probas[m] * easy.mask[:, [j]] for j, m in enumerate(easy.expert_names))
    fused = float((mean.argmax(axis=1) == y_easy).mean())
    assert fused > max(accuracy(easy, y_easy, m) for m in easy.expert_names) + 0.1


@pytest.mark.parametrize("kwargs", [{"n_rows": 0}, {"hard_share": 1.5}, {"missing_rate": -0.1},
                                    {"n_experts": 13}, {"n_features": 0}])
def test_bad_arguments_raise(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        complementary_logits(**{"n_rows": 10, **kwargs})
