"""A combiner of the user's own with no ONNX graph (no ``fusion_module``), shared by the
export tests (a plain module: no conftest)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ensemble.combiners import Combiner


class MedianCombiner(Combiner):
    """The per-class median of the experts' log-probabilities."""

    def __init__(self, *, calibrate: bool = False) -> None:
        self.calibrate = calibrate

    def _fit(self, data: Any, y: np.ndarray) -> None:
        self.fitted_ = True

    def _log_proba(self, data: Any) -> np.ndarray:
        return np.median(data.log_probs, axis=1)
