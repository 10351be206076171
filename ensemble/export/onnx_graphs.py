"""Write torch modules as ONNX graphs, check them with ONNX Runtime, quantise them.

The one place that calls ``torch.onnx.export`` (the dynamo-based exporter, with every
dimension of the named axes dynamic) and ``onnxruntime.quantization``. Needs the ``export``
extra (``pip install "late-fusion[export]"``).
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import DependencyError, ExportError

__all__ = ["OPSET", "check_outputs", "export_graph", "quantize_graph", "require_export_extra"]

#: The ONNX opset the graphs are written in (ONNX Runtime 1.17+ runs it).
OPSET = 18


def require_export_extra() -> None:
    """Raise :class:`DependencyError` unless onnx, onnxscript and onnxruntime import."""
    missing = []
    for module in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise DependencyError(
            f"exporting to ONNX needs {', '.join(missing)}; install the extra: "
            'pip install "late-fusion[export]".'
        )


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """torch.onnx without its progress lines and deprecation chatter."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def export_graph(module: Any, inputs: Mapping[str, Any], path: Path, *,
                 output_names: Sequence[str], dynamic_axes: Mapping[str, Sequence[int]],
                 what: str) -> None:
    """Export ``module(*inputs.values())`` to ``path``; ``dynamic_axes`` names, per input,
    the axes that vary (batch, sequence). ``what`` names the model in errors."""
    import torch

    require_export_extra()
    names = list(inputs)
    shapes = _dynamic_shapes(module, [{axis: torch.export.Dim.DYNAMIC
                                       for axis in dynamic_axes.get(name, ())}
                                      for name in names])
    try:
        with _quiet_exporter(), torch.inference_mode(False), torch.no_grad():
            program = torch.onnx.export(
                module.eval(), tuple(inputs.values()), dynamo=True, opset_version=OPSET,
                input_names=names, output_names=list(output_names), dynamic_shapes=shapes,
                external_data=False, optimize=True,
            )
            program.save(str(path), external_data=False)
    except ExportError:
        raise
    except Exception as err:  # torch.export raises many types; name the model and why
        reason = str(err).strip().splitlines()
        raise ExportError(
            f"{what} cannot be exported to ONNX: {type(err).__name__}: "
            f"{reason[0] if reason else ''}"[:600]
        ) from err


def check_outputs(path: Path, inputs: Mapping[str, np.ndarray],
                  expected: Sequence[np.ndarray], *, atol: float, what: str,
                  log_space: bool = False) -> float:
    """Run the graph at ``path`` on ``inputs``; raise :class:`ExportError` when an output
    differs from ``expected`` by more than ``atol`` (``log_space``: outputs are
    log-probabilities, compared as probabilities). Returns the largest difference."""
    from ..runtime.onnx_predictor import create_session

    outputs = create_session(path).run(None, dict(inputs))
    if log_space:
        outputs, expected = [np.exp(o) for o in outputs], [np.exp(e) for e in expected]
    worst = 0.0
    for got, want in zip(outputs, expected, strict=True):
        if got.shape != want.shape:
            raise ExportError(f"the ONNX graph of {what} returns shape {got.shape}, torch "
                              f"{want.shape}; the export is wrong.")
        finite = np.isfinite(want)
        if (np.isfinite(got) != finite).any():
            raise ExportError(f"the ONNX graph of {what} returns non-finite values where "
                              "torch does not; the export is wrong.")
        worst = max(worst, float(np.abs(got[finite] - want[finite]).max(initial=0.0)))
    if worst > atol:
        raise ExportError(f"the ONNX graph of {what} differs from torch by {worst:.3g} "
                          f"(tolerance {atol:g}); the export is wrong.")
    return worst


def _dynamic_shapes(module: Any, per_input: list[dict[int, Any]]) -> tuple[Any, ...]:
    """``dynamic_shapes`` in the structure of ``module.forward``'s signature: one entry per
    positional parameter, and a tuple for a ``*args`` parameter."""
    parameters = list(inspect.signature(module.forward).parameters.values())
    shapes: list[Any] = []
    for parameter in parameters:
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            rest = tuple(per_input[len(shapes):])
            return (*shapes, rest) if rest else tuple(shapes)
        shapes.append(per_input[len(shapes)])
    return tuple(shapes)


def quantize_graph(source: Path, target: Path, *,
                   op_types: Sequence[str] | None = None) -> None:
    """Dynamic int8 quantisation of the weights of ``source``: of the ``op_types`` given, or
    of every op type ONNX Runtime quantises dynamically (MatMul, Gemm, Conv, Gather, ...)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its "consider pre-processing" advice, on every call
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8,
                         op_types_to_quantize=list(op_types) if op_types else None)
    except Exception as err:  # onnxruntime raises bare exceptions on unsupported graphs
        raise ExportError(f"{source} cannot be quantised to int8: {type(err).__name__}: "
                          f"{err}"[:600]) from err
    finally:
        root.setLevel(level)
