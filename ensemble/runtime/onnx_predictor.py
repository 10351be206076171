"""``OnnxPredictor``: an exported predictor run by ONNX Runtime, without torch.

Loads a directory written by :func:`ensemble.export.export_predictor` (``ensemble export``)
after checking every file against its ``manifest.json``, and predicts exactly like
:class:`~ensemble.predictor.FusionPredictor`: same inputs (columns by name, row mappings,
``images=``/``texts=``), same missing-input handling, fused probabilities within 1e-4.
Imports onnxruntime, numpy, pillow and tokenizers; a tabular expert adds scikit-learn.
torch, timm and transformers are never imported.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .._io import check_format_version, read_json
from ..exceptions import ArtifactError, ConfigError, DependencyError
from ..manifests import inside_bundle, verify_bundle
from ..prediction_inputs import PredictorInputs
from .preprocessing import Preprocessor, create_preprocessor

__all__ = ["EXPORT_KIND", "PRECISIONS", "OnnxCombiner", "OnnxExpert", "OnnxPredictor",
           "create_session"]

#: ``config.json`` ``kind`` of an export directory.
EXPORT_KIND = "OnnxExport"
#: Graph precisions an export may hold: float32 always, int8 when exported with quantize.
PRECISIONS = ("fp32", "int8")
_CONFIG = "config.json"


def create_session(path: Path, *, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session for the graph at ``path``."""
    try:
        import onnxruntime
    except ImportError as err:
        raise DependencyError('running an ONNX export needs onnxruntime: pip install '
                              '"late-fusion[export]" (or onnxruntime alone).') from err
    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
    options.log_severity_level = 3
    try:
        return onnxruntime.InferenceSession(str(path), options,
                                            providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph types
        raise ArtifactError(f"{path} is not a loadable ONNX graph ({err}).") from err


@functools.cache
def _pipeline() -> ThreadPoolExecutor:
    """The thread that preprocesses the next batch while ONNX Runtime runs this one."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="ensemble-pipeline")


class OnnxExpert:
    """One exported torch expert: preprocessing + an ONNX Runtime session.

    Has the prediction interface of an expert: ``column``, ``modality``,
    ``class_names``, ``present_rows`` and ``predict_logits``.
    """

    def __init__(self, *, name: str, column: str, modality: str, kind: str,
                 class_names: Sequence[str], session: Any, preprocess: Preprocessor,
                 feature_size: int) -> None:
        self.name = name
        self.column = column
        self.modality = modality
        self.registry_name = kind
        self.class_names = list(class_names)
        self.session = session
        self.preprocess = preprocess
        self.feature_size = int(feature_size)
        self.checkpoint = ""

    def __repr__(self) -> str:
        return f"OnnxExpert({self.registry_name!r}, column={self.column!r})"

    def present_rows(self, values: Sequence[Any]) -> np.ndarray:
        return np.array([value is not None for value in values], dtype=bool)

    def predict_logits(self, values: Sequence[Any], *, batch_size: int = 32,
                       return_features: bool = False, progress: bool = False
                       ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Logits ``[N, C]`` (zeros where the input is missing), and features ``[N, D]``."""
        values = list(values)
        present = np.flatnonzero(self.present_rows(values))
        logits = np.zeros((len(values), len(self.class_names)), dtype=np.float32)
        features = np.zeros((len(values), self.feature_size), dtype=np.float32)
        batches = [present[start:start + batch_size]
                   for start in range(0, present.size, batch_size)]

        def prepare(rows: np.ndarray) -> dict[str, np.ndarray]:
            return self.preprocess([values[i] for i in rows], [str(i) for i in rows])

        # Pipelined: the next batch is preprocessed (PIL and tokenizers release the GIL)
        # while ONNX Runtime runs this one.
        pending = _pipeline().submit(prepare, batches[0]) if batches else None
        for k, rows in enumerate(batches):
            tensors = pending.result()
            if k + 1 < len(batches):
                pending = _pipeline().submit(prepare, batches[k + 1])
            logits[rows], features[rows] = self.session.run(None, tensors)
        return (logits, features) if return_features else logits

    def forward(self, tensors: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """The raw graph on preprocessed tensors (``logits``, ``features``)."""
        return self.session.run(None, dict(tensors))


class OnnxCombiner:
    """The exported combiner graph: per-expert logits + presence (+ features) -> fused."""

    def __init__(self, session: Any, expert_names: Sequence[str], class_names: Sequence[str],
                 *, reads_features: bool, name: str,
                 fitted_weights: Mapping[str, float] | None = None,
                 summary: Mapping[str, Any] | None = None) -> None:
        self.session = session
        self.expert_names_ = tuple(expert_names)
        self.class_names_ = tuple(class_names)
        self.reads_features = reads_features
        self.registry_name = name
        self.fitted_weights = dict(fitted_weights) if fitted_weights else None
        self._summary = dict(summary) if summary else {"name": name}

    def summary(self) -> dict[str, Any]:
        """What the exported combiner chose, as ``Combiner.summary`` said at export."""
        return dict(self._summary)

    def predict_logits(self, logit_set: Any) -> np.ndarray:
        """Fused log-probabilities ``[N, C]`` for a :class:`~ensemble.logits.LogitSet`."""
        names = self.expert_names_
        feeds = {
            "logits": np.stack([np.asarray(logit_set.logits[n], np.float32) for n in names],
                               axis=1),
            "mask": np.asarray(logit_set.mask, dtype=bool),
        }
        if self.reads_features:
            for j, name in enumerate(names):
                feeds[f"features_{j}"] = np.asarray(logit_set.features[name], np.float32)
        return self.session.run(None, feeds)[0].astype(np.float64)

    def predict_proba(self, logit_set: Any) -> np.ndarray:
        log_proba = self.predict_logits(logit_set)
        proba = np.exp(log_proba)
        return proba / proba.sum(axis=1, keepdims=True)

    def explain_weights(self, logit_set: Any
                        ) -> tuple[np.ndarray, tuple[str, ...], str] | None:
        """The combiner's fitted weights over its inputs (voting, selection), one row per
        example, as ``Combiner.explain_weights``; ``None`` for combiners without one weight
        vector for all rows (stacking, per-example gates)."""
        if not self.fitted_weights:
            return None
        names = tuple(self.fitted_weights)
        values = np.asarray([self.fitted_weights[n] for n in names], dtype=np.float64)
        return np.tile(values, (logit_set.n_rows, 1)), names, "fitted"


class OnnxPredictor(PredictorInputs):
    """A fused predictor run by ONNX Runtime (see the module docstring).

    Example:
        >>> predictor = OnnxPredictor.load("runs/quickstart/onnx")  # doctest: +SKIP
        >>> predictor.predict({"image": ["cat.png"], "text": ["a cat"]})  # doctest: +SKIP
        array(['cat'], dtype='<U3')
    """

    def __init__(self, experts: Mapping[str, Any], combiner: OnnxCombiner,
                 class_names: Sequence[str], *, batch_size: int = 32,
                 precision: str = "fp32") -> None:
        self._experts = dict(experts)
        self.combiner = combiner
        self.class_names = tuple(class_names)
        self.batch_size = batch_size
        self.precision = precision
        self.progress = False
        self.config: dict[str, Any] = {}

    def __repr__(self) -> str:
        experts = ", ".join(f"{n}={e.registry_name}" for n, e in self._experts.items())
        return (f"OnnxPredictor(experts={{{experts}}}, combiner={self.combiner.registry_name}, "
                f"classes={len(self.class_names)}, precision={self.precision!r})")

    # -- prediction -------------------------------------------------------------------------

    def logits(self, inputs: Any = None, *, images: Any = None, texts: Any = None) -> Any:
        """Every expert's logits (a :class:`~ensemble.logits.LogitSet`), as the torch
        predictor's :meth:`~ensemble.predictor.FusionPredictor.logits`."""
        return self._logit_set(self._inputs(inputs, images, texts))

    def predict_proba(self, inputs: Any = None, *, images: Any = None,
                      texts: Any = None) -> np.ndarray:
        """Fused probabilities ``[N, C]`` (inputs as for ``FusionPredictor.predict_proba``)."""
        return self.combiner.predict_proba(self.logits(inputs, images=images, texts=texts))

    def predict(self, inputs: Any = None, *, images: Any = None,
                texts: Any = None) -> np.ndarray:
        """The most probable class name of each example."""
        proba = self.predict_proba(inputs, images=images, texts=texts)
        return np.asarray(self.class_names)[proba.argmax(axis=1)]

    # -- loading ----------------------------------------------------------------------------

    @classmethod
    def load(cls, directory: str | os.PathLike[str], *, precision: str = "fp32",
             threads: int | None = None, trusted_types: Sequence[str] = ()) -> OnnxPredictor:
        """Load an export directory after verifying every file against its manifest.

        ``precision="int8"`` runs the int8 graphs (exported with ``quantize=True``);
        ``threads`` caps ONNX Runtime's intra-op threads (default: all cores).
        """
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS!r}, got {precision!r}.")
        root = Path(directory)
        verify_bundle(root, what="export")
        config = read_json(root / _CONFIG)
        check_format_version(config, root)
        if config.get("kind") != EXPORT_KIND:
            raise ArtifactError(
                f"{root} holds a {config.get('kind')!r}, not an ONNX export; export a bundle "
                "with `ensemble export BUNDLE --out DIR` first."
            )
        available = config.get("precisions") or ["fp32"]
        if precision not in available:
            raise ConfigError(f"{root} has no {precision} graphs (it has {available!r}); "
                              "export again with --quantize int8 (quantize=True).")
        try:
            class_names = [str(c) for c in config["class_names"]]
            experts = {str(name): _load_expert(root, str(name), entry, precision, threads,
                                               trusted_types)
                       for name, entry in config["experts"].items()}
            entry = config["combiner"]
            combiner = OnnxCombiner(
                create_session(inside_bundle(root, str(entry["graph"])), threads=threads),
                [str(n) for n in entry["experts"]], class_names,
                reads_features=bool(entry["reads_features"]), name=str(entry["name"]),
                fitted_weights={str(k): float(v) for k, v in
                                (entry.get("fitted_weights") or {}).items()},
                summary=entry.get("summary"))
        except (KeyError, TypeError, AttributeError, ValueError) as err:
            raise ArtifactError(f"{root}/{_CONFIG} is incomplete ({err}).") from err
        if set(combiner.expert_names_) != set(experts):
            raise ArtifactError(f"{root}: the combiner reads {list(combiner.expert_names_)!r} "
                                f"but the experts are {sorted(experts)!r}.")
        ordered = {name: experts[name] for name in combiner.expert_names_}
        predictor = cls(ordered, combiner, class_names,
                        batch_size=int(config.get("batch_size", 32)), precision=precision)
        predictor.config = dict(config.get("resolved_config") or {})
        return predictor


def _load_expert(root: Path, name: str, entry: Mapping[str, Any], precision: str,
                 threads: int | None, trusted_types: Sequence[str]) -> Any:
    directory = inside_bundle(root, str(entry["path"]))
    if entry["runtime"] == "native":
        from ..experts import load_expert

        return load_expert(directory, trusted_types=tuple(trusted_types))
    if entry["runtime"] != "onnx":
        raise ArtifactError(f"{directory}: unknown runtime {entry['runtime']!r}; the export "
                            "was written by a newer version of ensemble.")
    graphs = entry["graphs"]
    if precision not in graphs:
        raise ArtifactError(f"{root}: config.json lists {precision} graphs but expert {name!r} "
                            f"has {sorted(graphs)!r}; export again.")
    return OnnxExpert(
        name=name, column=str(entry["column"]), modality=str(entry["modality"]),
        kind=str(entry["kind"]), class_names=[str(c) for c in entry["class_names"]],
        session=create_session(inside_bundle(directory, str(graphs[precision])),
                               threads=threads),
        preprocess=create_preprocessor(entry["preprocessing"], directory, entry["inputs"]),
        feature_size=int(entry["feature_size"]),
    )
