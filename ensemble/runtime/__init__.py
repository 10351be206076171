"""The torch-free runtime of exported predictors (ONNX Runtime + numpy).

    >>> from ensemble.runtime import OnnxPredictor
    >>> predictor = OnnxPredictor.load("runs/quickstart/onnx")  # doctest: +SKIP
"""

from .onnx_predictor import EXPORT_KIND, OnnxCombiner, OnnxExpert, OnnxPredictor

__all__ = ["EXPORT_KIND", "OnnxCombiner", "OnnxExpert", "OnnxPredictor"]
