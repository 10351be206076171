"""Temperature scaling."""

from __future__ import annotations

import numpy as np
import pytest

from ensemble.combiners import TemperatureScaler
from ensemble.exceptions import InvalidLogitsError, LabelError, NotFittedError
from ensemble.metrics import ece, nll


def _overconfident(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    return 3.0 * (2.0 * np.eye(4)[y] + rng.normal(0, 1.2, (n, 4))), y


def test_temperature_softens_overconfident_logits_and_improves_nll() -> None:
    logits, y = _overconfident(2000, 0)
    held_out, y_held_out = _overconfident(2000, 1)
    scaler = TemperatureScaler().fit(logits, y)
    assert 2.0 < scaler.temperature_ < 5.0
    calibrated = scaler.predict_proba(held_out)
    raw_held = np.exp(held_out - held_out.max(1, keepdims=True))
    raw_held /= raw_held.sum(1, keepdims=True)
    assert nll(y_held_out, calibrated) < nll(y_held_out, raw_held) - 0.1
    assert ece(y_held_out, calibrated) < ece(y_held_out, raw_held)
    np.testing.assert_array_equal(calibrated.argmax(1), raw_held.argmax(1))


def test_errors() -> None:
    with pytest.raises(NotFittedError):
        TemperatureScaler().transform(np.zeros((2, 3)))
    with pytest.raises(InvalidLogitsError):
        TemperatureScaler().fit(np.full((2, 3), np.nan), [0, 1])
    with pytest.raises(LabelError):
        TemperatureScaler().fit(np.zeros((2, 3)), [0, 3])
