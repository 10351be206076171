"""ensemble.metrics against scikit-learn and hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, log_loss

from ensemble.exceptions import InvalidLogitsError, LabelError
from ensemble.metrics import (
    accuracy,
    brier,
    ece,
    evaluate,
    format_report,
    macro_f1,
    nll,
    oracle_accuracy,
)

RNG = np.random.default_rng(0)
Y = RNG.integers(0, 4, 500)
PROBA = RNG.dirichlet(np.ones(4), 500)


def test_against_sklearn() -> None:
    assert accuracy(Y, PROBA) == pytest.approx((PROBA.argmax(1) == Y).mean())
    assert macro_f1(Y, PROBA) == pytest.approx(f1_score(Y, PROBA.argmax(1), average="macro"))
    assert nll(Y, PROBA) == pytest.approx(log_loss(Y, PROBA, labels=range(4)))
    assert brier(Y, PROBA) == pytest.approx(((PROBA - np.eye(4)[Y]) ** 2).sum(1).mean())


def test_ece_is_zero_when_calibrated_and_positive_when_not() -> None:
    y = np.array([0, 0, 1, 1])
    perfect = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    assert ece(y, perfect) == pytest.approx(0.0)
    assert ece(y, perfect[::-1]) == pytest.approx(1.0)


def test_oracle_accuracy() -> None:
    y = np.array([0, 1, 2])
    a = np.eye(3)[[0, 0, 0]]
    b = np.eye(3)[[1, 1, 1]]
    assert oracle_accuracy(y, {"a": a, "b": b}) == pytest.approx(2 / 3)
    assert oracle_accuracy(y, {"a": a, "b": b}, mask={"b": [True, False, True]}) == 1 / 3


def test_evaluate_and_report() -> None:
    scores = evaluate(Y, PROBA)
    assert set(scores) == {"accuracy", "macro_f1", "nll", "brier", "ece"}
    table = format_report({"model": scores})
    assert table.splitlines()[0].startswith("| model | accuracy")


def test_bad_input() -> None:
    with pytest.raises(LabelError, match="lie in"):
        accuracy(np.array([0, 5]), np.full((2, 3), 1 / 3))
    with pytest.raises(InvalidLogitsError):
        nll(np.array([], dtype=int), np.zeros((0, 3)))
    with pytest.raises(InvalidLogitsError, match="NaN"):
        brier(np.array([0]), np.array([[np.nan, 1.0]]))
