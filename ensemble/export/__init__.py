"""Export a fitted predictor to ONNX (needs the ``export`` extra); run it with
:class:`ensemble.runtime.OnnxPredictor`. See docs/export.md.

    >>> from ensemble.export import export_predictor
    >>> export_predictor(predictor, "runs/quickstart/onnx", quantize=True)  # doctest: +SKIP
"""

from .exporter import export_predictor
from .onnx_graphs import OPSET

__all__ = ["OPSET", "export_predictor"]
