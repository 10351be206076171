"""``export_predictor``: a fitted :class:`~ensemble.predictor.FusionPredictor` as a directory
that ONNX Runtime runs without torch (:class:`~ensemble.runtime.OnnxPredictor`).

Layout::

    config.json            kind "OnnxExport", classes, per expert how it runs, the combiner
    manifest.json          sha256 of every file (checked on load, like a bundle's)
    label_space.json
    experts/<name>/        model.onnx (+ model.int8.onnx) and preprocessing files (torch
                           experts), or the expert's own saved folder (torch-free kinds)
    combiner/model.onnx    the combiner's graph (logits, mask[, features_j]) -> log-probs

Every graph is checked against its torch source on sample inputs before anything is
written; the directory appears atomically, complete or not at all.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .._io import FORMAT_VERSION, atomic_directory, read_json, write_json
from ..exceptions import ArtifactError, ConfigError
from ..manifests import write_manifest
from ..runtime.onnx_predictor import EXPORT_KIND
from .onnx_graphs import check_outputs, export_graph, quantize_graph, require_export_extra

__all__ = ["COMBINER_GRAPH", "export_predictor"]

COMBINER_GRAPH = "combiner/model.onnx"
_INT8_GRAPH = "model.int8.onnx"
_CHECK_ROWS = 64


def export_predictor(predictor: Any, directory: str | os.PathLike[str], *,
                     quantize: bool = False) -> Path:
    """Export every expert and the combiner of ``predictor`` to ``directory``.

    ``quantize=True`` also writes int8 (dynamic quantisation) graphs of the torch experts;
    load them with ``OnnxPredictor.load(directory, precision="int8")``.

    Example:
        >>> export_predictor(FusionPredictor.load("runs/quickstart/bundle"),
        ...                  "runs/quickstart/onnx")  # doctest: +SKIP
    """
    combiner = getattr(predictor, "combiner", None)
    if combiner is None or not hasattr(predictor, "experts"):
        raise ConfigError(f"export_predictor takes a FusionPredictor, got "
                          f"{type(predictor).__name__}.")
    if not combiner.__sklearn_is_fitted__():
        raise ConfigError(f"the combiner {type(combiner).__name__} is not fitted; fit it "
                          "before exporting.")
    require_export_extra()
    directory = Path(directory)
    _check_target(directory)
    with atomic_directory(directory) as tmp:
        experts = {name: _export_expert(name, expert, tmp, quantize=quantize)
                   for name, expert in predictor.experts.items()}
        feature_sizes = [_feature_size(entry, expert)
                         for entry, expert in zip(experts.values(), predictor.experts.values(),
                                                  strict=True)]
        reads_features, fitted_weights = _export_combiner(combiner, tmp / COMBINER_GRAPH,
                                                          feature_sizes)
        write_json(tmp / "label_space.json", {"class_names": list(predictor.class_names)})
        write_json(tmp / "config.json", {
            "kind": EXPORT_KIND,
            "format_version": FORMAT_VERSION,
            "class_names": list(predictor.class_names),
            "experts": experts,
            "combiner": {"graph": COMBINER_GRAPH, "name": combiner.registry_name,
                         "experts": list(combiner.expert_names_),
                         "reads_features": reads_features,
                         "fitted_weights": fitted_weights,
                         "summary": combiner.summary()},
            "precisions": ["fp32", "int8"] if quantize else ["fp32"],
            "batch_size": predictor.batch_size,
            "resolved_config": predictor.config,
        })
        write_manifest(tmp)
    return directory


def _check_target(directory: Path) -> None:
    """Refuse to replace a folder that holds something other than an earlier export."""
    if not directory.exists():
        return
    if not directory.is_dir():
        raise ConfigError(f"{directory} exists and is not a folder; give a new directory "
                          "for the export.")
    config = directory / "config.json"
    is_export = False
    if config.is_file():
        try:
            is_export = read_json(config).get("kind") == EXPORT_KIND
        except ArtifactError:
            is_export = False
    if any(directory.iterdir()) and not is_export:
        raise ConfigError(f"{directory} exists and is not an ONNX export (it would be "
                          "replaced as a whole); give a new directory, or remove it first.")


def _export_expert(name: str, expert: Any, root: Path, *,
                   quantize: bool) -> dict[str, Any]:
    folder = root / "experts" / name
    folder.mkdir(parents=True)
    entry = dict(expert.export_onnx(folder))
    if entry.get("runtime") == "onnx":
        graphs = {"fp32": str(entry.pop("graph"))}
        op_types = entry.pop("int8_op_types", None)
        if quantize:
            quantize_graph(folder / graphs["fp32"], folder / _INT8_GRAPH, op_types=op_types)
            graphs["int8"] = _INT8_GRAPH
        entry["graphs"] = graphs
    return {"path": f"experts/{name}", "column": expert.column, "modality": expert.modality,
            "kind": expert.registry_name, "class_names": list(expert.class_names), **entry}


def _feature_size(entry: dict[str, Any], expert: Any) -> int:
    if "feature_size" in entry:
        return int(entry["feature_size"])
    _, features = expert.predict_logits([None], return_features=True, progress=False)
    return int(features.shape[1])


def _export_combiner(combiner: Any, path: Path, feature_sizes: list[int]
                     ) -> tuple[bool, dict[str, float] | None]:
    """Write the combiner's graph, checked against ``predict_logits`` on random logits with
    every kind of row (all experts, some, one, none); returns whether it reads features,
    and its fitted weights over its inputs when it has one vector for all rows."""
    import torch

    from ..combiners.graph import CombinerGraph
    from ..logits import LogitSet

    what = f"the {combiner.registry_name} combiner"
    reads_features = combiner.reads_features()
    rng = np.random.default_rng(0)
    n_experts, n_classes = len(combiner.expert_names_), combiner.n_classes_
    logits = rng.normal(scale=3.0, size=(_CHECK_ROWS, n_experts, n_classes)).astype(np.float32)
    mask = rng.random((_CHECK_ROWS, n_experts)) < 0.7
    mask[: n_experts] = np.eye(n_experts, dtype=bool)  # single-expert rows
    mask[n_experts] = False  # a row without any expert
    mask[n_experts + 1] = True
    features = [rng.normal(size=(_CHECK_ROWS, size)).astype(np.float32)
                for size in feature_sizes]
    logits[~mask] = 0.0
    names = list(combiner.expert_names_)
    logit_set = LogitSet({n: logits[:, j] for j, n in enumerate(names)},
                         list(combiner.class_names_),
                         mask={n: mask[:, j] for j, n in enumerate(names)},
                         features={n: features[j] for j, n in enumerate(names)})
    expected = combiner.predict_logits(logit_set).astype(np.float32)
    inputs = {"logits": torch.from_numpy(logits), "mask": torch.from_numpy(mask)}
    if reads_features:
        inputs.update({f"features_{j}": torch.from_numpy(f) for j, f in enumerate(features)})
    axes = {name: (0,) for name in inputs}
    path.parent.mkdir(parents=True, exist_ok=True)
    # On the CPU: a gating combiner's network sits wherever it last predicted.
    export_graph(CombinerGraph(combiner).cpu(), inputs, path, output_names=("log_proba",),
                 dynamic_axes=axes, what=what)
    check_outputs(path, {k: v.numpy() for k, v in inputs.items()}, [expected], atol=1e-5,
                  what=what, log_space=True)
    explained = combiner.explain_weights(logit_set)
    if explained is None or explained[2] != "fitted":
        return reads_features, None
    weights, names, _ = explained
    return reads_features, {str(n): float(w) for n, w in zip(names, weights[0], strict=True)}
